// Instance concurrency (config.concurrency) through the real engine and real
// gVisor sandboxes: one sandbox serves several invocations at once, each
// with its own logs and environment; one more waits for a slot or goes to
// another sandbox; a sandbox that crashes fails only its own invocations.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { bodyJson, deployFixture, get, tempHome, type TestEngine } from './support/engine.ts';

describe('instance concurrency (gVisor)', { timeout: 5 * 60_000 }, () => {
  let home: string;
  let engine: TestEngine;

  before(async () => {
    home = await tempHome('concurrency');
    const { createEngine } = await import('../src/orchestrator/index.ts');
    engine = await createEngine({ home, maxSandboxes: 3, poolSize: 0 });
  });

  /** Until `n` invocations are inside sandboxes (restores done), however slow the machine is. */
  const runningAtOnce = async (n: number) => {
    const deadline = Date.now() + 60_000;
    while (engine.stats().busySandboxes < n) {
      if (Date.now() > deadline) throw new Error(`${n} invocations never ran at once`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  after(async () => {
    await engine?.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  test('concurrency 8: eight slow invocations run at once in one sandbox with their own logs and env; a ninth goes to another', async () => {
    const fn = await deployFixture(engine, 'conc', 'concurrent.mjs', { concurrency: 8, keepWarm: true, timeoutMs: 20_000 });
    // One first, so the other eight find a sandbox already serving (its restore may take seconds on a loaded machine).
    const first = engine.invoke(fn, get('http://localhost/fn/conc?id=0&ms=4000'), { invocationId: 'c0' });
    await runningAtOnce(1);
    const started = Date.now();
    const rest = Array.from({ length: 8 }, (_, i) => engine.invoke(fn, get(`http://localhost/fn/conc?id=${i + 1}&ms=1500`), { invocationId: `c${i + 1}` }));
    const results = await Promise.all([first, ...rest]);
    const bodies = results.map((r) => bodyJson(r.outcome) as { id: string; mine: string; sandbox: string; peak: number });
    for (const b of bodies) assert.equal(b.mine, b.id, 'each invocation sees its own process.env');
    results.forEach((r, i) => {
      const texts = r.outcome.logs.map((l) => l.text.trim());
      assert.deepEqual(texts, [`start ${i}`, `end ${i}`], `invocation ${i} got only its own output`);
    });
    const bySandbox = new Map<string, number>();
    for (const b of bodies) bySandbox.set(b.sandbox, (bySandbox.get(b.sandbox) ?? 0) + 1);
    const counts = [...bySandbox.values()].sort((a, b) => b - a);
    assert.equal(counts[0], 8, `eight shared one sandbox: ${JSON.stringify(counts)}`);
    assert.equal(counts.length, 2, 'the ninth went to a second sandbox');
    assert.ok(Math.max(...bodies.map((b) => b.peak)) >= 8, 'eight ran at the same time');
    assert.ok(Date.now() - started < 1500 * 5, `the eight took ${Date.now() - started} ms: serialized`);
    await engine.deactivate('conc');
  });

  test('a crash fails only the invocations of that sandbox', async () => {
    const fn = await deployFixture(engine, 'crashy', 'concurrent.mjs', { concurrency: 2, timeoutMs: 20_000 });
    // Two sandboxes: a and b each take two invocations; one of b's crashes it.
    const a1 = engine.invoke(fn, get('http://localhost/fn/crashy?id=a1&ms=8000'), { invocationId: 'a1' });
    await runningAtOnce(1);
    const a2 = engine.invoke(fn, get('http://localhost/fn/crashy?id=a2&ms=7000'), { invocationId: 'a2' });
    await runningAtOnce(2);
    const b1 = engine.invoke(fn, get('http://localhost/fn/crashy?id=b1&ms=6000'), { invocationId: 'b1' });
    await runningAtOnce(3);
    const b2 = engine.invoke(fn, get('http://localhost/fn/crashy?id=b2&crash=1'), { invocationId: 'b2' });
    const [ra1, ra2, rb1, rb2] = await Promise.all([a1, a2, b1, b2]);
    assert.equal(bodyJson(ra1.outcome).id, 'a1');
    assert.equal(bodyJson(ra2.outcome).id, 'a2');
    assert.equal(bodyJson(ra1.outcome).sandbox, bodyJson(ra2.outcome).sandbox);
    assert.ok(!rb1.outcome.ok && rb1.outcome.error.code === 'sandbox_crashed', JSON.stringify(rb1.outcome));
    assert.ok(!rb2.outcome.ok && rb2.outcome.error.code === 'sandbox_crashed', JSON.stringify(rb2.outcome));
    await engine.deactivate('crashy');
  });
});
