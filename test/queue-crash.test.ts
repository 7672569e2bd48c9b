// Failure and scale-out behaviour of the queue with worker nodes as child
// processes (fake engine inside): a worker SIGKILLed mid-burst, Redis
// kill -9'd mid-burst (AOF), two workers sharing one Redis.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { InvocationQueue } from '../src/queue/invocation-queue.ts';
import type { WireRequest } from '../src/schemas/invocation.ts';
import { spawnWorker, type ChildWorker } from './support/child-worker.ts';
import { recordedCounts } from './support/fake-engine.ts';
import { startTestRedis, waitFor, type TestRedis } from './support/redis.ts';

const request = (name: string, i: number): WireRequest => ({ method: 'POST', url: `http://localhost/fn/${name}?i=${i}`, headers: [] });
const data = (name: string, i: number) => ({ deployment: { name, version: 1 }, request: request(name, i), mode: 'async' as const });

describe('queue under failures (child worker processes)', () => {
  let redis: TestRedis;
  let queue: InvocationQueue;
  const children: ChildWorker[] = [];
  const record = (label: string) => path.join(redis.dir, `${label}.log`);
  const worker = async (fn: string, label: string) => {
    const child = await spawnWorker({ REDIS_URL: redis.redis.url, FUNCTIONS: fn, RECORD_FILE: record(label), CAPACITY: '2', INVOKE_MS: '20' });
    children.push(child);
    return child;
  };

  before(async () => {
    redis = await startTestRedis('crash');
    queue = new InvocationQueue({ redisUrl: redis.redis.url, enqueueTimeoutMs: 1000, onError: () => {} });
  });

  after(async () => {
    await Promise.all(children.map((c) => c.kill('SIGKILL')));
    await queue?.close();
    await redis?.close();
  });

  test('a worker SIGKILLed mid-burst: a restarted one finishes everything', async () => {
    const N = 200;
    const ids = await Promise.all(Array.from({ length: N }, (_, i) => queue.enqueue('crashy', data('crashy', i))));
    const first = await worker('crashy', 'crash-a');
    await waitFor('the first worker to get going', async () => (recordedCounts(record('crash-a')).size ?? 0) >= 50, 20_000);
    await first.kill('SIGKILL');
    const doneByFirst = recordedCounts(record('crash-a')).size;
    assert.ok(doneByFirst < N, 'killed before the end of the burst');
    await worker('crashy', 'crash-b');
    await waitFor(`${N} completions`, async () => (await queue.counts('crashy')).completed === N, 30_000, 100);

    const counts = recordedCounts(record('crash-a'), record('crash-b'));
    assert.deepEqual(new Set(counts.keys()), new Set(ids), 'every invocation ran');
    const twice = [...counts.values()].filter((n) => n > 1).length;
    // At-least-once: only what the killed worker had in flight (its capacity, 2) may run again.
    assert.ok(twice <= 2, `${twice} invocations ran more than once`);
    console.log(`# worker crash: ${doneByFirst} done before SIGKILL, ${N - doneByFirst} after restart, ${twice} ran twice`);
  });

  test('two worker processes on one Redis share a burst', async () => {
    const N = 300;
    const [a, b] = await Promise.all([worker('shared', 'share-a'), worker('shared', 'share-b')]);
    assert.ok(a && b);
    const ids = await Promise.all(Array.from({ length: N }, (_, i) => queue.enqueue('shared', data('shared', i))));
    await waitFor(`${N} completions`, async () => (await queue.counts('shared')).completed === N, 30_000, 100);
    const ca = recordedCounts(record('share-a'));
    const cb = recordedCounts(record('share-b'));
    assert.ok(ca.size > 0 && cb.size > 0, `both workers processed jobs (${ca.size} / ${cb.size})`);
    const all = recordedCounts(record('share-a'), record('share-b'));
    assert.deepEqual(new Set(all.keys()), new Set(ids));
    assert.deepEqual([...all.values()].filter((n) => n !== 1), [], 'nothing ran twice');
    console.log(`# two workers: ${ca.size} + ${cb.size}`);
  });

  test('Redis kill -9 mid-burst: async work completes, idempotency keys prevent duplicate jobs', async () => {
    const N = 200;
    await worker('durable', 'durable');
    const ids: string[] = new Array(N);
    let retried = 0;
    // A client that retries every enqueue that failed, with the same key, as an HTTP client would.
    const enqueueWithRetry = async (i: number) => {
      for (let attempt = 0; attempt < 60; attempt++) {
        try {
          return await queue.enqueue('durable', data('durable', i), { idempotencyKey: `key-${i}` });
        } catch {
          retried++;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      throw new Error(`enqueue ${i} never succeeded`);
    };
    const producer = (async () => {
      for (let i = 0; i < N; i += 10) {
        const batch = await Promise.all(Array.from({ length: 10 }, (_, k) => enqueueWithRetry(i + k)));
        batch.forEach((id, k) => (ids[i + k] = id));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    // Mid-burst for both sides: the producer is still enqueueing, the worker still running.
    await waitFor('a quarter of the burst to run', () => recordedCounts(record('durable')).size >= N / 4, 20_000);
    const producedAtCrash = ids.filter(Boolean).length;
    await redis.crashAndRestart(1500);
    await producer;
    await waitFor(`${N} completions after the restart`, async () => (await queue.counts('durable')).completed === N, 60_000, 200);

    // Every client retries once more, blindly: same ids, no new jobs.
    const again = await Promise.all(Array.from({ length: N }, (_, i) => queue.enqueue('durable', data('durable', i), { idempotencyKey: `key-${i}` })));
    assert.deepEqual(again, ids);
    const counts = await queue.counts('durable');
    assert.equal(counts.completed, N);
    assert.equal((counts.waiting ?? 0) + (counts.delayed ?? 0) + (counts.active ?? 0) + (counts.failed ?? 0), 0);
    const runs = recordedCounts(record('durable'));
    assert.deepEqual(new Set(runs.keys()), new Set(ids), 'every invocation ran at least once');
    const twice = [...runs.values()].filter((n) => n > 1).length;
    assert.ok(producedAtCrash < N, 'Redis died while the producer was still enqueueing');
    console.log(`# redis crash: ${producedAtCrash} enqueued before the crash, ${retried} enqueue retries, ${twice} invocations ran twice (at-least-once)`);
    const aof = await fs.readdir(path.join(redis.dir, 'appendonlydir'));
    assert.ok(aof.some((f) => f.includes('.aof')), 'the AOF is where the queue survived');
  });
});
