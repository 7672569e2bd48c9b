// The QEMU microVM driver end to end (issue 7): real guest boots, VM state
// saved with QEMU migration, a fresh QEMU process restored per invocation.
// Runs under TCG on machines without hardware KVM, so every wait is bounded
// generously and the suite builds only four templates.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { createEngine } from '../src/orchestrator/index.ts';
import { bodyJson, deployFixture, get, tempHome, type TestEngine } from './support/engine.ts';

const README = fileURLToPath(new URL('../README.md', import.meta.url));

async function qemuAvailable(): Promise<string | undefined> {
  const has = async () => (await execa('qemu-system-x86_64', ['--version'], { reject: false, stdin: 'ignore' })).exitCode === 0;
  if (await has()) return undefined;
  const r = await execa('apt-get', ['install', '-y', '--no-install-recommends', 'qemu-system-x86', 'qemu-utils'], { reject: false, stdin: 'ignore', env: { DEBIAN_FRONTEND: 'noninteractive' } });
  if (await has()) return undefined;
  return `qemu-system-x86_64 is not installed and apt-get install failed: ${String(r.stderr).trim().split('\n').pop()}`;
}

/** QEMU processes and sandbox state directories a run under `home` left behind. */
async function qemuLeftovers(home: string): Promise<string[]> {
  const found: string[] = [];
  const ps = await execa('ps', ['-eo', 'pid=,args='], { reject: false });
  for (const line of String(ps.stdout).split('\n')) if (line.includes('qemu-system') && line.includes(home)) found.push(`process ${line.trim().slice(0, 120)}`);
  for (const entry of await fs.readdir(path.join(home, 'qemu', 'sandboxes')).catch(() => [])) found.push(`sandbox dir ${entry}`);
  const taps = await execa('ip', ['-o', 'link', 'show', 'type', 'tun'], { reject: false });
  for (const line of String(taps.stdout).split('\n')) if (line.includes('sfq')) found.push(`tap ${line.slice(0, 80)}`);
  return found;
}

const skipReason = await qemuAvailable();
if (skipReason) console.log(`# SKIP qemu e2e: ${skipReason}`);

describe('QEMU microVM driver', { skip: skipReason ?? false, timeout: 8 * 60_000 }, () => {
  let home: string;
  let engine: TestEngine;
  const timings: string[] = [];

  before(async () => {
    home = await tempHome('qemu');
    engine = await createEngine({ home, maxSandboxes: 2, poolSize: 0, driver: 'qemu' });
    const info = engine.driverInfo();
    assert.equal(info.name, 'qemu');
    assert.ok(['kvm', 'tcg'].includes(info.platform), info.platform);
    timings.push(`accel: ${info.platform}`);
  });

  after(async () => {
    await engine?.close();
    const left = home ? await qemuLeftovers(home) : [];
    if (timings.length) console.log(`# qemu timings:\n# ${timings.join('\n# ')}`);
    if (home) await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, [], 'QEMU processes, overlays or taps left behind');
  });

  test('hello returns through a restored microVM', { timeout: 4 * 60_000 }, async () => {
    const t0 = performance.now();
    const hello = await deployFixture(engine, 'hello', 'hello.mjs');
    timings.push(`first template build incl. guest image: ${Math.round(performance.now() - t0)} ms`);
    for (let i = 0; i < 2; i++) {
      const t1 = performance.now();
      const { outcome, timings: t } = await engine.invoke(hello, get('http://localhost/fn/hello?name=snap'), { invocationId: `hello-${i}` });
      assert.deepEqual(bodyJson(outcome), { hello: 'snap', method: 'GET' });
      assert.equal(t.source, 'restore');
      timings.push(`invoke ${i}: total ${Math.round(performance.now() - t1)} ms, restore ${Math.round(t.restoreMs)} ms, handler ${Math.round(t.handlerMs)} ms`);
    }
  });

  test('every invocation sees fresh state (globals and files), env vars arrive, output is captured', { timeout: 3 * 60_000 }, async () => {
    const fn = await deployFixture(engine, 'stateful', 'stateful.mjs', {}, { GREETING: 'hi there' });
    for (let i = 0; i < 2; i++) {
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

  test('keepWarm pauses the VM (QMP stop) and state accumulates', { timeout: 2 * 60_000 }, async () => {
    const fn = await deployFixture(engine, 'warm', 'stateful.mjs', { keepWarm: true });
    const seen = [];
    for (let i = 0; i < 3; i++) {
      const t1 = performance.now();
      const { outcome, timings: t } = await engine.invoke(fn, get('http://localhost/fn/warm'), { invocationId: `warm-${i}` });
      seen.push([bodyJson(outcome).count, t.source]);
      if (t.source === 'keep-warm') timings.push(`keep-warm invoke: total ${Math.round(performance.now() - t1)} ms, handler ${Math.round(t.handlerMs)} ms`);
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.deepEqual(seen, [
      [1, 'restore'],
      [2, 'keep-warm'],
      [3, 'keep-warm'],
    ]);
    await engine.deactivate('warm');
  });

  test('a handler cannot read host files nor reach host services (no guest network by default)', { timeout: 3 * 60_000 }, async () => {
    const server = net.createServer((s) => {
      s.on('error', () => {});
      s.end('hi');
    });
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const fn = await deployFixture(engine, 'probe', 'probe.mjs');
      const seen = bodyJson((await engine.invoke(fn, get(`http://localhost/fn/probe?file=${encodeURIComponent(README)}&port=${port}`), { invocationId: 'probe-1' })).outcome);
      assert.equal(seen.file, 'ENOENT', 'the project README is not visible inside the guest');
      assert.equal(seen.guestIp, null, "network 'none': the guest has no NIC");
      assert.notEqual(seen.loopback, 'connected', 'host loopback reachable');
      const own = bodyJson((await engine.invoke(fn, get(`http://localhost/fn/probe?file=/etc/passwd&port=${port}`), { invocationId: 'probe-2' })).outcome);
      assert.match(own.file, /^root:/, 'the guest sees its own root filesystem');
    } finally {
      server.close();
    }
  });

  test('a handler over its timeout is killed with a timeout error, and the next invocation works', { timeout: 3 * 60_000 }, async () => {
    const fn = await deployFixture(engine, 'misbehave', 'misbehave.mjs');
    assert.equal(fn.config.timeoutMs, 1500, 'config export is read from the handler');
    for (const what of ['spin', 'hang']) {
      const started = performance.now();
      const { outcome } = await engine.invoke(fn, get(`http://localhost/fn/misbehave?do=${what}`), { invocationId: `timeout-${what}` });
      assert.equal(outcome.ok, false);
      assert.equal(!outcome.ok && outcome.error.code, 'timeout', what);
      assert.ok(performance.now() - started < 15_000, `${what} took too long to be cut off`);
      const { outcome: next } = await engine.invoke(fn, get('http://localhost/fn/misbehave'), { invocationId: `after-${what}` });
      assert.deepEqual(bodyJson(next), { ok: true });
    }
  });
});
