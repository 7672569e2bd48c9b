// snapfn_queue_depth / snapfn_queue_active on GET /metrics, read from the
// BullMQ queues of a real Redis at scrape time (fake engine, in-process gateway).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GatewayFixture, HELLO } from './helpers/gateway-fixture.ts';
import { startTestRedis, waitFor, type TestRedis } from './support/redis.ts';

const SLOW = `export default async function (request) {
  const ms = Number(new URL(request.url).searchParams.get('ms') ?? 0);
  await new Promise((r) => setTimeout(r, ms));
  return { ok: true };
}
`;

describe('queue depth on /metrics (real Redis)', () => {
  let redis: TestRedis;
  let f: GatewayFixture;

  const scrape = async (): Promise<string> => {
    const res = await f.request('/metrics');
    assert.equal(res.status, 200);
    return res.text();
  };
  const sample = (text: string, metric: string, fn: string): number | undefined => {
    const m = text.match(new RegExp(`^${metric}\\{function="${fn}"\\} (\\d+)$`, 'm'));
    return m ? Number(m[1]) : undefined;
  };

  before(async () => {
    redis = await startTestRedis('metrics-queue');
    f = await GatewayFixture.create({ metrics: true, queue: { redisUrl: redis.redis.url, maxQueuedPerFunction: 100 } });
    await f.deployOk({ name: 'hello', files: { 'index.js': HELLO } });
    await f.deployOk({ name: 'slow', files: { 'index.js': SLOW } });
  });

  after(async () => {
    await f?.close();
    await redis?.close();
  });

  test('queued jobs show as depth, running ones as active, and both drain to 0', async () => {
    // Nobody takes jobs of `slow` for now: what is enqueued stays waiting.
    await f.queue.workers.stop('slow');
    const accepted = await Promise.all(Array.from({ length: 5 }, () => f.request('/fn/slow?ms=600', { headers: { 'x-fn-async': '1' } })));
    assert.deepEqual(accepted.map((r) => r.status), Array(5).fill(202));
    let text = await scrape();
    assert.equal(sample(text, 'snapfn_queue_depth', 'slow'), 5, text);
    assert.equal(sample(text, 'snapfn_queue_active', 'slow'), 0);
    assert.equal(sample(text, 'snapfn_queue_depth', 'hello'), 0, 'every served function has a sample');

    f.queue.workers.start('slow');
    await waitFor('a running job on /metrics', async () => (sample(await scrape(), 'snapfn_queue_active', 'slow') ?? 0) >= 1, 10_000, 50);
    await waitFor(
      'the queue to drain on /metrics',
      async () => {
        text = await scrape();
        return sample(text, 'snapfn_queue_depth', 'slow') === 0 && sample(text, 'snapfn_queue_active', 'slow') === 0;
      },
      20_000,
      100,
    );
    assert.doesNotMatch(text, /^snapfn_metrics_collect_errors_total\{/m);
  });

  test('a deleted function leaves the gauges', async () => {
    const res = await f.api('DELETE', '/v1/functions/hello');
    assert.equal(res.status < 300, true, JSON.stringify(res.json));
    assert.equal(sample(await scrape(), 'snapfn_queue_depth', 'hello'), undefined);
  });
});
