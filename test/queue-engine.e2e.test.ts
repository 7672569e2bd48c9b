// The queue end to end through the real engine (runsc sandboxes restored from
// templates): in-process workers on a gateway-like node, then a worker-only
// node (src/worker.ts) in its own process, home and network slots, resolving
// deployments from Redis and restoring from the shared template store.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createEngine } from '../src/orchestrator/index.ts';
import { DeploymentRegistry, deploymentKey } from '../src/queue/deployment-registry.ts';
import { InvocationQueue } from '../src/queue/invocation-queue.ts';
import { InvocationWorkers, type InvocationResultEvent } from '../src/queue/invocation-worker.ts';
import { connectRedis } from '../src/queue/redis-server.ts';
import { ResultStream } from '../src/queue/result-stream.ts';
import { SecretsKey } from '../src/secrets/envelope.ts';
import { bodyJson, deployFixture, get, tempHome, type TestEngine } from './support/engine.ts';
import { leftovers } from './support/leaks.ts';
import { startTestRedis, waitFor, type TestRedis } from './support/redis.ts';
import { freePort } from '../src/queue/free-port.ts';

const WORKER_ENTRY = fileURLToPath(new URL('../src/worker.ts', import.meta.url));

describe('queue through the real engine', () => {
  let redis: TestRedis;
  let home: string;
  let engine: TestEngine;
  let queue: InvocationQueue;
  let workers: InvocationWorkers;
  let registry: DeploymentRegistry;
  const events: InvocationResultEvent[] = [];
  /** The gateways' key: the worker node opens sealed deployment secrets and seals its results with it. */
  const secretsKey = SecretsKey.generate();

  before(async () => {
    redis = await startTestRedis('engine');
    home = await tempHome('queue-engine');
    engine = await createEngine({ home, maxSandboxes: 2, poolSize: 0 });
    queue = new InvocationQueue({ redisUrl: redis.redis.url, backoff: { type: 'fixed', delayMs: 50 }, secretsKey, onError: () => {} });
    registry = new DeploymentRegistry(queue.redis, secretsKey);
    workers = new InvocationWorkers({ redisUrl: redis.redis.url, engine, resolveDeployment: registry.resolver(), onResult: (e) => void events.push(e), onError: () => {} });
  });

  after(async () => {
    await workers?.close();
    await queue?.close();
    await engine?.close();
    await redis?.close();
    const left = await leftovers(home);
    await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, [], 'sandboxes, namespaces, veths or mounts left behind');
  });

  test('async and sync invocations run in restored sandboxes; a throwing handler is retried, then dead', async () => {
    const hello = await deployFixture(engine, 'hello', 'hello.mjs');
    const thrower = await deployFixture(engine, 'thrower', 'misbehave.mjs');
    await registry.publish(hello);
    await registry.publish(thrower);
    workers.start('hello');
    workers.start('thrower');
    await workers.ready();

    const ref = { name: 'hello', version: hello.version };
    const asyncIds = await Promise.all([1, 2, 3, 4].map((i) => queue.enqueue('hello', { deployment: ref, request: get(`http://localhost/fn/hello?name=q${i}`), mode: 'async' })));
    const syncId = await queue.enqueue('hello', { deployment: ref, request: get('http://localhost/fn/hello?name=sync'), mode: 'sync' });
    const doomed = await queue.enqueue('thrower', { deployment: { name: 'thrower', version: thrower.version }, request: get('http://localhost/fn/thrower?do=throw'), mode: 'async' }, { attempts: 2 });

    const sync = await queue.waitForResult(syncId, 60_000);
    assert.deepEqual(bodyJson(sync.outcome), { hello: 'sync', method: 'GET' });
    assert.equal(sync.timings.source, 'restore');
    await waitFor('all settled', async () => (await Promise.all([...asyncIds, doomed].map((id) => queue.status(id)))).every((s) => s.status === 'completed' || s.status === 'dead'), 90_000, 200);
    for (const [i, id] of asyncIds.entries()) {
      const s = await queue.status(id);
      assert.equal(s.status, 'completed');
      assert.deepEqual(bodyJson(s.result!.outcome), { hello: `q${i + 1}`, method: 'GET' });
    }
    const dead = await queue.status(doomed);
    assert.equal(dead.status, 'dead');
    assert.equal(dead.attempts, 2);
    assert.equal(dead.error?.code, 'handler_error');
    assert.match(dead.error?.message ?? '', /handler exploded/);
    assert.deepEqual(
      events.filter((e) => e.invocationId === doomed).map((e) => [e.result.attempt, e.willRetry, !e.result.outcome.ok && e.result.outcome.error.code]),
      [
        [1, true, 'handler_error'],
        [2, false, 'handler_error'],
      ],
    );
    const restores = events.filter((e) => e.functionName === 'hello').map((e) => Math.round(e.result.timings.restoreMs));
    console.log(`# real engine: ${events.length} attempts, restore ms ${restores.join(' ')}, queue wait ms ${events.map((e) => e.result.timings.queueWaitMs).join(' ')}`);
  });

  test('a worker-only node (src/worker.ts) takes the queue, resolving deployments from Redis', async () => {
    // The gateway-side workers stop serving hello: only the worker node can take its jobs.
    await workers.stop('hello');
    const workerHome = await tempHome('worker-node');
    const healthPort = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER_ENTRY], {
      env: {
        ...process.env,
        SNAPFN_SECRETS_KEY: secretsKey.toBase64(),
        REDIS_URL: redis.redis.url,
        SNAPFN_HOME: workerHome,
        SNAPFN_TEMPLATE_STORE: path.join(home, 'templates'),
        SNAPFN_MAX_SANDBOXES: '2',
        SNAPFN_POOL_SIZE: '0',
        SNAPFN_WORKER_HEALTH_PORT: String(healthPort),
        SNAPFN_WORKER_POLL_MS: '200',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
    const exited = once(child, 'exit');
    const results = connectRedis(redis.redis.url);
    const abort = new AbortController();
    const streamed: InvocationResultEvent[] = [];
    const consuming = new ResultStream(results, { secretsKey }).consume('test-gateway', 'reader-1', async (e) => void streamed.push(e), abort.signal, 200);
    try {
      await waitFor(`the worker's health endpoint (${stderr})`, async () => (await fetch(`http://127.0.0.1:${healthPort}/healthz`).catch(() => undefined))?.ok === true, 60_000, 200);
      const health = (await (await fetch(`http://127.0.0.1:${healthPort}/healthz`)).json()) as { functions: number; engine: { maxSandboxes: number } };
      assert.equal(health.engine.maxSandboxes, 2);

      // Republished with a secret: the record holds it sealed, and only the worker's key opens it for the run.
      await registry.publish({ ...(await registry.get('hello', 'active')), env: { WORKER_TOKEN: 'worker-secret-value' }, secretNames: ['WORKER_TOKEN'] });
      const raw = (await queue.redis.get(deploymentKey('hello', 1)))!;
      assert.ok(!raw.includes('worker-secret-value') && JSON.parse(raw).sealedSecrets, raw);
      const hello = await registry.get('hello', 'active');
      const ids = await Promise.all([1, 2, 3].map((i) => queue.enqueue('hello', { deployment: { name: 'hello', version: hello.version }, request: get(`http://localhost/fn/hello?name=w${i}`), mode: 'async' })));
      await waitFor(`3 completions on the worker node (${stderr})`, async () => (await Promise.all(ids.map((id) => queue.status(id)))).every((s) => s.status === 'completed'), 120_000, 200);
      for (const [i, id] of ids.entries()) {
        const s = await queue.status(id);
        assert.equal(s.result?.worker.endsWith(`:${child.pid}`), true, `ran on the worker node, not here (${s.result?.worker})`);
        assert.deepEqual(bodyJson(s.result!.outcome), { hello: `w${i + 1}`, method: 'GET' });
      }
      await waitFor('results on the result stream', () => ids.every((id) => streamed.some((e) => e.invocationId === id)), 10_000);
    } finally {
      abort.abort();
      await consuming.catch(() => {});
      results.disconnect();
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const [code] = await exited;
      clearTimeout(timer);
      assert.equal(code, 0, `the worker exits cleanly on SIGTERM: ${stderr}`);
      const left = await leftovers(workerHome, child.pid!);
      await fs.rm(workerHome, { recursive: true, force: true });
      assert.deepEqual(left, [], 'the worker node left sandboxes behind');
    }
  });
  test('a worker-only node without the gateways\' secrets key, or with another one, stops at start with one line', async () => {
    const run = async (key: string | undefined) => {
      const workerHome = await tempHome('worker-key');
      try {
        const child = spawn(process.execPath, ['--import', 'tsx', WORKER_ENTRY], {
          env: { ...process.env, REDIS_URL: redis.redis.url, SNAPFN_HOME: workerHome, SNAPFN_TEMPLATE_STORE: path.join(home, 'templates'), SNAPFN_SECRETS_KEY: key ?? '' },
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
        const [code] = (await once(child, 'exit')) as [number | null];
        return { code, lines: stderr.trim().split('\n') };
      } finally {
        await fs.rm(workerHome, { recursive: true, force: true });
      }
    };
    const missing = await run(undefined);
    assert.equal(missing.code, 2, missing.lines.join('\n'));
    assert.equal(missing.lines.length, 1, missing.lines.join('\n'));
    assert.match(missing.lines[0]!, /^snapfn worker: SNAPFN_SECRETS_KEY is required in worker mode/);
    // The earlier worker recorded its key's id in Redis: another key is refused, naming both.
    const other = SecretsKey.generate();
    const wrong = await run(other.toBase64());
    assert.equal(wrong.code, 2, wrong.lines.join('\n'));
    assert.equal(wrong.lines.length, 1, wrong.lines.join('\n'));
    assert.ok(wrong.lines[0]!.includes(other.id) && wrong.lines[0]!.includes(secretsKey.id), wrong.lines[0]);
    const malformed = await run('not-a-key');
    assert.equal(malformed.code, 2);
    assert.match(malformed.lines.join('\n'), /SNAPFN_SECRETS_KEY must be 32 bytes/);
  });
});
