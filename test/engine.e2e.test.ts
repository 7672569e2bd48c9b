// End to end through real runsc sandboxes, real network namespaces and real
// checkpoint/restore: the core engine (issue 2).
import { singleModuleSource } from '../src/sandbox/template/function-source.ts';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import { once } from 'node:events';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createEngine } from '../src/orchestrator/index.ts';
import { bodyJson, deployFixture, FIXTURES, get, tempHome, type TestEngine } from './support/engine.ts';
import { leftovers } from './support/leaks.ts';

const README = fileURLToPath(new URL('../README.md', import.meta.url));

describe('core engine (gVisor)', () => {
  let home: string;
  let engine: TestEngine;

  before(async () => {
    home = await tempHome('engine');
    engine = await createEngine({ home, maxSandboxes: 4, poolSize: 0 });
  });

  after(async () => {
    await engine?.close();
    const left = await leftovers(home);
    await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, [], 'sandboxes, namespaces, veths or mounts left behind');
  });

  test('hello returns through a restored sandbox', async () => {
    const hello = await deployFixture(engine, 'hello', 'hello.mjs');
    const { outcome, timings } = await engine.invoke(hello, get('http://localhost/fn/hello?name=snap'), { invocationId: 'inv-hello' });
    assert.deepEqual(bodyJson(outcome), { hello: 'snap', method: 'GET' });
    assert.equal(timings.source, 'restore');
  });

  test('every invocation sees fresh state (globals and files), env vars arrive, output is captured', async () => {
    const fn = await deployFixture(engine, 'stateful', 'stateful.mjs', {}, { GREETING: 'hi there' });
    for (let i = 0; i < 3; i++) {
      const { outcome } = await engine.invoke(fn, get('http://localhost/fn/stateful'), { invocationId: `fresh-${i}` });
      assert.deepEqual(bodyJson(outcome), { count: 1, previous: null, greeting: 'hi there' });
      assert.deepEqual(
        outcome.logs.map((l) => [l.stream, l.text]),
        [
          ['stdout', 'count=1\n'],
          ['stderr', 'to stderr\n'],
        ],
      );
    }
  });

  test('sandboxes restored from one template draw different random numbers', async () => {
    const fn = await deployFixture(engine, 'random', 'random.mjs');
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push(bodyJson((await engine.invoke(fn, get('http://localhost/fn/random'), { invocationId: `random-${i}` })).outcome));
    // Values computed at import time are part of the template, by design.
    assert.equal(new Set(runs.map((r) => r.atImport)).size, 1);
    for (const key of ['math', 'uuid', 'bytes', 'web', 'values', 'int']) {
      assert.equal(new Set(runs.map((r) => JSON.stringify(r[key]))).size, 3, `${key} repeated across restores: ${JSON.stringify(runs.map((r) => r[key]))}`);
    }
    assert.match(runs[0].uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  test('keepWarm re-pauses the sandbox and state accumulates', async () => {
    const fn = await deployFixture(engine, 'warm', 'stateful.mjs', { keepWarm: true });
    const seen = [];
    for (let i = 0; i < 3; i++) {
      const { outcome, timings } = await engine.invoke(fn, get('http://localhost/fn/warm'), { invocationId: `warm-${i}` });
      seen.push([bodyJson(outcome).count, timings.source]);
      // The pause happens after the response: give it a moment to land.
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.deepEqual(seen, [
      [1, 'restore'],
      [2, 'keep-warm'],
      [3, 'keep-warm'],
    ]);
    await engine.deactivate('warm');
  });

  test('a handler cannot read host files nor reach host services or other sandboxes', async () => {
    // Stands in for the gateway and Redis: a host service on all addresses.
    const server = net.createServer((s) => {
      s.on('error', () => {});
      s.end('hi');
    });
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      // A network slot only comes with 'egress'; its isolation is the part to prove.
      const fn = await deployFixture(engine, 'probe', 'probe.mjs', { network: 'egress' });
      const first = bodyJson((await engine.invoke(fn, get(`http://localhost/fn/probe?file=${encodeURIComponent(README)}&port=${port}`), { invocationId: 'probe-1' })).outcome);
      assert.equal(first.file, 'ENOENT', 'the project README is not visible inside the sandbox');
      assert.match(first.guestIp, /^10\.201\./);
      assert.notEqual(first.hostSide, 'connected', 'host service reachable through the slot');
      assert.notEqual(first.loopback, 'connected', 'host loopback reachable');
      // The control: from the host the same service answers on the same address.
      const hostSide = first.guestIp.replace(/\d+$/, (n: string) => String(Number(n) - 1));
      const control = net.connect({ host: hostSide, port });
      control.on('error', () => {});
      await once(control, 'connect');
      control.destroy();
      // Another sandbox's address (a pooled one of a different slot) is dropped too.
      const pooled = await deployFixture(engine, 'probe-pooled', 'probe.mjs', { keepWarm: true, network: 'egress' });
      const other = bodyJson((await engine.invoke(pooled, get(`http://localhost/fn/probe?file=/etc/passwd&port=${port}&other=${first.guestIp}`), { invocationId: 'probe-2' })).outcome);
      assert.notEqual(other.other, 'connected');
      assert.match(other.file, /^root:/, 'the sandbox sees its own root filesystem');
      await engine.deactivate('probe-pooled');
      // Without network (the default) there is no interface at all, only loopback.
      const none = await deployFixture(engine, 'probe-none', 'probe.mjs');
      const isolated = bodyJson((await engine.invoke(none, get(`http://localhost/fn/probe?file=/etc/passwd&port=${port}&other=${hostSide}`), { invocationId: 'probe-3' })).outcome);
      assert.equal(isolated.guestIp, null, 'no eth0 without network');
      assert.notEqual(isolated.loopback, 'connected', 'host loopback reachable');
      assert.notEqual(isolated.other, 'connected', 'the host reachable from a sandbox without network');
      assert.match(isolated.file, /^root:/);
    } finally {
      server.close();
    }
  });

  test('a handler over its timeout is killed with a timeout error, and the next invocation works', async () => {
    const fn = await deployFixture(engine, 'misbehave', 'misbehave.mjs');
    assert.equal(fn.config.timeoutMs, 1500, 'config export is read from the handler');
    for (const what of ['spin', 'hang']) {
      const { outcome, timings } = await engine.invoke(fn, get(`http://localhost/fn/misbehave?do=${what}`), { invocationId: `timeout-${what}` });
      assert.equal(outcome.ok, false);
      assert.equal(!outcome.ok && outcome.error.code, 'timeout', what);
      // The handler phase alone (not the restore before it, which a loaded
      // machine stretches): the kill must come at timeoutMs + 1 s of grace.
      assert.ok(timings.handlerMs < 1500 + 1000 + 2000, `${what} ran ${Math.round(timings.handlerMs)} ms before it was cut off`);
      const { outcome: next } = await engine.invoke(fn, get('http://localhost/fn/misbehave'), { invocationId: `after-${what}` });
      assert.deepEqual(bodyJson(next), { ok: true });
    }
  });

  test('a handler that calls process.exit fails that invocation at once, not at its timeout', async () => {
    const fn = await deployFixture(engine, 'quitter', 'misbehave.mjs', { timeoutMs: 20_000 });
    const { outcome, timings } = await engine.invoke(fn, get('http://localhost/fn/quitter?do=exit'), { invocationId: 'exit-1' });
    assert.equal(!outcome.ok && outcome.error.code, 'sandbox_crashed');
    assert.ok(timings.handlerMs < 10_000, `the host waited ${Math.round(timings.handlerMs)} ms for a sandbox whose envd had exited`);
    const { outcome: next } = await engine.invoke(fn, get('http://localhost/fn/quitter'), { invocationId: 'exit-2' });
    assert.deepEqual(bodyJson(next), { ok: true });
  });

  test('a handler that throws gives a structured error; the sandbox survives', async () => {
    const fn = await deployFixture(engine, 'thrower', 'misbehave.mjs', { keepWarm: true });
    const { outcome } = await engine.invoke(fn, get('http://localhost/fn/thrower?do=throw'), { invocationId: 'throw-1' });
    assert.equal(outcome.ok, false);
    if (outcome.ok) return;
    assert.equal(outcome.error.code, 'handler_error');
    assert.equal(outcome.error.message, 'handler exploded');
    assert.equal(outcome.error.name, 'TypeError');
    assert.match(outcome.error.stack ?? '', /handler exploded/);
    await new Promise((r) => setTimeout(r, 300));
    const { outcome: next, timings } = await engine.invoke(fn, get('http://localhost/fn/thrower'), { invocationId: 'throw-2' });
    assert.deepEqual(bodyJson(next), { ok: true });
    assert.equal(timings.source, 'keep-warm', 'a handler error does not cost the sandbox');
    await engine.deactivate('thrower');
  });

  test('a sandbox over its memory limit fails that one invocation only', async () => {
    const fn = await deployFixture(engine, 'oom', 'misbehave.mjs', { timeoutMs: 20_000 });
    const { outcome } = await engine.invoke(fn, get('http://localhost/fn/oom?do=oom'), { invocationId: 'oom-1' });
    assert.equal(outcome.ok, false);
    // Its cgroup counted the OOM kill, so it says so (issue 20; test/faults-limits.e2e.test.ts tells it from other deaths).
    assert.ok(!outcome.ok && outcome.error.code === 'out_of_memory', JSON.stringify(!outcome.ok && outcome.error));
    const { outcome: next } = await engine.invoke(fn, get('http://localhost/fn/oom'), { invocationId: 'oom-2' });
    assert.deepEqual(bodyJson(next), { ok: true });
  });

  test('templates are content-addressed: unchanged bundle reuses, changed bundle rebuilds', async () => {
    const dir = path.join(home, 'bundles');
    await fs.mkdir(dir, { recursive: true });
    const file = path.join(dir, 'v.mjs');
    await fs.writeFile(file, 'export default () => ({ v: 1 });\n');
    const a = await engine.buildTemplate({ functionName: 'v', ...(await singleModuleSource(file)), network: 'none' });
    const again = await engine.buildTemplate({ functionName: 'v', ...(await singleModuleSource(file)), network: 'none' });
    assert.equal(again.id, a.id);
    assert.equal(again.buildMs, a.buildMs, 'an unchanged bundle was rebuilt');
    await fs.writeFile(file, 'export default () => ({ v: 2 });\n');
    const b = await engine.buildTemplate({ functionName: 'v', ...(await singleModuleSource(file)), network: 'none' });
    assert.notEqual(b.id, a.id);
    const { outcome } = await engine.invoke({ name: 'v', version: 2, templateId: b.id, config: (await import('../src/schemas/function-config.ts')).FunctionConfig.parse({}), env: {} }, get('http://localhost/fn/v'), { invocationId: 'v2' });
    assert.deepEqual(bodyJson(outcome), { v: 2 });
  });

  test('a bundle without a default export function fails its build with a clear error', async () => {
    await assert.rejects(engine.buildTemplate({ functionName: 'bad', ...(await singleModuleSource(path.join(FIXTURES, 'no-default.mjs'))), network: 'none' }), /invalid_handler: the module exports no handler \(its default export is missing\)/);
  });
});

describe('warm pool', () => {
  test('a request takes a pre-restored sandbox and the pool refills', async () => {
    const home = await tempHome('pool');
    const engine = await createEngine({ home, maxSandboxes: 3, poolSize: 1 });
    try {
      const fn = await deployFixture(engine, 'hello', 'hello.mjs');
      const waitForPool = async () => {
        for (let i = 0; i < 100 && (engine.stats().pooled.hello ?? 0) < 1; i++) await new Promise((r) => setTimeout(r, 100));
        assert.equal(engine.stats().pooled.hello, 1, 'pool never filled');
      };
      await waitForPool();
      const { outcome, timings } = await engine.invoke(fn, get('http://localhost/fn/hello'), { invocationId: 'pool-1' });
      assert.equal(bodyJson(outcome).hello, 'world');
      assert.equal(timings.source, 'pool');
      await waitForPool();
      assert.equal(engine.stats().poolHits, 1);
    } finally {
      await engine.close();
      const left = await leftovers(home);
      await fs.rm(home, { recursive: true, force: true });
      assert.deepEqual(left, []);
    }
  });
});
