import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, type SnapfnConfig } from './config.ts';
import { PreparedDeploy } from './deploy/deploy-pipeline.ts';
import { hashDirectory } from './deploy/pack-directory.ts';
import { reactivateAll } from './deploy/reactivate.ts';
import { functionUrl } from './gateway/views.ts';
import { startGateway, type RunningGateway } from './gateway/server.ts';
import type { InvocationEngine } from './orchestrator/types.ts';
import type { FunctionQueues } from './queue/function-queues.ts';
import { SupervisedRedis } from './queue/redis-server.ts';
import { linkTemplateStore } from './queue/shared-templates.ts';
import { openQueueLayer, type QueueLayer, type QueueLayerOptions } from './queue-layer.ts';
import { FunctionStore } from './registry/function-store.ts';
import { DeployRequest } from './schemas/api.ts';
import { zodMessage } from './schemas/zod-message.ts';
import { SnapfnMetrics } from './telemetry/snapfn-metrics.ts';
import { EvalService, evalOptionsFromEnv } from './eval/index.ts';
import { TemplateCollector } from './gc/template-collector.ts';
import { TemplateStore } from './sandbox/template/template-store.ts';
import { checkSecretsKey } from './secrets/key-check.ts';
import { resolveSecretsKey } from './secrets/key-source.ts';
import { withDeadline } from './queue/deadline.ts';

export const EXAMPLES_DIR = fileURLToPath(new URL('../functions', import.meta.url));

export interface SnapfnOptions {
  config: SnapfnConfig;
  /** Defaults to the real engine from src/orchestrator (tests may pass a fake). */
  engine?: InvocationEngine;
  /** Directory of example functions to deploy at startup; false for none. Default: functions/, unless SNAPFN_EXAMPLES=0. */
  examplesDir?: string | false;
  /**
   * The queue layer is always on for `npm start`. `false` runs without it
   * (direct invocations only, no Redis); tests may shorten its timings.
   */
  queue?: false | Pick<QueueLayerOptions, 'tuning'>;
  /** Serve POST /v1/eval. Default false here (it builds templates); `npm start` follows SNAPFN_EVAL. */
  eval?: boolean;
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
  /** Undefined only with `queue: false`. */
  readonly queue: FunctionQueues | undefined;
  /** The Redis in use: REDIS_URL, or the node's own. */
  readonly redisUrl: string | undefined;
  readonly examples: DeployedExample[];
  /** Template garbage collection of this gateway (worker-only nodes run none). */
  readonly gc: TemplateCollector;
  /** The node's own Redis (supervised: restarted when it dies); undefined with REDIS_URL or without a queue. */
  readonly localRedis: SupervisedRedis | undefined;
  /**
   * Stops accepting requests, then the queue's workers and producer, then
   * every sandbox, then the node's own Redis. Idempotent. `force` (a second
   * signal, or a graceful close past its deadline) does not wait for
   * running work or for Redis: connections are cut, every sandbox is
   * destroyed, Redis is stopped; it may be called while a graceful close runs.
   */
  close(options?: { force?: boolean }): Promise<void>;
}

async function createRealEngine(config: SnapfnConfig): Promise<InvocationEngine> {
  // Loaded lazily: only a real node needs the gVisor driver.
  const { createEngine } = await import('./orchestrator/index.ts');
  return createEngine({ home: config.home, maxSandboxes: config.maxSandboxes, poolSize: config.poolSize, maxResponseBytes: config.maxResponseBytes, maxBodyBytes: config.maxBodyBytes, pauseAfterMs: config.pauseAfterMs });
}

/** Subdirectories of `dir` that look like handlers. */
async function exampleDirs(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => path.join(dir, e.name)).sort();
}

/**
 * Deploys one directory the way `fn deploy` would (by manifest, its missing
 * blobs stored straight from disk), skipping it when the active version is
 * already exactly this.
 */
export async function deployDirectory(deps: { engine: InvocationEngine; store: FunctionStore; maxDeployBytes: number; queue?: FunctionQueues | undefined }, dir: string, name = path.basename(dir)) {
  const hashed = await hashDirectory(dir, { maxBytes: deps.maxDeployBytes });
  for (const hash of await deps.store.blobs.missing(hashed.fileOf.keys())) {
    await deps.store.blobs.putStream(hash, createReadStream(hashed.fileOf.get(hash)!), deps.maxDeployBytes);
  }
  const parsed = DeployRequest.safeParse({ name, manifest: hashed.manifest });
  if (!parsed.success) throw new Error(zodMessage(parsed.error, `example ${name}`));
  const prepared = await PreparedDeploy.prepare(deps, parsed.data);
  try {
    return await prepared.run(() => {}, { skipIfUnchanged: true });
  } finally {
    await prepared.close();
  }
}

