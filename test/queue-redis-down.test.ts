// The queue while Redis is away, in process (real redis-server, fake
// engine): callers hear within the grace, abandoned and expired sync jobs
// never run, closes finish with Redis gone, connections can always be cut,
// the node's own Redis is restarted on its port and dies with its parent.
// The same with a real gateway process: test/faults-redis.e2e.test.ts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { QueueUnavailableError, QueueWaitTimeoutError } from '../src/queue/errors.ts';
import { InvocationQueue } from '../src/queue/invocation-queue.ts';
import { InvocationWorkers } from '../src/queue/invocation-worker.ts';
import { connectRedis, cutConnections } from '../src/queue/redis-connection.ts';
import { SupervisedRedis } from '../src/queue/redis-server.ts';
import type { WireRequest } from '../src/schemas/invocation.ts';
import { FakeEngine, fakeDeployment } from './support/fake-engine.ts';
import { redisServers, startTestRedis, waitFor, type TestRedis } from './support/redis.ts';

const request = (name: string, query = ''): WireRequest => ({ method: 'POST', url: `http://localhost/fn/${name}${query}`, headers: [] });
const job = (name: string, mode: 'sync' | 'async', query = '') => ({ deployment: { name, version: 1 }, request: request(name, query), mode });
const quiet = () => {};
const GRACE_MS = 1500;

async function timed<T>(work: Promise<T>): Promise<{ ms: number; value?: T; error?: Error }> {
  const started = Date.now();
  try {
    return { ms: Date.now() - started, value: await work };
  } catch (err) {
    return { ms: Date.now() - started, error: err as Error };
  }
}

// The closes here are bounded: they cut what waits on a Redis that went away and return, and BullMQ's
// own close of such a worker may never finish, its lock-renewal timer keeping this process alive
// (a node exits after its close; docs/queue.md). Once every test has reported, the file ends.
after(() => {
  setTimeout(() => process.exit(), 5000).unref();
});

