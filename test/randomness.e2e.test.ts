// Snapshot uniqueness (issue 18): sandboxes restored from one template must
// not share any random state. Five restores each from a function template
// and from the javascript eval template; every value of
// test/fixtures/entropy.mjs (Math.random, crypto.randomBytes/UUID/
// getRandomValues, an X25519 pair, a crypto.subtle ECDH key, a TLS client
// random on the sandbox's loopback, ...) must differ between all of them.
// The QEMU and Firecracker microVM drivers run the same check where they run.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { EvalService } from '../src/eval/index.ts';
import { createEngine } from '../src/orchestrator/index.ts';
import { detectFirecracker } from '../src/sandbox/firecracker/host-support.ts';
import { bodyJson, deployFixture, FIXTURES, get, tempHome, type TestEngine } from './support/engine.ts';
import { leftovers } from './support/leaks.ts';

const SANDBOXES = 5;
type Sample = Record<string, unknown> & { atImport?: Record<string, unknown> };

/** Every key of every sample differs from that key in all the others. */
function assertAllDistinct(samples: Sample[], label: string): void {
  assert.equal(samples.length, SANDBOXES);
  const keys = Object.keys(samples[0]!).filter((k) => k !== 'atImport');
  assert.ok(keys.length >= 14, `${label}: only ${keys.join(', ')}`);
  const repeated: string[] = [];
  for (const key of keys) {
    const values = samples.map((s) => JSON.stringify(s[key]));
    assert.ok(values.every((v) => v !== undefined && v !== 'null'), `${label}: ${key} missing in ${JSON.stringify(values)}`);
    if (new Set(values).size !== SANDBOXES) repeated.push(`${key}: ${values.map((v) => v.slice(-18)).join(' ')}`);
  }
  assert.deepEqual(repeated, [], `${label}: values repeat across sandboxes restored from one template`);
}

async function functionSamples(engine: TestEngine, name: string): Promise<Sample[]> {
  const fn = await deployFixture(engine, name, 'entropy.mjs');
  const samples: Sample[] = [];
  for (let i = 0; i < SANDBOXES; i++) {
    const { outcome, timings } = await engine.invoke(fn, get(`http://localhost/fn/${name}`), { invocationId: `${name}-${i}` });
    assert.equal(timings.source, 'restore');
    samples.push(bodyJson(outcome));
  }
  // One template: what the module computed before the checkpoint is the same everywhere.
  assert.equal(new Set(samples.map((s) => JSON.stringify(s.atImport))).size, 1, 'the samples do not come from one snapshot');
  return samples;
}

describe('randomness after restore (gVisor)', () => {
  let home: string;
  let engine: TestEngine;

  before(async () => {
    home = await tempHome('randomness');
    engine = await createEngine({ home, maxSandboxes: 3, poolSize: 0, maxWaitMs: 300_000 });
  });

  after(async () => {
    await engine?.close();
    const left = await leftovers(home);
    await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, [], 'sandboxes, namespaces, veths or mounts left behind');
  });

  test('a function template: every random source differs in each of five restored sandboxes', async () => {
    assertAllDistinct(await functionSamples(engine, 'entropy'), 'function');
  });

  describe('javascript eval', () => {
    let service: EvalService;
    before(async () => {
      service = await EvalService.create({ engine, workDir: path.join(home, 'eval'), languages: ['javascript'], poolSize: 1 });
    });
    after(async () => {
      await service?.close();
    });

    test('the javascript eval template: the same, through the pre-started runner', async () => {
      const { collect } = (await import(path.join(FIXTURES, 'entropy.mjs'))) as { collect: () => Promise<unknown> };
      const code = `${collect.toString()}\nawait collect()`;
      const samples: Sample[] = [];
      for (let i = 0; i < SANDBOXES; i++) {
        const result = await service.evaluate({ language: 'javascript', code, timeoutMs: 20_000 });
        assert.equal(result.error, undefined, `${JSON.stringify(result.error)} ${result.stderr}`);
        samples.push(result.result as Sample);
      }
      assertAllDistinct(samples, 'eval');
    });

    // The runner starts (before the checkpoint) at the smallest heap limit and raises it to the request's.
    test("the pre-started runner keeps each request's own heap limit", async () => {
      const hold = (mib: number) => `const a = []; for (let i = 0; i < ${mib}; i++) a.push(new Array(131072).fill(i + 0.5)); a.length`;
      const cases: Array<[memoryMb: number, holdMib: number, error: string | undefined]> = [
        [128, 96, undefined],
        [128, 200, 'memory_limit'],
        [512, 320, undefined],
      ];
      for (const [memoryMb, holdMib, error] of cases) {
        const result = await service.evaluate({ language: 'javascript', code: hold(holdMib), memoryMb, timeoutMs: 30_000 });
        assert.equal(result.error?.code, error, `${holdMib} MiB held at memoryMb ${memoryMb}: ${JSON.stringify(result.error)} ${result.stderr.slice(-300)}`);
        if (!error) assert.equal(result.result, holdMib);
      }
    });
  });
});

async function qemuMissing(): Promise<string | undefined> {
  const r = await execa('qemu-system-x86_64', ['--version'], { reject: false, stdin: 'ignore' });
  return r.exitCode === 0 ? undefined : 'qemu-system-x86_64 is not installed (test/qemu.e2e.test.ts installs it)';
}

const firecracker = detectFirecracker();
const vmDrivers = [
  { driver: 'qemu' as const, label: 'QEMU microVM', skip: await qemuMissing() },
  { driver: 'firecracker' as const, label: 'Firecracker microVM', skip: firecracker.ok ? undefined : firecracker.reason },
];

for (const { driver, label, skip } of vmDrivers) {
  if (skip) console.log(`# SKIP ${driver} randomness: ${skip}`);
  describe(`randomness after restore (${label})`, { skip: skip ?? false, timeout: 10 * 60_000 }, () => {
    let home: string;
    let engine: TestEngine;

    before(async () => {
      home = await tempHome(`randomness-${driver}`);
      engine = await createEngine({ home, maxSandboxes: 2, poolSize: 0, driver });
    });

    after(async () => {
      await engine?.close();
      const left = await leftovers(home);
      await fs.rm(home, { recursive: true, force: true });
      assert.deepEqual(left, [], 'sandboxes, namespaces, veths or mounts left behind');
    });

    // The guest kernel's CRNG is in the VM snapshot too (reseed.node rekeys it).
    test('a function template: every random source differs in each of five restored VMs', { timeout: 9 * 60_000 }, async () => {
      assertAllDistinct(await functionSamples(engine, `entropy-${driver}`), `${driver} function`);
    });
  });
}
