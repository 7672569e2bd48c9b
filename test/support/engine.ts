import { singleModuleSource } from '../../src/sandbox/template/function-source.ts';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createEngine } from '../../src/orchestrator/index.ts';
import type { Deployment } from '../../src/orchestrator/types.ts';
import { FunctionConfig, type FunctionConfigInput } from '../../src/schemas/function-config.ts';
import type { InvocationOutcome, WireRequest } from '../../src/schemas/invocation.ts';

export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));

export async function tempHome(label: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), `snapfn-${label}-`));
}

export type TestEngine = Awaited<ReturnType<typeof createEngine>>;

export async function deployFixture(engine: TestEngine, name: string, fixture: string, config: FunctionConfigInput = {}, env: Record<string, string> = {}): Promise<Deployment> {
  const parsed = FunctionConfig.parse(config);
  const template = await engine.buildTemplate({ functionName: name, ...(await singleModuleSource(path.join(FIXTURES, fixture))), network: parsed.network });
  const handlerConfig = (template.handlerConfig ?? {}) as FunctionConfigInput;
  const deployment: Deployment = { name, version: 1, templateId: template.id, config: FunctionConfig.parse({ ...handlerConfig, ...config }), env };
  await engine.activate(deployment);
  return deployment;
}

export function get(url: string): WireRequest {
  return { method: 'GET', url, headers: [['accept', 'application/json']] };
}

export function bodyJson(outcome: InvocationOutcome): any {
  if (!outcome.ok) throw new Error(`invocation failed: ${outcome.error.code}: ${outcome.error.message}`);
  return JSON.parse(Buffer.from(outcome.response.bodyBase64, 'base64').toString('utf8'));
}
