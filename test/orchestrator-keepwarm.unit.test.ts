// The orchestrator's reuse policy against a fake sandbox driver: a finished
// keepWarm sandbox goes straight to the next waiter of its function, the
// node-wide cap holds while it does, other functions still get places, and
// a sandbox that crashed or timed out is never handed on.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SandboxCapacity } from '../src/orchestrator/capacity.ts';
import { Orchestrator } from '../src/orchestrator/orchestrator.ts';
import type { Deployment, InvokeResult } from '../src/orchestrator/types.ts';
import { FunctionConfig, type FunctionConfigInput } from '../src/schemas/function-config.ts';
import { FakeDriver, type FakeDriverOptions } from './support/fake-driver.ts';

function deployment(name: string, config: FunctionConfigInput = {}): Deployment {
  return { name, version: 1, templateId: `tpl-${name}`, config: FunctionConfig.parse({ poolSize: 0, ...config }), env: {} };
}

// pauseAfterMs 0 by default: these policies are about what happens once a sandbox is paused.
function setup(maxSandboxes: number, driverOptions: FakeDriverOptions = {}, idleTrimMs = 2000, pauseAfterMs = 0) {
  const driver = new FakeDriver(driverOptions);
  const engine = new Orchestrator({ driver, maxSandboxes, poolSize: 0, maxWaitMs: 10_000, idleTrimMs, pauseAfterMs });
  let n = 0;
  const invoke = (d: Deployment, query = '') => engine.invoke(d, { method: 'GET', url: `http://localhost/fn/${d.name}${query}`, headers: [] }, { invocationId: `${d.name}-${n++}` });
  return { driver, engine, invoke };
}

function body(result: InvokeResult): { sandbox: string; n: number } {
  assert.ok(result.outcome.ok, JSON.stringify(result.outcome));
  return JSON.parse(Buffer.from(result.outcome.response.bodyBase64, 'base64').toString('utf8'));
}

const settle = () => new Promise((r) => setTimeout(r, 100));

