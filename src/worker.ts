// Worker-only mode (`npm run worker`): a node with sandboxes and no HTTP API
// that takes queued invocations of every published function from REDIS_URL.
// See docs/scale-out.md.
import http from 'node:http';
import { z } from 'zod';
import { ConfigError, loadConfig } from './config.ts';
import { createEngine } from './orchestrator/index.ts';
import { closeConnections, connectRedis } from './queue/redis-connection.ts';
import { linkTemplateStore } from './queue/shared-templates.ts';
import { WorkerNode } from './queue/worker-node.ts';
import { checkSecretsKey } from './secrets/key-check.ts';

const WorkerEnv = z.object({
  REDIS_URL: z.string({ error: 'REDIS_URL is required in worker mode (redis://[:password@]host:port or rediss:// for TLS)' }).regex(/^rediss?:\/\//, 'REDIS_URL must start with redis:// or rediss://'),
  SNAPFN_TEMPLATE_STORE: z.string({ error: 'SNAPFN_TEMPLATE_STORE is required in worker mode: the directory of templates shared with the gateways' }).min(1),
  SNAPFN_WORKER_HEALTH_PORT: z.coerce.number().int().min(1).max(65_535).optional(),
  SNAPFN_WORKER_POLL_MS: z.coerce.number().int().min(100).default(2000),
});

const log = (message: string) => console.error(`snapfn worker: ${message}`);

async function main(): Promise<void> {
  const parsed = WorkerEnv.safeParse(process.env);
  if (!parsed.success) throw new ConfigError(parsed.error.issues.map((i) => i.message).join('; '));
  const env = parsed.data;
  const config = loadConfig();
  // Deployments' secrets reach this node sealed; without the gateways' key it could run none of them.
  const secretsKey = config.secretsKey;
  if (!secretsKey) throw new ConfigError("SNAPFN_SECRETS_KEY is required in worker mode: the gateways' key (their SNAPFN_SECRETS_KEY, or the SNAPFN_HOME/secrets.key a single gateway generated)");
  const redis = connectRedis(env.REDIS_URL, { name: 'snapfn-key-check' });
  redis.on('error', () => {});
  try {
    await checkSecretsKey(redis, secretsKey);
  } finally {
    await closeConnections(redis);
  }

  await linkTemplateStore(config.home, env.SNAPFN_TEMPLATE_STORE);
  const engine = await createEngine({ home: config.home, maxSandboxes: config.maxSandboxes, poolSize: config.poolSize, maxBodyBytes: config.maxBodyBytes });
  const node = new WorkerNode({ redisUrl: env.REDIS_URL, engine, pollMs: env.SNAPFN_WORKER_POLL_MS, secretsKey, log });
  await node.start();
  const health = env.SNAPFN_WORKER_HEALTH_PORT === undefined ? undefined : await serveHealth(env.SNAPFN_WORKER_HEALTH_PORT, node, engine);
  log(`taking queued invocations (home ${config.home}, ${config.maxSandboxes} sandboxes, secrets key ${secretsKey.id}, templates ${env.SNAPFN_TEMPLATE_STORE}${health ? `, health on :${env.SNAPFN_WORKER_HEALTH_PORT}` : ''})`);

  let firstSignalAt: number | undefined;
  let forcing = false;
  // One close of the engine, awaited by both paths: a second close() returns before the sandboxes are gone.
  let engineClosing: Promise<void> | undefined;
  const closeEngine = () => (engineClosing ??= engine.close());
  const stop = async (signal: string) => {
    if (firstSignalAt !== undefined) {
      // One stop delivered twice (a process-group signal, relayed by npm or tsx).
      if (Date.now() - firstSignalAt < 1000 || forcing) return;
      // A second signal means "now": running invocations are cut, but every sandbox still goes.
      forcing = true;
      log(`${signal} again: destroying every sandbox and exiting`);
      setTimeout(() => process.exit(1), 5000);
      node.cut();
      await closeEngine().catch((err: Error) => log(`closing the engine: ${err.message}`));
      process.exit(1);
    }
    firstSignalAt = Date.now();
    process.on('unhandledRejection', (reason) => log(`during shutdown: ${(reason as Error)?.message ?? String(reason)}`));
    log(`${signal}: finishing running invocations`);
    health?.close();
    // Bounded whatever Redis does: running jobs end within their timeout, Redis gets a few seconds more.
    await node.close();
    if (forcing) return;
    await closeEngine();
    if (!forcing) process.exit(0);
  };
  // `on`, not `once`: execa's signal-exit (held while runsc children run)
  // re-raises a signal that has no other listener left, which would kill
  // this process in the middle of its graceful stop.
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

/** GET /healthz for a liveness/readiness probe; nothing else is served. */
function serveHealth(port: number, node: WorkerNode, engine: Awaited<ReturnType<typeof createEngine>>): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/healthz') {
      res.writeHead(404).end();
      return;
    }
    const stats = engine.stats();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, functions: node.functions().length, engine: { liveSandboxes: stats.liveSandboxes, maxSandboxes: stats.maxSandboxes, freeCapacity: engine.freeCapacity() }, queues: node.workers.stats() }));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve(server));
  });
}

main().catch((err: Error) => {
  log(err instanceof ConfigError ? err.message : (err.stack ?? err.message));
  process.exit(err instanceof ConfigError ? 2 : 1);
});
