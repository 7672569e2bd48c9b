// Queue mechanics against a real Redis (started per file) and a fake engine:
// bursts, sync waits, idempotency, backlog limits, retries and dead letters.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CapacityError, NotFoundError } from '../src/errors.ts';
import { QueueWaitTimeoutError } from '../src/queue/errors.ts';
import { InvocationQueue } from '../src/queue/invocation-queue.ts';
import { InvocationWorkers, type InvocationResultEvent } from '../src/queue/invocation-worker.ts';
import type { WireRequest } from '../src/schemas/invocation.ts';
import { FakeEngine, fakeDeployment } from './support/fake-engine.ts';
import { percentile, startTestRedis, waitFor, type TestRedis } from './support/redis.ts';

const request = (name: string, query = ''): WireRequest => ({ method: 'POST', url: `http://localhost/fn/${name}${query}`, headers: [] });
const quiet = () => {};

describe('invocation queue (real Redis, fake engine)', () => {
  let redis: TestRedis;
  let queue: InvocationQueue;
  let engine: FakeEngine;
  let workers: InvocationWorkers;
  const events: InvocationResultEvent[] = [];

  before(async () => {
    redis = await startTestRedis('burst');
    queue = new InvocationQueue({ redisUrl: redis.redis.url, backoff: { type: 'fixed', delayMs: 50 }, onError: quiet });
    engine = new FakeEngine({ capacity: 2, invokeMs: 20 });
    workers = new InvocationWorkers({ redisUrl: redis.redis.url, engine, resolveDeployment: fakeDeployment, onResult: (e) => void events.push(e), onError: quiet });
  });

  after(async () => {
    await workers?.close();
    await queue?.close();
    await redis?.close();
  });

  test('a burst of 500 on a function with capacity 2: all complete, none lost, none duplicated', async (t) => {
    workers.start('burst');
    await workers.ready();
    const started = Date.now();
    const ids = await Promise.all(Array.from({ length: 500 }, (_, i) => queue.enqueue('burst', { deployment: { name: 'burst', version: 1 }, request: request('burst', `?i=${i}`), mode: 'async' })));
    const enqueuedMs = Date.now() - started;
    assert.equal(new Set(ids).size, 500);
    await waitFor('500 completions', async () => (await queue.counts('burst')).completed === 500, 60_000, 100);
    const finished = Date.now();

    const counts = engine.counts();
    assert.equal(counts.size, 500, 'every invocation ran');
    assert.deepEqual([...counts.values()].filter((n) => n !== 1), [], 'no invocation ran twice');
    assert.deepEqual(new Set(counts.keys()), new Set(ids));
    assert.ok(engine.maxRunning <= 2);
    const statuses = await Promise.all(ids.slice(0, 20).map((id) => queue.status(id)));
    assert.ok(statuses.every((s) => s.status === 'completed' && s.attempts === 1 && s.result?.outcome.ok));

    const waits = events.filter((e) => e.functionName === 'burst').map((e) => e.result.timings.queueWaitMs);
    const lastFinish = Math.max(...engine.calls.map((c) => c.finishedAt));
    const numbers = {
      jobs: 500,
      enqueueMs: enqueuedMs,
      drainMs: lastFinish - started,
      throughputPerSec: Math.round((500 / (lastFinish - started)) * 1000),
      idealPerSec: Math.round((2 / engine.invokeMs) * 1000),
      queueWaitP50Ms: percentile(waits, 50),
      queueWaitP99Ms: percentile(waits, 99),
      engineMaxWaiting: engine.maxWaiting,
      observedByTestMs: finished - started,
    };
    t.diagnostic(`burst: ${JSON.stringify(numbers)}`);
    console.log(`# burst numbers ${JSON.stringify(numbers)}`);
  });

  test('a sync invocation that had to queue gets its result; a failed sync outcome is returned, not retried', async () => {
    const ok = await queue.enqueue('burst', { deployment: { name: 'burst', version: 1 }, request: request('burst', '?sync=1'), mode: 'sync' });
    const result = await queue.waitForResult(ok, 10_000);
    assert.equal(result.outcome.ok, true);
    assert.equal(result.attempt, 1);

    const bad = await queue.enqueue('burst', { deployment: { name: 'burst', version: 1 }, request: request('burst', '?fail=1'), mode: 'sync' });
    const failed = await queue.waitForResult(bad, 10_000, 'burst');
    assert.equal(failed.outcome.ok, false);
    const status = await queue.status(bad);
    assert.equal(status.status, 'failed');
    assert.equal(status.attempts, 1);
    assert.equal(status.error?.code, 'handler_error');
    assert.equal(engine.counts().get(bad), 1, 'a sync failure is not retried');
  });

  test('on an idle queue a sync invocation costs a few ms of queue overhead', async () => {
    const waits: number[] = [];
    const roundTrips: number[] = [];
    for (let i = 0; i < 30; i++) {
      const started = performance.now();
      const id = await queue.enqueue('burst', { deployment: { name: 'burst', version: 1 }, request: request('burst', `?idle=${i}&ms=1`), mode: 'sync' });
      const result = await queue.waitForResult(id, 10_000, 'burst');
      roundTrips.push(performance.now() - started - result.timings.handlerMs);
      waits.push(result.timings.queueWaitMs);
    }
    const numbers = { queueWaitP50Ms: percentile(waits, 50), queueWaitP99Ms: percentile(waits, 99), overheadP50Ms: Math.round(percentile(roundTrips, 50) * 10) / 10, overheadP99Ms: Math.round(percentile(roundTrips, 99) * 10) / 10 };
    console.log(`# idle queue numbers ${JSON.stringify(numbers)}`);
    assert.ok(numbers.queueWaitP50Ms < 100, 'an idle worker picks a job up at once');
  });

  test('an Idempotency-Key maps a repeated request to the first invocation', async () => {
    const data = { deployment: { name: 'burst', version: 1 }, request: request('burst', '?idem=1'), mode: 'async' as const };
    const [a, b] = await Promise.all([queue.enqueue('burst', data, { idempotencyKey: 'order-42' }), queue.enqueue('burst', data, { idempotencyKey: 'order-42' })]);
    assert.equal(a, b);
    await waitFor('the idempotent job', async () => (await queue.status(a)).status === 'completed', 10_000);
    const c = await queue.enqueue('burst', data, { idempotencyKey: 'order-42' });
    assert.equal(c, a, 'a repeat after completion still maps to the first invocation');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(engine.counts().get(a), 1);
    const other = await queue.enqueue('other-fn', { ...data, deployment: { name: 'other-fn', version: 1 } }, { idempotencyKey: 'order-42' });
    assert.notEqual(other, a, 'keys are per function');
  });

  test('the per-function queue limit gives CapacityError with a Retry-After', async () => {
    // No worker serves `full`: everything stays queued.
    await queue.configure('full', { maxQueued: 5 });
    const data = { deployment: { name: 'full', version: 1 }, request: request('full'), mode: 'async' as const };
    const first = await queue.enqueue('full', data, { idempotencyKey: 'k0' });
    for (let i = 1; i < 5; i++) await queue.enqueue('full', data);
    const err = await queue.enqueue('full', data).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof CapacityError, String(err));
    assert.equal(err.status, 429);
    assert.ok(err.retryAfterSeconds >= 1 && err.retryAfterSeconds <= 300);
    assert.equal(await queue.enqueue('full', data, { idempotencyKey: 'k0' }), first, 'a repeat of a queued key is not refused');
    assert.equal((await queue.status(first)).status, 'queued');
    await queue.removeFunction('full');
    await assert.rejects(queue.status(first), NotFoundError);
  });

  test('async retries with backoff; after the last attempt the invocation is dead', async () => {
    const data = (q: string) => ({ deployment: { name: 'burst', version: 1 }, request: request('burst', q), mode: 'async' as const });
    const flaky = await queue.enqueue('burst', data('?failTimes=1'), { attempts: 3 });
    const doomed = await queue.enqueue('burst', data('?fail=1'), { attempts: 3 });
    await waitFor('both settled', async () => ['completed', 'dead'].includes((await queue.status(flaky)).status) && (await queue.status(doomed)).status === 'dead', 15_000);
    const f = await queue.status(flaky);
    assert.equal(f.status, 'completed');
    assert.equal(f.result?.attempt, 2);
    const d = await queue.status(doomed);
    assert.equal(d.status, 'dead');
    assert.equal(d.attempts, 3);
    assert.equal(d.maxAttempts, 3);
    assert.deepEqual(d.error, { code: 'handler_error', message: 'attempt 3 failed on purpose' });
    assert.deepEqual(
      events.filter((e) => e.invocationId === doomed).map((e) => [e.result.attempt, e.willRetry]),
      [
        [1, true],
        [2, true],
        [3, false],
      ],
      'every attempt is reported to onResult',
    );
  });

  test('a sync caller that gives up withdraws its job if it has not started', async () => {
    const id = await queue.enqueue('nobody-serves', { deployment: { name: 'nobody-serves', version: 1 }, request: request('nobody-serves'), mode: 'sync' });
    const err = await queue.waitForResult(id, 300).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof QueueWaitTimeoutError, String(err));
    assert.equal(err.code, 'queue_timeout');
    await assert.rejects(queue.status(id), NotFoundError);
  });

  test('the queue leaves the reserved sandboxes to the direct path', async () => {
    const direct = new FakeEngine({ capacity: 2, invokeMs: 20 });
    const reserved = new InvocationWorkers({ redisUrl: redis.redis.url, engine: direct, resolveDeployment: fakeDeployment, reserveForDirect: 1, onError: quiet });
    try {
      reserved.start('reserved');
      await reserved.ready();
      await Promise.all(Array.from({ length: 40 }, () => queue.enqueue('reserved', { deployment: { name: 'reserved', version: 1 }, request: request('reserved'), mode: 'async' })));
      await waitFor('40 completions', async () => (await queue.counts('reserved')).completed === 40, 20_000);
      assert.equal(direct.maxRunning, 1, 'one sandbox stayed free for direct invocations');
    } finally {
      await reserved.close();
    }
  });
});