describe('the queue while Redis is away (real Redis, fake engine)', () => {
  let redis: TestRedis;
  let queue: InvocationQueue;
  let engine: FakeEngine;
  let workers: InvocationWorkers;

  before(async () => {
    redis = await startTestRedis('down');
    queue = new InvocationQueue({ redisUrl: redis.redis.url, onError: quiet });
    engine = new FakeEngine({ capacity: 1, invokeMs: 20 });
    workers = new InvocationWorkers({ redisUrl: redis.redis.url, engine, resolveDeployment: fakeDeployment, isAbandoned: (id) => queue.isAbandoned(id), onError: quiet });
  });

  after(async () => {
    await workers?.close();
    await queue?.close();
    await redis?.close();
  });

  test('a sync caller waiting on a killed Redis hears 503 queue_unavailable after the grace; its job never runs, even once Redis is back', async () => {
    workers.start('down');
    await workers.ready();
    // One long job holds the node's only sandbox, the second waits behind it in Redis.
    const blocker = await queue.enqueue('down', job('down', 'async', '?ms=1500'));
    const waiting = await queue.enqueue('down', job('down', 'sync'), { waitMs: 60_000 });
    await waitFor('the blocker to run', () => engine.stats().busySandboxes > 0, 10_000, 10);
    const wait = timed(queue.waitForResult(waiting, 60_000, 'down'));
    await new Promise((r) => setTimeout(r, 100));
    await redis.kill();
    const { ms, error } = await wait;
    assert.ok(error instanceof QueueUnavailableError, String(error));
    assert.equal(error.status, 503);
    assert.ok(ms >= GRACE_MS - 200 && ms <= GRACE_MS + 1500, `answered after ${ms} ms`);
    assert.equal(queue.health.available, false);
    assert.match(queue.health.state().reason ?? '', /.+/);
    assert.ok(queue.isAbandoned(waiting));

    // Refused, not hung, while Redis is down.
    const enqueue = await timed(queue.enqueue('down', job('down', 'async')));
    assert.ok(enqueue.error instanceof QueueUnavailableError);
    assert.ok(enqueue.ms <= GRACE_MS + 500, `enqueue refused after ${enqueue.ms} ms`);
    const status = await timed(queue.status(blocker, 'down'));
    assert.ok(status.error instanceof QueueUnavailableError);

    await redis.restart();
    await waitFor('Redis available again', () => queue.health.available, 10_000, 20);
    await waitFor('the blocker to complete', async () => (await queue.status(blocker, 'down')).status === 'completed', 20_000, 50);
    await waitFor('the abandoned job withdrawn', async () => !queue.isAbandoned(waiting), 10_000, 50);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(engine.counts().get(waiting), undefined, 'the abandoned sync job never ran');
  });

  test('an enqueue answered 503 while Redis hung is never run when its add lands afterwards', async () => {
    workers.start('hung');
    await workers.ready();
    await queue.waitForResult(await queue.enqueue('hung', job('hung', 'sync'), { waitMs: 10_000 }), 10_000, 'hung');
    const id = 'hung-late-add';
    // Stopped, not killed: the connection stays up and the add is delivered when Redis resumes.
    process.kill(redis.redis.pid, 'SIGSTOP');
    try {
      const refused = await timed(queue.enqueue('hung', { ...job('hung', 'async'), invocationId: id }));
      assert.ok(refused.error instanceof QueueUnavailableError, String(refused.error));
      assert.ok(queue.isAbandoned(id));
    } finally {
      process.kill(redis.redis.pid, 'SIGCONT');
    }
    // Withdrawn by the pass once it lands, or refused by the worker if that took it first.
    await waitFor('the late add to land and be withdrawn or refused', () => !queue.isAbandoned(id), 15_000, 50);
    await new Promise((r) => setTimeout(r, 500));
    const after = await queue.status(id, 'hung').catch((err: Error) => err);
    if (!(after instanceof Error)) assert.deepEqual([after.status, after.error?.code], ['dead', 'queue_timeout']);
    assert.equal(engine.counts().get(id), undefined, 'the job its caller was told was not queued never ran');
  });

  test('a sync job taken after its caller stopped waiting is not run (queue_timeout); its Idempotency-Key is free again', async () => {
    workers.start('late');
    await workers.ready();
    // The only sandbox is busy for 800 ms; the caller waits 200.
    await queue.enqueue('late', job('late', 'async', '?ms=800'));
    await waitFor('the blocker to run', () => engine.stats().busySandboxes > 0, 10_000, 10);
    const id = await queue.enqueue('late', job('late', 'sync'), { waitMs: 200, idempotencyKey: 'k-late' });
    // Not withdrawn by the waiter (there is none here): only expiresAt protects it.
    await waitFor('the late job to be failed by the worker', async () => (await queue.status(id, 'late')).status === 'failed', 10_000, 50);
    const view = await queue.status(id, 'late');
    assert.equal(view.error?.code, 'queue_timeout');
    assert.equal(engine.counts().get(id), undefined, 'not run');
    const wait = await timed(queue.waitForResult(id, 1000, 'late'));
    assert.ok(wait.error instanceof QueueWaitTimeoutError && wait.error.code === 'queue_timeout', String(wait.error));
    // The same key again: a new job (it runs), not the dead one back.
    const again = await queue.enqueue('late', job('late', 'sync'), { waitMs: 10_000, idempotencyKey: 'k-late' });
    assert.equal(again, id, 'same derived id');
    const result = await queue.waitForResult(again, 10_000, 'late');
    assert.ok(result.outcome.ok);
  });

  test('closing the workers and the producer with Redis gone finishes in seconds', async () => {
    const q = new InvocationQueue({ redisUrl: redis.redis.url, onError: quiet });
    const w = new InvocationWorkers({ redisUrl: redis.redis.url, engine: new FakeEngine({ capacity: 1, invokeMs: 10 }), resolveDeployment: fakeDeployment, onError: quiet });
    w.start('closing');
    await w.ready();
    const id = await q.enqueue('closing', job('closing', 'sync'), { waitMs: 30_000 });
    await q.waitForResult(id, 10_000, 'closing');
    await redis.kill();
    await waitFor('Redis seen as gone', () => !q.health.available, 5000, 20);
    const closeWorkers = await timed(w.close());
    const closeQueue = await timed(q.close());
    await redis.restart();
    assert.ok(closeWorkers.ms < 4000, `workers closed in ${closeWorkers.ms} ms`);
    assert.ok(closeQueue.ms < 2000, `queue closed in ${closeQueue.ms} ms`);
  });

  test('closing while a result is on its way to a hung Redis: the close ends and nothing spins afterwards', async () => {
    const fake = new FakeEngine({ capacity: 1, invokeMs: 10 });
    const w = new InvocationWorkers({ redisUrl: redis.redis.url, engine: fake, resolveDeployment: fakeDeployment, onError: quiet, closeRedisGraceMs: 500 });
    w.start('spin');
    await w.ready();
    await queue.enqueue('spin', job('spin', 'async', '?ms=400'));
    await waitFor('the job to run', () => fake.stats().busySandboxes > 0, 10_000, 10);
    // Its result goes out to a Redis that takes it and never answers.
    process.kill(redis.redis.pid, 'SIGSTOP');
    try {
      await waitFor('the job to leave the engine', () => fake.stats().busySandboxes === 0, 5000, 10);
      await new Promise((r) => setTimeout(r, 100));
      const closing = await timed(w.close());
      assert.ok(closing.ms < 4000, `workers closed in ${closing.ms} ms`);
      // BullMQ retried the completion without pause once the connections were cut: a busy loop.
      const before = process.cpuUsage();
      await new Promise((r) => setTimeout(r, 1000));
      const used = process.cpuUsage(before);
      const cpuMs = (used.user + used.system) / 1000;
      assert.ok(cpuMs < 400, `${Math.round(cpuMs)} ms of CPU in the second after the close`);
    } finally {
      process.kill(redis.redis.pid, 'SIGCONT');
    }
  });

  test('cut() before the close (a forced stop): the fetch loops wait between retries instead of spinning, and the close still ends', async () => {
    const w = new InvocationWorkers({ redisUrl: redis.redis.url, engine: new FakeEngine({ capacity: 1, invokeMs: 10 }), resolveDeployment: fakeDeployment, onError: quiet });
    w.start('forced');
    await w.ready();
    w.cut();
    // The first retry comes after BullMQ's runRetryDelay (1 s): measure after it.
    await new Promise((r) => setTimeout(r, 1500));
    const before = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 1000));
    const used = process.cpuUsage(before);
    const cpuMs = (used.user + used.system) / 1000;
    assert.ok(cpuMs < 400, `${Math.round(cpuMs)} ms of CPU in the second after the cut`);
    const closing = await timed(w.close());
    assert.ok(closing.ms < 4000, `workers closed in ${closing.ms} ms`);
  });

  test('cutConnections ends a reconnecting connection and its duplicates, failing what waits on them', async () => {
    const conn = connectRedis(redis.redis.url);
    conn.on('error', quiet);
    const dup = conn.duplicate();
    dup.on('error', quiet);
    await Promise.all([conn.ping(), dup.ping()]);
    const blocked = dup.bzpopmin('nothing-here', 0).then(
      () => 'resolved',
      (err: Error) => err.message,
    );
    await redis.kill();
    await waitFor('reconnecting', () => conn.status === 'reconnecting' && dup.status === 'reconnecting', 5000, 10);
    const pending = conn.get('x').then(
      () => 'resolved',
      (err: Error) => err.message,
    );
    cutConnections(conn);
    assert.equal(await pending, 'Connection is closed.');
    assert.equal(await blocked, 'Connection is closed.');
    assert.equal(conn.status, 'end');
    assert.equal(dup.status, 'end');
    await redis.restart();
  });
});

