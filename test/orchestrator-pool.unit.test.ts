// The traffic-following warm pool driven through the orchestrator with the
// fake sandbox driver. Restores and fills take real time, so requests are
// spaced in real time too while the pool has to keep up; the policy's clock
// is a fake one besides, so the slow window and the idle minute pass at once.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Orchestrator } from '../src/orchestrator/orchestrator.ts';
import type { Deployment } from '../src/orchestrator/types.ts';
import { FunctionConfig, type FunctionConfigInput } from '../src/schemas/function-config.ts';
import { FakeDriver } from './support/fake-driver.ts';

function deployment(name: string, config: FunctionConfigInput = {}): Deployment {
  return { name, version: 1, templateId: `tpl-${name}`, config: FunctionConfig.parse(config), env: {} };
}

function setup(options: { poolSize?: number; maxSandboxes?: number } = {}) {
  // 150 ms restores: at 10 rps a pool needs ~5, at 1 rps ~2.
  const driver = new FakeDriver({ restoreMs: 150, invokeMs: 5, destroyMs: 5 });
  let now = 1_000_000;
  const engine = new Orchestrator({
    driver,
    maxSandboxes: options.maxSandboxes ?? 16,
    poolSize: options.poolSize,
    maxWaitMs: 30_000,
    pool: { now: () => now, idleMs: 60_000, checkMs: 20, freeMemoryBytes: () => 64 * 1024 ** 3 },
  });
  let n = 0;
  const invoke = (d: Deployment) => engine.invoke(d, { method: 'GET', url: `http://localhost/fn/${d.name}`, headers: [] }, { invocationId: `${d.name}-${n++}` });
  /** `count` sequential invocations, `gapMs` apart on the fake clock and `realGapMs` apart for the fills. */
  const traffic = async (d: Deployment, count: number, gapMs: number, realGapMs = 0) => {
    const sources: string[] = [];
    for (let i = 0; i < count; i++) {
      now += gapMs;
      if (realGapMs > 0) await new Promise((r) => setTimeout(r, realGapMs));
      const r = await invoke(d);
      assert.ok(r.outcome.ok, JSON.stringify(r.outcome));
      sources.push(r.timings.source);
    }
    return sources;
  };
  const pooled = (name: string) => engine.stats().pooled[name] ?? 0;
  const target = (name: string) => engine.stats().poolTargets?.[name] ?? -1;
  return { driver, engine, invoke, traffic, pooled, target, advance: (ms: number) => (now += ms) };
}

