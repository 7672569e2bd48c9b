// The traffic-following pool's policy on a fake clock: arrival rate,
// restore-time average, the target formula and its bounds, idleness.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DecayingRate, PoolTargets, poolTarget, type PoolPolicyOptions, type TargetInputs } from '../src/orchestrator/pool-target.ts';

const GiB = 1024 ** 3;
const roomy: TargetInputs = { minWarm: 0, memoryMb: 256, maxSandboxes: 64, current: 0 };

function clocked(options: PoolPolicyOptions = {}) {
  let now = 1_000_000;
  const targets = new PoolTargets({ now: () => now, freeMemoryBytes: () => 16 * GiB, ...options });
  return {
    targets,
    advance: (ms: number) => (now += ms),
    /** `rps` evenly spaced arrivals for `seconds`. */
    traffic(rps: number, seconds: number) {
      for (let i = 0; i < rps * seconds; i++) {
        now += 1000 / rps;
        targets.noteArrival('f');
      }
    },
  };
}

describe('pool target policy', () => {
  test('the formula: ceil(rate × restore + 2·√(rate × restore)) + 1, minWarm without traffic', () => {
    assert.equal(poolTarget(1, 700, true, roomy, 16 * GiB).target, 4); // 0.7 + 1.67 -> 3, + 1
    assert.equal(poolTarget(1, 1000, true, roomy, 16 * GiB).target, 4); // 1 + 2
    assert.equal(poolTarget(10, 1000, true, roomy, 16 * GiB).target, 18); // 10 + 6.32 -> 17, + 1
    assert.equal(poolTarget(0.05, 1000, true, roomy, 16 * GiB).target, 2, 'any traffic at all keeps one more than the one it takes');
    assert.deepEqual(poolTarget(10, 1000, false, roomy, 16 * GiB), { target: 0, by: 'floor', ratePerSec: 10, restoreMs: 1000 });
    assert.equal(poolTarget(10, 1000, false, { ...roomy, minWarm: 2 }, 16 * GiB).target, 2);
    assert.equal(poolTarget(0.05, 1000, true, { ...roomy, minWarm: 3 }, 16 * GiB).by, 'floor');
  });

  test('bounds: the node keeps a quarter of its places for direct restores; memory at memoryMb each; minWarm up to maxSandboxes', () => {
    const node = poolTarget(50, 1000, true, { ...roomy, maxSandboxes: 8 }, 16 * GiB);
    assert.deepEqual([node.target, node.by], [6, 'node']);
    assert.equal(poolTarget(50, 1000, true, { ...roomy, maxSandboxes: 2 }, 16 * GiB).target, 1);
    assert.equal(poolTarget(50, 1000, true, { ...roomy, maxSandboxes: 1 }, 16 * GiB).target, 1, 'a one-place node has nothing to keep back');
    // 1 GiB free, half of it plannable, 256 MiB each: 2 more than the 3 it already has.
    const memory = poolTarget(50, 1000, true, { ...roomy, current: 3 }, 1 * GiB);
    assert.deepEqual([memory.target, memory.by], [5, 'memory']);
    assert.equal(poolTarget(50, 1000, true, { ...roomy, memoryMb: 4096 }, 1 * GiB).target, 0, 'no room at all: no adaptive pool');
    assert.equal(poolTarget(50, 1000, true, { ...roomy, memoryMb: 4096, minWarm: 2 }, 1 * GiB).target, 2, 'minWarm is promised regardless');
    assert.equal(poolTarget(0, 1000, false, { ...roomy, maxSandboxes: 4, minWarm: 10 }, 16 * GiB).target, 4);
  });

  test('the decaying rate is unbiased for steady traffic and forgets with its time constant', () => {
    const rate = new DecayingRate(10_000);
    let t = 0;
    for (let i = 0; i < 600; i++) rate.note((t += 200)); // 5 rps for 120 s
    assert.ok(Math.abs(rate.rate(t) - 5) < 0.3, `rate ${rate.rate(t)}`);
    assert.ok(Math.abs(rate.rate(t + 10_000) - 5 / Math.E) < 0.2, 'one time constant later: 1/e of it');
    assert.equal(new DecayingRate(1000).rate(123), 0);
  });

  test('a rate step up raises the target within seconds; a step down lowers it over the slow window', () => {
    const { targets, traffic } = clocked();
    targets.noteRestore('f', 1000);
    const target = () => targets.target('f', roomy);
    assert.equal(target(), 0, 'no traffic yet: minWarm');
    traffic(1, 60);
    const steady1 = target();
    assert.ok(steady1 >= 4 && steady1 <= 5, `1 rps × 1 s restores: ${steady1}`);
    traffic(10, 3);
    const afterStep = target();
    assert.ok(afterStep >= 13, `3 s into 10 rps the fast window has most of it: ${afterStep}`);
    traffic(10, 30);
    assert.ok(target() >= 17 && target() <= 19, `10 rps steady: ${target()}`);
    traffic(1, 5);
    const soonAfter = target();
    assert.ok(soonAfter < 17 && soonAfter > 5, `5 s into 1 rps the slow window still holds some: ${soonAfter}`);
    traffic(1, 60);
    assert.ok(target() >= 4 && target() <= 5, `back to 1 rps: ${target()}`);
  });

  test('idle for idleMs: back to minWarm; an arrival brings the traffic target back', () => {
    const { targets, traffic, advance } = clocked({ idleMs: 60_000 });
    traffic(5, 20);
    assert.ok(targets.target('f', { ...roomy, minWarm: 1 }) > 5);
    advance(59_000);
    assert.equal(targets.idle('f'), false);
    assert.ok(targets.target('f', roomy) >= 2, 'the decayed rate still counts until the idle period is over');
    advance(1_000);
    assert.equal(targets.idle('f'), true);
    assert.equal(targets.target('f', roomy), 0);
    assert.equal(targets.target('f', { ...roomy, minWarm: 1 }), 1);
    targets.noteArrival('f');
    assert.ok(targets.target('f', roomy) >= 2);
    targets.forget('f');
    assert.equal(targets.idle('f'), true);
  });

  test('a deploy holds one sandbox for an idle period, without counting as traffic', () => {
    const { targets, advance } = clocked({ idleMs: 60_000 });
    targets.notePresence('f');
    assert.equal(targets.target('f', roomy), 1);
    assert.equal(targets.decide('f', roomy).ratePerSec, 0);
    assert.equal(targets.target('f', { ...roomy, minWarm: 2 }), 2);
    advance(60_000);
    assert.equal(targets.target('f', roomy), 0);
  });

  test('restore time: the default until measured, then an average that moves a third of the way per restore', () => {
    const { targets, traffic } = clocked({ defaultRestoreMs: 1000, restoreWeight: 0.3 });
    traffic(4, 60);
    assert.equal(targets.decide('f', roomy).restoreMs, 1000);
    targets.noteRestore('f', 500);
    assert.equal(targets.decide('f', roomy).restoreMs, 500, 'the first measurement replaces the default');
    targets.noteRestore('f', 1500);
    assert.equal(targets.decide('f', roomy).restoreMs, 800);
    const slow = targets.target('f', roomy);
    for (let i = 0; i < 20; i++) targets.noteRestore('f', 250);
    assert.ok(targets.target('f', roomy) < slow, 'faster restores need a smaller pool');
  });

  test('functions are tracked separately', () => {
    const { targets, traffic } = clocked();
    traffic(10, 10);
    assert.ok(targets.target('f', roomy) > 5);
    assert.equal(targets.target('other', roomy), 0);
  });
});