describe('orchestrator: keepWarm reuse under load (fake driver)', () => {
  test('a burst of one keepWarm function is served by handing sandboxes on, not by restoring', async () => {
    const { driver, engine, invoke } = setup(2);
    const fn = deployment('warm', { keepWarm: true });
    await engine.activate(fn);
    try {
      const results = await Promise.all(Array.from({ length: 20 }, () => invoke(fn)));
      const sandboxes = new Set(results.map((r) => body(r).sandbox));
      const sources = results.map((r) => r.timings.source);
      assert.equal(sources.filter((s) => s === 'restore').length, 2, `sources: ${sources.join(',')}`);
      assert.equal(sources.filter((s) => s === 'keep-warm').length, 18);
      assert.equal(sandboxes.size, 2, 'two sandboxes served all twenty');
      const stats = engine.stats();
      assert.equal(stats.restores, 2);
      assert.equal(stats.handoffs, 18);
      assert.equal(driver.resumes, 2);
      // Handed on while running: no pause/unpause between the invocations of the burst.
      assert.equal(driver.unpauses, 0);
      assert.ok(driver.maxLive <= 2, `live sandboxes peaked at ${driver.maxLive}`);
      // With nobody left waiting they are paused and kept.
      await settle();
      assert.equal(driver.pauses, 2);
      assert.equal(driver.live, 2);
      assert.equal((await invoke(fn)).timings.source, 'keep-warm');
    } finally {
      await engine.close();
    }
    assert.equal(driver.live, 0);
  });

  test('back-to-back invocations never pay a freezer round trip; an idle sandbox is frozen after pauseAfterMs', async () => {
    const { driver, engine, invoke } = setup(2, {}, 2000, 300);
    const fn = deployment('steady', { keepWarm: true });
    await engine.activate(fn);
    try {
      const sources: string[] = [];
      for (let i = 0; i < 10; i++) {
        sources.push((await invoke(fn)).timings.source);
        await new Promise((r) => setImmediate(r));
      }
      assert.deepEqual(sources, ['restore', ...Array(9).fill('keep-warm')]);
      assert.equal(driver.pauses, 0);
      assert.equal(driver.unpauses, 0);
      await new Promise((r) => setTimeout(r, 450));
      assert.equal(driver.pauses, 1, 'idle for pauseAfterMs: frozen');
      assert.equal((await invoke(fn)).timings.source, 'keep-warm');
      assert.equal(driver.unpauses, 1);
      assert.equal(driver.resumes, 1);
    } finally {
      await engine.close();
    }
    assert.equal(driver.live, 0);
  });

  test('the node-wide cap holds with several functions, keepWarm and not, competing', async () => {
    const { driver, engine, invoke } = setup(3, { restoreMs: 15, destroyMs: 15 });
    const fns = [deployment('a', { keepWarm: true }), deployment('b', { keepWarm: true }), deployment('c')];
    for (const f of fns) await engine.activate(f);
    try {
      const calls = Array.from({ length: 60 }, (_, i) => invoke(fns[i % 3]!, `?ms=${5 + ((i * 7) % 20)}`));
      const results = await Promise.all(calls);
      for (const r of results) body(r);
      assert.ok(driver.maxLive <= 3, `live sandboxes peaked at ${driver.maxLive}`);
      assert.ok(driver.maxRunning <= 3);
      const stats = engine.stats();
      assert.ok(stats.handoffs > 0, 'keepWarm functions got handoffs');
      assert.ok(stats.restores < 60, `${stats.restores} restores for 60 invocations`);
      await settle();
      assert.ok(driver.live <= 3);
    } finally {
      await engine.close();
    }
    assert.equal(driver.live, 0);
  });

  test('another function is not starved by a keepWarm burst: it gets a place after one handler time', async () => {
    const { engine, invoke } = setup(2, { invokeMs: 20 });
    const a = deployment('a', { keepWarm: true });
    const b = deployment('b', { keepWarm: true });
    await engine.activate(a);
    await engine.activate(b);
    try {
      let aDone = 0;
      const burst = Array.from({ length: 40 }, () => invoke(a).then((r) => (aDone++, r)));
      await new Promise((r) => setTimeout(r, 5));
      const started = performance.now();
      const bResult = await invoke(b);
      const bMs = performance.now() - started;
      const aDoneWhenB = aDone;
      body(bResult);
      // 40 × 20 ms on 2 sandboxes is ~400 ms; b arrived behind all of them
      // and still ran within a few handler times.
      assert.ok(aDoneWhenB < 20, `b finished only after ${aDoneWhenB} of 40 invocations of a (${Math.round(bMs)} ms)`);
      for (const r of await Promise.all(burst)) body(r);
      const stats = engine.stats();
      assert.ok(stats.handoffs >= 30, `a kept reusing its sandbox (${stats.handoffs} handoffs)`);
    } finally {
      await engine.close();
    }
  });

  test('waiters of another function get places while no waiter of the keepWarm function is left', async () => {
    const { driver, engine, invoke } = setup(1);
    const a = deployment('a', { keepWarm: true });
    const b = deployment('b');
    await engine.activate(a);
    await engine.activate(b);
    try {
      const first = invoke(a);
      const others = [invoke(b), invoke(b)];
      body(await first);
      for (const r of await Promise.all(others)) assert.equal(r.timings.source, 'restore');
      assert.equal(driver.maxLive, 1);
    } finally {
      await engine.close();
    }
  });

  for (const [how, query] of [
    ['crashed', '?crash=1'],
    ['timed out (still looking alive)', '?timeout=1'],
  ] as const) {
    test(`a sandbox that ${how} is never handed on`, async () => {
      const { driver, engine, invoke } = setup(1);
      const fn = deployment('warm', { keepWarm: true });
      await engine.activate(fn);
      try {
        const bad = invoke(fn, query);
        const next = [invoke(fn), invoke(fn)];
        const badResult = await bad;
        assert.equal(badResult.outcome.ok, false);
        const [second, third] = await Promise.all(next);
        assert.equal(second!.timings.source, 'restore', 'the waiter behind a broken sandbox restores');
        assert.equal(third!.timings.source, 'keep-warm', 'and hands its sound sandbox on');
        assert.equal(body(second!).sandbox, body(third!).sandbox);
        assert.notEqual(body(second!).sandbox, driver.sandboxes[0]!.id);
        assert.ok(driver.destroyed.has(driver.sandboxes[0]!.id), 'the broken sandbox was destroyed');
        assert.equal(driver.maxLive, 1);
      } finally {
        await engine.close();
      }
    });
  }

  test('a handler error does not cost the sandbox: it is handed on', async () => {
    const { engine } = setup(1);
    const fn = deployment('warm', { keepWarm: true });
    await engine.activate(fn);
    try {
      const results = await Promise.all(Array.from({ length: 3 }, (_, i) => engine.invoke(fn, { method: 'GET', url: 'http://localhost/fn/warm', headers: [] }, { invocationId: `e${i}` })));
      assert.deepEqual(results.map((r) => r.timings.source), ['restore', 'keep-warm', 'keep-warm']);
    } finally {
      await engine.close();
    }
  });

  test('a burst keeps its paused sandboxes until the function is quiet, then trims to maxIdle', async () => {
    const { driver, engine, invoke } = setup(6, {}, 300);
    const fn = deployment('warm', { keepWarm: true });
    await engine.activate(fn);
    try {
      await Promise.all(Array.from({ length: 6 }, () => invoke(fn)));
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(driver.live, 6, 'all six paused and kept right after the burst');
      // A second wave within the trim delay: all reused, nothing restored.
      const wave = await Promise.all(Array.from({ length: 6 }, () => invoke(fn)));
      assert.deepEqual(wave.map((r) => r.timings.source), Array(6).fill('keep-warm'));
      // The first trim timer fires now, with nothing running: but the function was busy a moment ago.
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(driver.live, 6, 'a gap in a burst is not quiet');
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(driver.live, 2, 'trimmed back to maxIdlePerFunction once quiet');
      assert.equal(engine.freeCapacity(), 6, 'two idle, four free places');
    } finally {
      await engine.close();
    }
    assert.equal(driver.live, 0);
  });

  test('a function without keepWarm gets a fresh sandbox every time', async () => {
    const { driver, engine, invoke } = setup(2);
    const fn = deployment('fresh');
    await engine.activate(fn);
    try {
      const results = await Promise.all(Array.from({ length: 6 }, () => invoke(fn)));
      assert.deepEqual(results.map((r) => r.timings.source), Array(6).fill('restore'));
      assert.equal(new Set(results.map((r) => body(r).sandbox)).size, 6);
      assert.equal(engine.stats().handoffs, 0);
      assert.ok(driver.maxLive <= 2);
    } finally {
      await engine.close();
    }
  });
});