/** Polls until `check` holds; the fills are real restores on a shared machine, so the deadline is generous. */
async function until(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('orchestrator: a warm pool that follows the traffic (fake driver)', () => {
  test('pool size follows a rate step up and down, and goes to minWarm when idle', async () => {
    const { driver, engine, traffic, pooled, target, advance } = setup();
    const fn = deployment('f');
    await engine.activate(fn);
    try {
      assert.equal(target('f'), 1, 'a deploy is followed by a request: one sandbox for it');
      await until('the deploy\'s sandbox', () => pooled('f') === 1);

      // Step up: 10 rps for 4 s.
      const up = await traffic(fn, 40, 100, 100);
      assert.equal(up[0], 'pool', 'the first request after the deploy');
      const high = target('f');
      assert.ok(high >= 5 && high <= 9, `10 rps × ~0.15 s restores: target ${high}`);
      await until(`the pool to fill to ${high}`, () => pooled('f') >= target('f'));
      assert.ok(pooled('f') >= 5, `filled to ${pooled('f')}`);
      const upHits = up.slice(-20).filter((s) => s === 'pool').length;
      assert.ok(upHits >= 12, `the end of the step was served from the pool: ${up.slice(-20).join(',')}`);

      // Step down: 1 rps for 40 s. Taken sandboxes are replaced only up to the lower target.
      const down = await traffic(fn, 40, 1000, 200);
      const low = target('f');
      assert.ok(low >= 2 && low <= 3, `1 rps: target ${low}`);
      await until(`the pool to settle at ${low}`, () => pooled('f') === target('f'));
      assert.ok(pooled('f') < high, `shrank from ${high} to ${pooled('f')}`);
      const downHits = down.filter((s) => s === 'pool').length;
      assert.ok(downHits >= 34, `requests at the low rate were pool hits: ${down.join(',')}`);

      // Idle for a minute: minWarm (0).
      advance(59_000);
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(pooled('f'), low, 'not idle yet: kept');
      advance(1_500);
      await until('the idle pool to be trimmed to zero', () => pooled('f') === 0);
      assert.equal(target('f'), 0);
      await until('the trimmed sandboxes to be gone', () => driver.live === 0);
      const resumes = driver.resumes;
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(driver.resumes, resumes, 'scaled to zero: nothing restores until the next request');
      assert.equal((await traffic(fn, 1, 1000))[0], 'restore', 'the first request after zero restores');
    } finally {
      await engine.close();
    }
    assert.equal(driver.live, 0);
  });

  test('minWarm stays after the idle period; poolSize and keepWarm functions keep their fixed pools', async () => {
    const { driver, engine, traffic, pooled, target, advance } = setup();
    const floor = deployment('floor', { minWarm: 1 });
    const fixed = deployment('fixed', { poolSize: 2 });
    const warm = deployment('warm', { keepWarm: true });
    for (const d of [floor, fixed, warm]) await engine.activate(d);
    try {
      await until('minWarm and the fixed pool to fill', () => pooled('floor') === 1 && pooled('fixed') === 2);
      assert.equal(target('warm'), 0, 'keepWarm reuses its own sandboxes: no pool without minWarm');
      await traffic(fixed, 20, 100, 20);
      await traffic(warm, 20, 100, 20);
      await traffic(floor, 20, 100, 50);
      assert.ok(target('floor') >= 4, `traffic raised the minWarm function's target to ${target('floor')}`);
      assert.equal(target('fixed'), 2);
      assert.equal(target('warm'), 0);
      await until('the adaptive pool to fill', () => pooled('floor') >= target('floor'));
      advance(61_000);
      await until('the idle pool to be trimmed to minWarm', () => pooled('floor') === 1);
      assert.equal(target('floor'), 1);
      await until('the fixed pool to be refilled', () => pooled('fixed') === 2);
      assert.equal(target('fixed'), 2, 'a fixed pool does not shrink when idle');
    } finally {
      await engine.close();
    }
    assert.equal(driver.live, 0);
  });

  test('SNAPFN_POOL_SIZE (the poolSize option) pins every function without its own poolSize', async () => {
    const { engine, traffic, pooled, target, advance } = setup({ poolSize: 1 });
    const fn = deployment('pinned', { minWarm: 3 });
    await engine.activate(fn);
    try {
      await until('the pinned pool', () => pooled('pinned') === 1);
      await traffic(fn, 30, 100);
      assert.equal(target('pinned'), 1);
      advance(61_000);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(target('pinned'), 1);
    } finally {
      await engine.close();
    }
  });

  test('the node-wide cap bounds the target, leaving places for direct restores', async () => {
    const { engine, traffic, pooled, target } = setup({ maxSandboxes: 4 });
    const fn = deployment('busy');
    await engine.activate(fn);
    try {
      await traffic(fn, 60, 20);
      assert.equal(target('busy'), 3, 'four places, one kept back');
      await until('the pool to fill to the cap', () => pooled('busy') === 3);
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(pooled('busy'), 3);
      assert.ok(engine.freeCapacity() >= 1);
    } finally {
      await engine.close();
    }
  });
});

test('the API function view carries the node pool of the function: size and target', async () => {
  const { functionView } = await import('../src/gateway/views.ts');
  const { engine, traffic } = setup();
  const fn = deployment('shown', { minWarm: 1 });
  await engine.activate(fn);
  try {
    await traffic(fn, 10, 100, 20);
    const record = { name: 'shown', active: 1, createdAt: 'x', updatedAt: 'x' };
    const stats = engine.stats();
    const view = functionView(record as never, undefined, 'http://localhost', stats);
    assert.deepEqual(view.pool, { size: stats.pooled.shown, target: stats.poolTargets!.shown });
    assert.ok(view.pool!.target >= 2);
    assert.equal(functionView({ ...record, name: 'elsewhere' } as never, undefined, 'http://localhost', stats).pool, undefined);
  } finally {
    await engine.close();
  }
});
