// Cron schedules through BullMQ job schedulers, against a real Redis.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { InvalidInputError } from '../src/errors.ts';
import { InvocationQueue } from '../src/queue/invocation-queue.ts';
import { InvocationWorkers, type InvocationResultEvent } from '../src/queue/invocation-worker.ts';
import { Schedules } from '../src/queue/schedules.ts';
import { FakeEngine, fakeDeployment } from './support/fake-engine.ts';
import { startTestRedis, waitFor, type TestRedis } from './support/redis.ts';

const quiet = () => {};

describe('schedules (real Redis)', () => {
  let redis: TestRedis;
  let queue: InvocationQueue;
  let schedules: Schedules;
  const nodes: InvocationWorkers[] = [];
  const runs: InvocationResultEvent[] = [];
  const node = () => {
    const w = new InvocationWorkers({ redisUrl: redis.redis.url, engine: new FakeEngine({ capacity: 2, invokeMs: 5 }), resolveDeployment: fakeDeployment, onResult: (e) => void runs.push(e), onError: quiet });
    nodes.push(w);
    return w;
  };

  before(async () => {
    redis = await startTestRedis('schedule');
    queue = new InvocationQueue({ redisUrl: redis.redis.url, onError: quiet });
    schedules = new Schedules(queue);
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    await queue?.close();
    await redis?.close();
  });

  test('bad cron expressions and time zones are refused', async () => {
    for (const bad of ['', '* * * *', '*/2 * * * * * *', '61 * * * *', 'every minute', '@daily']) {
      await assert.rejects(schedules.set('ticker', bad), InvalidInputError, JSON.stringify(bad));
    }
    await assert.rejects(schedules.set('ticker', { cron: '* * * * *', tz: 'Mars/Olympus' }), InvalidInputError);
  });

  test('a */2 seconds schedule fires once per tick with two nodes, survives their restart, and stops when removed', async () => {
    // Two nodes serve the function: each tick must still run once.
    for (let i = 0; i < 2; i++) node().start('ticker');
    await Promise.all(nodes.map((n) => n.ready()));
    const view = await schedules.set('ticker', '*/2 * * * * *');
    assert.equal(view.cron, '*/2 * * * * *');
    assert.equal((await schedules.get('ticker'))?.cron, '*/2 * * * * *');

    const windowStart = Date.now();
    await new Promise((r) => setTimeout(r, 7000));
    const windowEnd = Date.now();
    const tickOf = (e: InvocationResultEvent) => Number(e.invocationId.split(':').pop());
    const inWindow = runs.filter((e) => tickOf(e) > windowStart && tickOf(e) <= windowEnd);
    const expected = Math.floor(windowEnd / 2000) - Math.floor(windowStart / 2000);
    assert.ok(Math.abs(inWindow.length - expected) <= 1, `${inWindow.length} runs in the window, expected ${expected} ± 1`);
    const ticks = runs.map(tickOf);
    assert.equal(new Set(ticks).size, ticks.length, 'no tick ran twice');
    assert.ok(ticks.every((t) => t % 2000 === 0), 'runs fall on even seconds');
    assert.ok(runs.every((e) => e.mode === 'schedule' && e.result.outcome.ok));
    assert.ok(runs.every((e) => e.invocationId.startsWith('repeat:cron-ticker:')), 'each run has its own invocation id');
    const lateness = runs.map((e) => e.result.timings.queueWaitMs);
    console.log(`# schedule: ${inWindow.length} runs in ${windowEnd - windowStart} ms (expected ${expected}), start lateness max ${Math.max(...lateness)} ms`);
    const status = await queue.status(runs[0]!.invocationId);
    assert.equal(status.status, 'completed');
    assert.equal(status.function, 'ticker');

    // Every node goes away and comes back: the schedule lives in Redis.
    await Promise.all(nodes.splice(0).map((n) => n.close()));
    const before = runs.length;
    node().start('ticker');
    await waitFor('a tick after the restart', () => runs.length > before, 5000);

    assert.equal(await schedules.remove('ticker'), true);
    await new Promise((r) => setTimeout(r, 300));
    const atRemoval = runs.length;
    await new Promise((r) => setTimeout(r, 4500));
    assert.equal(runs.length, atRemoval, 'no run after the schedule was removed');
    assert.equal(await schedules.get('ticker'), undefined);
  });

  test('removing the function stops its schedule too', async () => {
    node().start('doomed');
    await schedules.set('doomed', { cron: '* * * * * *', tz: 'Europe/Berlin' });
    await waitFor('a first run', () => runs.some((e) => e.functionName === 'doomed'), 5000);
    await queue.removeFunction('doomed');
    await new Promise((r) => setTimeout(r, 300));
    const atRemoval = runs.filter((e) => e.functionName === 'doomed').length;
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(runs.filter((e) => e.functionName === 'doomed').length, atRemoval);
  });
});