/** Everything `npm start` runs: Redis, engine, store, queue, re-activation, gateway, examples. */
export async function startSnapfn(options: SnapfnOptions): Promise<RunningSnapfn> {
  const { config } = options;
  const log = options.log ?? ((line: string) => console.log(line));
  await fs.mkdir(config.home, { recursive: true, mode: 0o700 });
  // Before the engine opens its template store: what it builds must land in the shared one.
  if (config.templateStore) await linkTemplateStore(config.home, config.templateStore);
  let redis: SupervisedRedis | undefined;
  let engine: InvocationEngine | undefined;
  let store: FunctionStore | undefined;
  let queue: QueueLayer | undefined;
  let gateway: RunningGateway | undefined;
  let evalService: EvalService | undefined;
  let gc: TemplateCollector | undefined;
  // Stop accepting first, Redis last: workers finish their jobs (which need
  // the engine and Redis), the producer closes, then the sandboxes go.
  let engineClosing: Promise<void> | undefined;
  const closeEngine = () => (engineClosing ??= engine?.close() ?? Promise.resolve());
  const closeAll = async () => {
    await store?.close();
    await gateway?.close();
    await gc?.close();
    await queue?.close();
    await evalService?.close();
    await closeEngine();
    await redis?.close();
  };
  // Whatever the graceful close is waiting for: Redis connections are cut
  // (those waits fail at once), every sandbox is destroyed, Redis stops.
  const forceClose = async () => {
    queue?.cut();
    void gateway?.close({ graceMs: 0 });
    await Promise.allSettled([evalService?.close(), closeEngine()]);
    await redis?.close({ graceMs: 2000 });
  };
  try {
    // Before Redis sees anything: what is sealed must be under a key the node can reproduce.
    const secrets = await resolveSecretsKey(config.home, config.secretsKey);
    if (secrets.source === 'generated') log(`  generated the secrets key ${secrets.key.id} in ${secrets.file} (other nodes of this install need it as SNAPFN_SECRETS_KEY)`);
    const useQueue = options.queue !== false;
    if (useQueue && !config.redisUrl) redis = await SupervisedRedis.start({ dir: path.join(config.home, 'redis'), log: (m) => console.error(m) });
    const redisUrl = useQueue ? (config.redisUrl ?? redis!.url) : undefined;
    const realEngine = options.engine ?? (await createRealEngine(config));
    engine = realEngine;
    store = await FunctionStore.open(config.home);
    const metrics = new SnapfnMetrics({ engineStats: () => realEngine.stats(), driver: realEngine.driverInfo?.() ?? { name: 'unknown', platform: 'unknown' } });
    if (redisUrl) {
      queue = openQueueLayer({
        redisUrl,
        shared: config.redisUrl !== undefined,
        engine: realEngine,
        store,
        maxQueuedPerFunction: config.maxQueuedPerFunction,
        secretsKey: secrets.key,
        metrics,
        log: (m) => console.error(m),
        ...(options.queue ? options.queue : {}),
      });
    }
    const functions = queue?.functions;
    if (functions) {
      // A Redis that is away now is checked by the next start; a wrong key is refused here, not met result by result.
      await withDeadline('checking the secrets key against Redis', 5000, () => checkSecretsKey(functions.queue.redis, secrets.key)).catch((err: Error) => {
        if (err instanceof ConfigError) throw err;
        log(`  could not check the secrets key against Redis: ${err.message}`);
      });
    }
    // Also serves each function's queue again: queued work and schedules (kept in Redis) resume.
    for (const r of await reactivateAll({ engine: realEngine, store, queue: functions })) {
      if (r.error) log(`  could not re-activate ${r.name} v${r.version}: ${r.error}`);
      else if (r.rebuilt) log(`  rebuilt the template of ${r.name} (now v${r.version})`);
    }
    let evalUnavailable: string | undefined;
    if (options.eval) {
      log('  building the eval templates (javascript, python, bash)');
      try {
        evalService = await EvalService.create({ engine: realEngine, workDir: path.join(config.home, 'eval'), ...evalOptionsFromEnv() });
      } catch (err) {
        // Eval failing (a driver with no eval root filesystem, say) fails only eval: functions still serve.
        evalUnavailable = (err as Error).message;
        log(`  eval is off on this node: ${evalUnavailable}`);
      }
    }
    const registry = functions?.registry;
    const running = evalService;
    gc = new TemplateCollector({
      templates: new TemplateStore(path.join(config.home, 'templates')),
      registry: store,
      inUse: () => realEngine.templatesInUse?.() ?? [],
      ...(running ? { evalTemplates: () => running.templateIds() } : {}),
      ...(registry ? { published: () => registry.templateIds() } : {}),
      keepVersions: config.gcKeepVersions,
      // Only other nodes' builds escape this process's template gate.
      minAgeMs: config.templateStore ? config.gcMinAgeMs : 0,
      log: (m) => console.error(m),
    });
    gateway = await startGateway({
      ...(evalService ? { evalService } : {}),
      ...(evalUnavailable ? { evalUnavailable } : {}),
      gc,
      engine: realEngine,
      store,
      config,
      metrics,
      queue: functions,
      port: config.port,
      ...(options.hostname ? { hostname: options.hostname } : {}),
      log: (m) => console.error(m),
    });
    const examples: DeployedExample[] = [];
    const examplesDir = options.examplesDir ?? (config.examples ? EXAMPLES_DIR : false);
    if (examplesDir !== false) {
      for (const dir of await exampleDirs(examplesDir)) {
        const name = path.basename(dir);
        const url = functionUrl(gateway.url, name);
        try {
          const outcome = await deployDirectory({ engine: realEngine, store, maxDeployBytes: config.maxDeployBytes, queue: functions }, dir, name);
          examples.push({ name, url, version: outcome.version.version, unchanged: outcome.unchanged });
        } catch (err) {
          examples.push({ name, url, error: (err as Error).message });
        }
      }
    }
    let closing: Promise<void> | undefined;
    return {
      url: gateway.url,
      port: gateway.port,
      engine: realEngine,
      store,
      gateway,
      queue: functions,
      redisUrl,
      examples,
      gc,
      localRedis: redis,
      close: (options = {}) => (options.force ? forceClose() : (closing ??= closeAll())),
    };
  } catch (err) {
    await closeAll().catch(() => {});
    throw err;
  }
}