describe('the node\'s own Redis (SupervisedRedis)', () => {
  let dir: string;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-supervised-'));
  });

  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('restarted on the same port and directory after kill -9; close() stops it for good', async () => {
    const logs: string[] = [];
    const redis = await SupervisedRedis.start({ dir, log: (m) => logs.push(m) });
    try {
      const first = redis.pid!;
      const client = connectRedis(redis.url);
      client.on('error', quiet);
      await client.set('kept', 'yes');
      process.kill(first, 'SIGKILL');
      await waitFor('a restart', () => redis.restarts === 1 && redis.pid !== undefined, 10_000, 10);
      assert.notEqual(redis.pid, first);
      assert.deepEqual(await redisServers({ dir, port: redis.port }), [redis.pid]);
      assert.equal(await client.get('kept'), 'yes', 'the AOF replayed, the client reconnected to the same URL');
      cutConnections(client);
      assert.ok(logs.some((l) => l.includes('restarting')), logs.join('\n'));
    } finally {
      await redis.close();
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await redisServers({ dir }), [], 'not restarted after close()');
  });

  test('dies with its parent: SIGKILL of the process that started it leaves no redis-server', async () => {
    const script = `
      const { SupervisedRedis } = await import(${JSON.stringify(new URL('../src/queue/redis-server.ts', import.meta.url).href)});
      const redis = await SupervisedRedis.start({ dir: ${JSON.stringify(path.join(dir, 'child'))} });
      console.log('pid', redis.pid);
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    await waitFor(`the child's Redis (${out})`, () => /pid \d+/.test(out), 30_000, 20);
    const pid = Number(/pid (\d+)/.exec(out)![1]);
    assert.deepEqual(await redisServers({ dir: path.join(dir, 'child') }), [pid]);
    child.kill('SIGKILL');
    await waitFor('its redis-server to die with it', async () => (await redisServers({ dir: path.join(dir, 'child') })).length === 0, 5000, 20);
  });
});
