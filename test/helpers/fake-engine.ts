import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CapacityError, NotFoundError, TemplateBuildError } from '../../src/errors.ts';
import type { Deployment, InvocationEngine, InvokeResult, OrchestratorStats } from '../../src/orchestrator/types.ts';
import type { ProgressFn, Template, TemplateSource } from '../../src/sandbox/driver.ts';
import type { InvocationOutcome, LogLine, StreamingRequest, WireRequest, WireResponse } from '../../src/schemas/invocation.ts';
import { FUNCTION_META_PATH, type FunctionMeta } from '../../src/sandbox/template/function-source.ts';

interface FakeTemplate extends Template {
  handler: (request: Request) => unknown;
}

/**
 * Stands in for the gVisor engine in unit tests. buildTemplate does what
 * envd does at build time (import the bundle, check the default export is a
 * function, read `export const config`) in this process, without a sandbox;
 * invoke calls the handler the way envd would.
 */
export class FakeEngine implements InvocationEngine {
  readonly dir: string;
  readonly templates = new Map<string, FakeTemplate>();
  readonly active = new Map<string, Deployment>();
  readonly invocations: Array<{ deployment: Deployment; request: WireRequest; invocationId: string }> = [];
  /** Set to make the next buildTemplate fail the way a failed sandbox boot does. */
  failNextBuild: string | undefined;
  /** Set to make invoke throw CapacityError. */
  overCapacity = false;
  /** Set to make the next invoke return this outcome instead of running the handler (timeouts, crashes...). */
  nextOutcome: InvocationOutcome | undefined;
  /** Set to make the next invoke throw this. */
  nextInvokeError: unknown;
  builds = 0;
  /** Sandboxes of this fake node: freeCapacity() is what running invocations leave of them. */
  maxSandboxes = 8;
  #inFlight = 0;
  readonly deactivated: string[] = [];
  closed = false;

  private constructor(dir: string) {
    this.dir = dir;
  }

