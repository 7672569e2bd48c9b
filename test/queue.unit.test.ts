// The queue layer's pure parts: cron validation, concurrency split, Retry-After, status mapping, ids.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { retryAfterSeconds } from '../src/queue/backlog-estimate.ts';
import { ConcurrencyGovernor, distribute } from '../src/queue/concurrency-governor.ts';
import { parseFailedReason } from '../src/queue/errors.ts';
import { functionOfScheduledRun, idempotentInvocationId, isUsableJobId } from '../src/queue/invocation-ids.ts';
import { invocationStatus, type JobSnapshot } from '../src/queue/invocation-status.ts';
import { FunctionConfig } from '../src/schemas/function-config.ts';
import { CronExpression, CronSchedule, normalizeSchedule, ScheduleSetting } from '../src/schemas/schedule.ts';

describe('cron schema', () => {
  test('accepts 5- and 6-field patterns the scheduler understands', () => {
    for (const ok of ['*/2 * * * * *', '0 * * * *', '0 9 * * MON-FRI', '30 0 0 1 * *', '0 0 L * *', ' 0  *  * * * ']) assert.ok(CronExpression.safeParse(ok).success, ok);
  });
  test('refuses the rest with a readable message', () => {
    for (const bad of ['', '   ', '* * * *', '* * * * * * *', '61 * * * *', '*/0 * * * *', '0 0 31 2 *', '@hourly', 'every day']) {
      const r = CronExpression.safeParse(bad);
      assert.equal(r.success, false, JSON.stringify(bad));
      assert.match(r.error!.issues[0]!.message, /cron|fields/);
    }
  });
  test('time zones are IANA names', () => {
    assert.ok(CronSchedule.safeParse({ cron: '0 9 * * *', tz: 'Europe/Berlin' }).success);
    assert.equal(CronSchedule.safeParse({ cron: '0 9 * * *', tz: 'Mars/Olympus' }).success, false);
    assert.equal(CronSchedule.safeParse({ cron: '0 9 * * *', extra: 1 }).success, false);
  });
  test('config.schedule is validated with it, and normalizes to { cron, tz? }', () => {
    assert.equal(FunctionConfig.safeParse({ schedule: 'not cron' }).success, false);
    assert.equal(FunctionConfig.safeParse({ schedule: { cron: '*/5 * * * *', tz: 'Nowhere' } }).success, false);
    assert.ok(FunctionConfig.safeParse({ schedule: { cron: '*/5 * * * *', tz: 'UTC' } }).success);
    assert.deepEqual(normalizeSchedule(ScheduleSetting.parse(' */5  * * * * ')), { cron: '*/5 * * * *' });
  });
});

describe('concurrency split', () => {
  const now = 100_000;
  test('a lone busy queue gets the whole budget', () => {
    assert.deepEqual([...distribute(4, [{ name: 'a', inFlight: 1, lastJobAt: now }], now, 2000)], [['a', 4]]);
  });
  test('busy queues share it, idle ones keep a probe only while there is room', () => {
    const loads = [
      { name: 'a', inFlight: 2, lastJobAt: now },
      { name: 'b', inFlight: 1, lastJobAt: now },
      { name: 'idle', inFlight: 0, lastJobAt: 0 },
    ];
    assert.deepEqual(Object.fromEntries(distribute(5, loads, now, 2000)), { a: 3, b: 2, idle: 1 });
    assert.deepEqual(Object.fromEntries(distribute(3, loads, now, 2000)), { a: 2, b: 1, idle: 0 });
  });
  test('no budget pauses everything', () => {
    const loads = [
      { name: 'a', inFlight: 1, lastJobAt: now },
      { name: 'idle', inFlight: 0, lastJobAt: 0 },
    ];
    assert.deepEqual(Object.fromEntries(distribute(0, loads, now, 2000)), { a: 0, idle: 0 });
  });
});

describe('concurrency governor', () => {
  test('a queue may start one job per busy keepWarm sandbox of its function, even when the node is full', () => {
    const applied = new Map<string, number>();
    const stats = { liveSandboxes: 3, maxSandboxes: 3, busySandboxes: 3, pooled: {}, poolHits: 0, poolMisses: 0, restores: 3, keepWarmReuses: 0, handoffs: 0, templateBuilds: 0 };
    const governor = new ConcurrencyGovernor({
      engine: { freeCapacity: () => 0, stats: () => stats, reusableFor: (name) => (name === 'warm' ? 2 : 0) },
      reserve: 1,
      apply: (name, concurrency) => applied.set(name, concurrency),
    });
    try {
      governor.register('warm');
      governor.register('cold');
      // Node full, no queue job in the engine: no share of places for anyone,
      // but the two busy sandboxes of `warm` will be handed on to waiting jobs.
      assert.deepEqual(Object.fromEntries(applied), { warm: 2, cold: 0 });
      governor.jobStarted('warm');
      governor.enterEngine();
      assert.equal(applied.get('warm'), 2);
    } finally {
      governor.close();
    }
  });
});