describe('SandboxCapacity: places, waiters, fair share', () => {
  test('a freed place goes to the oldest waiter of a function below its share, else FIFO', async () => {
    const capacity = new SandboxCapacity<string>(2);
    assert.ok(capacity.tryReserve('a'));
    assert.ok(capacity.tryReserve('a'));
    const order: string[] = [];
    const wait = (fn: string, tag: string) => capacity.reserve(fn, `tpl-${fn}`, 5000).then((g) => order.push(`${tag}:${g.kind}`));
    const waits = [wait('a', 'a1'), wait('a', 'a2'), wait('b', 'b1')];
    // a holds 2 of 2, share with two waiting functions is 1: b1 jumps a1 and a2.
    capacity.release('a');
    await Promise.resolve();
    assert.deepEqual(order, ['b1:place']);
    capacity.release('a');
    capacity.release('b');
    await Promise.all(waits);
    assert.deepEqual(order, ['b1:place', 'a1:place', 'a2:place']);
    assert.equal(capacity.heldBy('a'), 2);
    assert.equal(capacity.heldBy('b'), 0);
  });

  test('offer: handed to a waiter of the same template; evicted for a starved function, its place promised at once', async () => {
    const capacity = new SandboxCapacity<string>(2);
    capacity.tryReserve('a');
    capacity.tryReserve('a');
    assert.deepEqual(capacity.offer('a', 'tpl-a', 'sb1', false), { kind: 'keep' }, 'nobody waits');
    const a1 = capacity.reserve('a', 'tpl-a', 5000);
    assert.equal(capacity.offer('a', 'tpl-a', 'sb1', false).kind, 'handed');
    assert.deepEqual(await a1, { kind: 'sandbox', sandbox: 'sb1', paused: false });
    // Another version of `a` cannot take a sandbox of this template: it gets the place instead.
    const stale = capacity.reserve('a', 'tpl-a-v2', 5000);
    const decision = capacity.offer('a', 'tpl-a', 'sb1', true);
    assert.equal(decision.kind, 'evict');
    const b1 = capacity.reserve('b', 'tpl-b', 5000);
    const a2 = capacity.reserve('a', 'tpl-a', 5000);
    // a holds 2 > share 1 and b holds 0: b gets the next one, a2 keeps waiting.
    const second = capacity.offer('a', 'tpl-a', 'sb2', false);
    assert.equal(second.kind, 'evict');
    assert.equal(capacity.heldBy('b'), 1, 'the place counts for b before the destroy is done');
    assert.equal(capacity.waiting, 1, 'only a2 is left waiting: nothing else is destroyed for b1');
    if (decision.kind === 'evict') decision.passPlace();
    if (second.kind === 'evict') second.passPlace();
    assert.deepEqual(await stale, { kind: 'place' });
    assert.deepEqual(await b1, { kind: 'place' });
    assert.equal(capacity.used, 2, 'moving places never changes how many there are');
    capacity.rejectAll(new Error('closed'));
    await assert.rejects(a2, /closed/);
  });
});
