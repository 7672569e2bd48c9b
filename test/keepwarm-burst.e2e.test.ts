// A burst against a keepWarm function through the real gVisor engine: with
// a cap of 2 sandboxes, 20 concurrent invocations must be served by handing
// the two restored sandboxes from one invocation to the next, not by a
// `runsc restore` each (which is what the burst used to turn into).
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { createEngine } from '../src/orchestrator/index.ts';
import { bodyJson, deployFixture, get, tempHome, type TestEngine } from './support/engine.ts';
import { leftovers } from './support/leaks.ts';

const BURST = 20;
const CAP = 2;

describe('keepWarm burst (gVisor)', () => {
  let home: string;
  let engine: TestEngine;

  before(async () => {
    home = await tempHome('keepwarm-burst');
    engine = await createEngine({ home, maxSandboxes: CAP, poolSize: 0, maxWaitMs: 120_000 });
  });

  after(async () => {
    await engine?.close();
    const left = await leftovers(home);
    await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, [], 'sandboxes, namespaces, veths or mounts left behind');
  });

  test(`${BURST} concurrent invocations on ${CAP} sandboxes: ${CAP} restores, the rest handed on`, { timeout: 5 * 60_000 }, async () => {
    const fn = await deployFixture(engine, 'warm-burst', 'stateful.mjs', { keepWarm: true, timeoutMs: 30_000 });
    const before = engine.stats();
    let maxLive = 0;
    const sampler = setInterval(() => (maxLive = Math.max(maxLive, engine.driver.liveSandboxes())), 5);
    let results;
    try {
      results = await Promise.all(Array.from({ length: BURST }, (_, i) => engine.invoke(fn, get('http://localhost/fn/warm-burst'), { invocationId: `burst-${i}` })));
    } finally {
      clearInterval(sampler);
    }
    const counts = results.map((r) => bodyJson(r.outcome).count as number);
    const sources = results.map((r) => r.timings.source);
    const stats = engine.stats();
    const restores = stats.restores - before.restores;
    assert.equal(sources.filter((s) => s === 'restore').length, CAP, `sources: ${sources.join(',')}`);
    assert.equal(restores, CAP, `${restores} restores for ${BURST} invocations`);
    assert.equal(stats.handoffs - before.handoffs, BURST - CAP, 'every other invocation got a sandbox handed on');
    // Each sandbox counts its own invocations (state accumulates under keepWarm): together they ran all of them.
    const perSandbox = counts.filter((c) => c === 1).length;
    assert.equal(perSandbox, CAP);
    assert.equal(Math.max(...counts) >= BURST / CAP, true, `counts: ${counts.join(',')}`);
    assert.ok(maxLive <= CAP, `live sandboxes peaked at ${maxLive}`);
    await engine.deactivate('warm-burst');
  });
});