  static async create(): Promise<FakeEngine> {
    return new FakeEngine(await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-fake-engine-')));
  }

  async buildTemplate(source: TemplateSource, onProgress: ProgressFn = () => {}): Promise<Template> {
    const started = performance.now();
    onProgress('rootfs');
    const id = crypto.createHash('sha256').update(source.sourceHash).update(source.network).digest('hex').slice(0, 24);
    const existing = this.templates.get(id);
    if (existing) return existing;
    if (this.failNextBuild) {
      const message = this.failNextBuild;
      this.failNextBuild = undefined;
      throw new TemplateBuildError(message);
    }
    onProgress('boot', { templateId: id });
    const dir = path.join(this.dir, id);
    await fs.rm(dir, { recursive: true, force: true });
    await fs.cp(source.sourceDir, dir, { recursive: true });
    const meta = JSON.parse(await fs.readFile(path.join(dir, FUNCTION_META_PATH), 'utf8')) as FunctionMeta;
    const file = path.join(dir, meta.entry);
    const imageBytes = (await fs.stat(file)).size;
    let mod: { default?: unknown; config?: unknown };
    try {
      mod = (await import(pathToFileURL(file).href)) as typeof mod;
    } catch (err) {
      throw new TemplateBuildError(`load_failed: ${(err as Error).message}`);
    }
    if (typeof mod.default !== 'function') throw new TemplateBuildError(`invalid_handler: the default export is a ${typeof mod.default}, not a function`);
    onProgress('warm');
    onProgress('checkpoint');
    const template: FakeTemplate = {
      id,
      driver: 'fake',
      dir,
      handlerConfig: mod.config === undefined ? null : JSON.parse(JSON.stringify(mod.config)),
      buildMs: Math.round(performance.now() - started),
      imageBytes,
      handler: mod.default as (request: Request) => unknown,
    };
    this.templates.set(id, template);
    this.builds++;
    onProgress('done', { templateId: id, imageBytes });
    return template;
  }

  async activate(deployment: Deployment): Promise<void> {
    if (!this.templates.has(deployment.templateId)) throw new NotFoundError(`template ${deployment.templateId} is not built`);
    this.active.set(deployment.name, deployment);
  }

  async deactivate(name: string): Promise<void> {
    this.deactivated.push(name);
    this.active.delete(name);
  }

  async invoke(deployment: Deployment, streaming: StreamingRequest, options: { invocationId: string }): Promise<InvokeResult> {
    if (this.overCapacity) throw new CapacityError('all sandboxes are busy', 3);
    const template = this.templates.get(deployment.templateId);
    if (!template) throw new NotFoundError(`template ${deployment.templateId} is not built`);
    const canned = this.nextOutcome;
    const failure = this.nextInvokeError;
    this.nextOutcome = undefined;
    this.nextInvokeError = undefined;
    // Counted before the first await, like the orchestrator's reservation.
    this.#inFlight++;
    try {
      // Recorded as the queue would carry it: a streamed body read whole.
      const { bodyStream, ...head } = streaming;
      const bytes = bodyStream ? Buffer.from(await new Response(bodyStream).arrayBuffer()) : undefined;
      const request: WireRequest = bytes && bytes.length > 0 ? { ...head, bodyBase64: bytes.toString('base64') } : head;
      this.invocations.push({ deployment, request, invocationId: options.invocationId });
      if (failure !== undefined) throw failure;
      const outcome = canned ?? (await runHandler(template.handler, request, deployment.env));
      return { outcome, timings: { acquireMs: 0, restoreMs: 0, handlerMs: 0, source: 'restore' } };
    } finally {
      this.#inFlight--;
    }
  }

  freeCapacity(): number {
    return this.overCapacity ? 0 : Math.max(0, this.maxSandboxes - this.#inFlight);
  }

  stats(): OrchestratorStats {
    return { liveSandboxes: this.#inFlight, maxSandboxes: this.maxSandboxes, busySandboxes: this.#inFlight, pooled: {}, poolHits: 0, poolMisses: 0, restores: 0, keepWarmReuses: 0, handoffs: 0, templateBuilds: this.builds };
  }

  async close(): Promise<void> {
    this.closed = true;
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}

/** envd's invocation path, in-process: env swap, console capture, Response or JSON conversion. */
async function runHandler(handler: (request: Request) => unknown, wire: WireRequest, env: Record<string, string>): Promise<InvocationOutcome> {
  const logs: LogLine[] = [];
  const start = performance.now();
  const savedEnv = process.env;
  const savedLog = console.log;
  const savedError = console.error;
  process.env = { ...savedEnv, ...env };
  console.log = (...args: unknown[]) => void logs.push({ stream: 'stdout', text: `${args.map(String).join(' ')}\n`, t: performance.now() - start });
  console.error = (...args: unknown[]) => void logs.push({ stream: 'stderr', text: `${args.map(String).join(' ')}\n`, t: performance.now() - start });
  try {
    const hasBody = wire.bodyBase64 !== undefined && wire.method !== 'GET' && wire.method !== 'HEAD';
    const request = new Request(wire.url, { method: wire.method, headers: wire.headers, ...(hasBody ? { body: Buffer.from(wire.bodyBase64!, 'base64') } : {}) });
    const value = await handler(request);
    return { ok: true, response: await toWireResponse(value), logs, logsTruncated: false };
  } catch (err) {
    return { ok: false, error: { code: 'handler_error', message: (err as Error).message, name: (err as Error).name }, logs, logsTruncated: false };
  } finally {
    process.env = savedEnv;
    console.log = savedLog;
    console.error = savedError;
  }
}

async function toWireResponse(value: unknown): Promise<WireResponse> {
  if (value instanceof Response) {
    const body = Buffer.from(await value.arrayBuffer());
    return { status: value.status, headers: [...value.headers], bodyBase64: body.toString('base64') };
  }
  if (value === undefined) return { status: 204, headers: [], bodyBase64: '' };
  return { status: 200, headers: [['content-type', 'application/json; charset=utf-8']], bodyBase64: Buffer.from(JSON.stringify(value)).toString('base64') };
}
