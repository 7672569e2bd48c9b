import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SnapfnConfig } from './config.ts';
import { PreparedDeploy } from './deploy/deploy-pipeline.ts';
import { packDirectory } from './deploy/pack-directory.ts';
import { reactivateAll } from './deploy/reactivate.ts';
import { functionUrl } from './gateway/views.ts';
import { startGateway, type RunningGateway } from './gateway/server.ts';
import type { InvocationEngine } from './orchestrator/types.ts';
import { FunctionStore } from './registry/function-store.ts';
import { DeployRequest } from './schemas/api.ts';
import { zodMessage } from './schemas/zod-message.ts';
import { SnapfnMetrics } from './telemetry/snapfn-metrics.ts';

export const EXAMPLES_DIR = fileURLToPath(new URL('../functions', import.meta.url));

export interface SnapfnOptions {
  config: SnapfnConfig;
  /** Defaults to the real engine from src/orchestrator (tests may pass a fake). */
  engine?: InvocationEngine;
  /** Directory of example functions to deploy at startup; false for none. */
  examplesDir?: string | false;
  hostname?: string;
  log?: (line: string) => void;
}

export interface DeployedExample {
  name: string;
  url: string;
  version?: number;
  unchanged?: boolean;
  error?: string;
}

export interface RunningSnapfn {
  readonly url: string;
  readonly port: number;
  readonly engine: InvocationEngine;
  readonly store: FunctionStore;
  readonly gateway: RunningGateway;
  readonly examples: DeployedExample[];
  /** Stops the gateway, then the store's followers, then every sandbox. Idempotent. */
  close(): Promise<void>;
}

async function createRealEngine(config: SnapfnConfig): Promise<InvocationEngine> {
  // Loaded lazily: only a real node needs the gVisor driver.
  const { createEngine } = await import('./orchestrator/index.ts');
  return createEngine({ home: config.home, maxSandboxes: config.maxSandboxes, poolSize: config.poolSize });
}

/** Subdirectories of `dir` that look like handlers. */
async function exampleDirs(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => path.join(dir, e.name)).sort();
}

/** Deploys one directory the way `fn deploy` would, skipping it when the active version is already exactly this. */
export async function deployDirectory(deps: { engine: InvocationEngine; store: FunctionStore; maxBundleBytes: number }, dir: string, name = path.basename(dir)) {
  const packed = await packDirectory(dir, { maxBytes: deps.maxBundleBytes });
  const parsed = DeployRequest.safeParse({ name, files: packed.files });
  if (!parsed.success) throw new Error(zodMessage(parsed.error, `example ${name}`));
  const prepared = await PreparedDeploy.prepare(deps, parsed.data);
  try {
    return await prepared.run(() => {}, { skipIfUnchanged: true });
  } finally {
    await prepared.close();
  }
}

/** Everything `npm start` runs: engine, store, re-activation, gateway, examples. */
export async function startSnapfn(options: SnapfnOptions): Promise<RunningSnapfn> {
  const { config } = options;
  const log = options.log ?? ((line: string) => console.log(line));
  await fs.mkdir(config.home, { recursive: true, mode: 0o700 });
  const engine = options.engine ?? (await createRealEngine(config));
  let store: FunctionStore | undefined;
  let gateway: RunningGateway | undefined;
  const closeAll = async () => {
    await store?.close();
    await gateway?.close();
    await engine.close();
  };
  try {
    store = await FunctionStore.open(config.home);
    for (const r of await reactivateAll({ engine, store })) {
      if (r.error) log(`  could not re-activate ${r.name} v${r.version}: ${r.error}`);
      else if (r.rebuilt) log(`  rebuilt the template of ${r.name} (now v${r.version})`);
    }
    const metrics = new SnapfnMetrics({ engineStats: () => engine.stats(), driver: engine.driverInfo?.() ?? { name: 'unknown', platform: 'unknown' } });
    gateway = await startGateway({ engine, store, config, metrics, port: config.port, ...(options.hostname ? { hostname: options.hostname } : {}), log: (m) => console.error(m) });
    const examples: DeployedExample[] = [];
    if (options.examplesDir !== false) {
      for (const dir of await exampleDirs(options.examplesDir ?? EXAMPLES_DIR)) {
        const name = path.basename(dir);
        const url = functionUrl(gateway.url, name);
        try {
          const outcome = await deployDirectory({ engine, store, maxBundleBytes: config.maxBundleBytes }, dir, name);
          examples.push({ name, url, version: outcome.version.version, unchanged: outcome.unchanged });
        } catch (err) {
          examples.push({ name, url, error: (err as Error).message });
        }
      }
    }
    const running = { engine, store, gateway };
    let closing: Promise<void> | undefined;
    return {
      url: gateway.url,
      port: gateway.port,
      ...running,
      examples,
      close: () => (closing ??= closeAll()),
    };
  } catch (err) {
    await closeAll().catch(() => {});
    throw err;
  }
}