describe('concurrency governor budget', () => {
  const stats = (max: number) => ({ liveSandboxes: 0, maxSandboxes: max, busySandboxes: 0, pooled: {}, poolHits: 0, poolMisses: 0, restores: 0, keepWarmReuses: 0, handoffs: 0, templateBuilds: 0 });
  const governor = (max: number, free: number, reserve: number, inFlight?: number) =>
    new ConcurrencyGovernor({ engine: { freeCapacity: () => free, stats: () => stats(max), ...(inFlight !== undefined ? { inFlight: () => inFlight } : {}) }, reserve, apply: () => {} });
  test('the direct reserve counts what direct invocations already hold', () => {
    // 10 places: 9 direct invocations restoring, 1 warm sandbox idle.
    const g = governor(10, 1, 1, 9);
    const unknown = governor(10, 1, 1);
    try {
      assert.equal(g.budget(), 1, 'the queue may use the idle one: the direct path holds 9 >= its reserve of 1');
      assert.equal(unknown.budget(), 0, 'an engine that does not report its invocations keeps the whole reserve');
    } finally {
      g.close();
      unknown.close();
    }
  });
  test('with nothing held by the direct path, one place stays for it', () => {
    const idle = governor(10, 10, 1, 0);
    const full = governor(10, 1, 1, 9);
    try {
      assert.equal(idle.budget(), 9);
      for (let i = 0; i < 9; i++) full.enterEngine();
      assert.equal(full.budget(), 9, '9 queue jobs in the engine and one place left: that one is the reserve');
    } finally {
      idle.close();
      full.close();
    }
  });
});

describe('Retry-After of a full queue', () => {
  const now = 1_000_000;
  test('from the recent drain rate: a tenth of the backlog', () => {
    // 50 finishes over the last 10 s: 5/s; 1000 queued -> 100 to drain -> 20 s.
    const finishes = Array.from({ length: 50 }, (_, i) => now - 10_000 + i * 200);
    assert.equal(retryAfterSeconds(1000, finishes, now), 20);
  });
  test('falls back when nothing finished recently, and stays within bounds', () => {
    assert.equal(retryAfterSeconds(1000, [], now), 5);
    assert.equal(retryAfterSeconds(1000, [now - 120_000, now - 119_000], now), 5);
    assert.equal(retryAfterSeconds(1, [now - 2, now - 1], now), 1);
    assert.equal(retryAfterSeconds(10_000_000, [now - 59_000, now - 58_000], now), 300);
  });
});

describe('invocation status mapping', () => {
  const base: JobSnapshot = {
    id: 'inv-1',
    data: { invocationId: 'inv-1', deployment: { name: 'f', version: 1 }, request: { method: 'GET', url: 'http://x/', headers: [] }, mode: 'async', enqueuedAt: 1000 },
    returnvalue: undefined,
    failedReason: '',
    attemptsMade: 0,
    opts: { attempts: 3 },
    timestamp: 1000,
    delay: 0,
    processedOn: undefined,
    finishedOn: undefined,
  } as unknown as JobSnapshot;
  const failed = { ok: false as const, error: { code: 'timeout' as const, message: 'too slow' }, logs: [], logsTruncated: false };
  const result = (outcome: typeof failed | { ok: true; response: { status: number; headers: []; bodyBase64: string }; logs: []; logsTruncated: false }) => ({ outcome, timings: { acquireMs: 0, restoreMs: 0, handlerMs: 1, source: 'pool' as const, queueWaitMs: 0 }, attempt: 1, worker: 'w' });

  test('waiting, and waiting again between attempts with the last error', () => {
    assert.equal(invocationStatus('f', base, 'waiting').status, 'queued');
    const retrying = invocationStatus('f', { ...base, attemptsMade: 1, failedReason: 'timeout: too slow' } as JobSnapshot, 'delayed');
    assert.equal(retrying.status, 'queued');
    assert.deepEqual(retrying.error, { code: 'timeout', message: 'too slow' });
  });
  test('a completed job with a failed outcome (sync) is failed; a failed job is dead', () => {
    const ok = result({ ok: true, response: { status: 200, headers: [], bodyBase64: '' }, logs: [], logsTruncated: false });
    assert.equal(invocationStatus('f', { ...base, returnvalue: ok, finishedOn: 2000 } as JobSnapshot, 'completed').status, 'completed');
    const s = invocationStatus('f', { ...base, returnvalue: result(failed), finishedOn: 2000 } as JobSnapshot, 'completed');
    assert.equal(s.status, 'failed');
    assert.equal(s.finishedAt, 2000);
    const dead = invocationStatus('f', { ...base, attemptsMade: 3, failedReason: 'handler_error: boom', finishedOn: 3000 } as JobSnapshot, 'failed');
    assert.equal(dead.status, 'dead');
    assert.deepEqual(dead.error, { code: 'handler_error', message: 'boom' });
    assert.deepEqual(parseFailedReason('job stalled more than allowable limit'), { code: 'queue_error', message: 'job stalled more than allowable limit' });
  });
});

describe('invocation ids', () => {
  test('idempotent ids are stable UUIDs per (function, key)', () => {
    const a = idempotentInvocationId('f', 'key');
    assert.equal(a, idempotentInvocationId('f', 'key'));
    assert.notEqual(a, idempotentInvocationId('g', 'key'));
    assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.ok(isUsableJobId(a));
    assert.equal(isUsableJobId('123'), false);
    assert.equal(isUsableJobId('a:b'), false);
  });
  test('a schedule run names its function', () => {
    assert.equal(functionOfScheduledRun('repeat:cron-my-fn:1712345678000'), 'my-fn');
    assert.equal(functionOfScheduledRun('5f0c-uuid'), undefined);
  });
});
