// Issue 20, item 3 and the crash half of item 5, with real runsc sandboxes
// behind a real gateway (its own Redis, the queue on): every numeric setting
// of FunctionConfig at its minimum and its maximum, a request body at
// SNAPFN_MAX_BODY_BYTES 100 times in a row on functions/hello (deployed by
// `fn deploy`), and a sandbox that dies told apart: out of memory (its cgroup
// counted the OOM kill), kill -9 from outside, process.exit.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { loadConfig } from '../src/config.ts';
import type { Orchestrator } from '../src/orchestrator/orchestrator.ts';
import type { SandboxDriver } from '../src/sandbox/driver.ts';
import { RUNTIME_RESERVE_MB } from '../src/sandbox/gvisor/oci-spec.ts';
import type { RunningSnapfn } from '../src/snapfn.ts';
import { FunctionConfig } from '../src/schemas/function-config.ts';
import { leftovers } from './support/leaks.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FN_BIN = path.join(ROOT, 'wrangler-free-deploy/bin/fn.js');
const LIMITS = fs.readFile(path.join(ROOT, 'test/fixtures/limits.mjs'));
const MiB = 1024 * 1024;
const MAX_BODY = 6 * MiB;
/** The schema's own bounds (zod's minValue / maxValue, under .optional() and .default()): the test follows them if they move. */
function bounds(key: keyof typeof FunctionConfig.shape): { min: number; max: number } {
  let s: any = FunctionConfig.shape[key];
  while (s && s.minValue === undefined && (s.unwrap || s.def?.innerType)) s = s.unwrap ? s.unwrap() : s.def.innerType;
  return { min: s.minValue, max: s.maxValue };
}

interface Reply {
  status: number;
  headers: Headers;
  json: any;
  ms: number;
}

describe('faults and limits: every accepted setting works, bodies at the limit, crashes told apart', { timeout: 8 * 60_000 }, () => {
  let home: string;
  let snapfn: RunningSnapfn;
  const seenSandboxes = new Set<string>();
  let watch: NodeJS.Timeout;

  const call = async (url: string, init: RequestInit = {}): Promise<Reply> => {
    const started = performance.now();
    const res = await fetch(`${snapfn.url}${url}`, { ...init, signal: AbortSignal.timeout(120_000) });
    const text = await res.text();
    let json: any;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    return { status: res.status, headers: res.headers, json, ms: performance.now() - started };
  };
  const deploy = async (name: string, config: Record<string, unknown>) => {
    const files = { 'index.mjs': (await LIMITS).toString('base64') };
    const res = await call('/v1/functions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, files, config }) });
    const last = typeof res.json === 'string' ? JSON.parse(res.json.trim().split('\n').at(-1)!) : res.json;
    assert.equal(last?.type, 'result', `deploy of ${name} (${JSON.stringify(config)}): ${JSON.stringify(last)}`);
    return last.function;
  };
  const fn = (argv: string[]) => execa('node', [FN_BIN, ...argv], { env: { ...process.env, FN_URL: snapfn.url, FN_API_KEY: '' }, reject: false, timeout: 5 * 60_000 });
  /** `n` requests, `parallel` at a time; the status (and error code) of each. */
  const burst = async (n: number, parallel: number, one: (i: number) => Promise<Reply>) => {
    const codes: Record<string, number> = {};
    let next = 0;
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (next < n) {
          const r = await one(next++);
          const key = r.status === 200 ? '200' : `${r.status} ${r.json?.error?.code ?? ''}: ${String(r.json?.error?.message ?? '').slice(0, 200)}`;
          codes[key] = (codes[key] ?? 0) + 1;
        }
      }),
    );
    return codes;
  };
  const waitFor = async <T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await check();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const settled = (id: string) =>
    waitFor(`invocation ${id}`, async () => {
      const r = await call(`/v1/invocations/${id}`);
      return ['completed', 'failed', 'dead'].includes(r.json?.status) ? r.json : undefined;
    }, 90_000);
  const sandboxDir = () => path.join(home, 'gvisor', 'sandboxes');
  const liveSandboxIds = async () => (await fs.readdir(sandboxDir()).catch(() => [] as string[])).filter((n) => n.startsWith('sfn-'));

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-limits-home-'));
    const { startSnapfn } = await import('../src/snapfn.ts');
    const config = loadConfig({ ...process.env, SNAPFN_HOME: home, PORT: '0', SNAPFN_API_KEY: '', SNAPFN_POOL_SIZE: '0', SNAPFN_MAX_SANDBOXES: '4', SNAPFN_EVAL: '0', SNAPFN_MAX_BODY_BYTES: String(MAX_BODY) });
    snapfn = await startSnapfn({ config, examplesDir: false, hostname: '127.0.0.1', log: () => {} });
    // Every sandbox this gateway runs, for the cgroup check at the end.
    watch = setInterval(() => void liveSandboxIds().then((ids) => ids.forEach((id) => seenSandboxes.add(id))), 100);
    const r = await fn(['deploy', path.join(ROOT, 'functions/hello')]);
    assert.equal(r.exitCode, 0, `fn deploy functions/hello: ${r.stderr}`);
  });

  after(async () => {
    clearInterval(watch);
    await snapfn?.close();
    const left = await leftovers(home);
    const cgroups: string[] = [];
    for (const hierarchy of await fs.readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
      for (const id of seenSandboxes) {
        for (const dir of [path.join('/sys/fs/cgroup', hierarchy, 'snapfn', id), path.join('/sys/fs/cgroup', 'snapfn', id)]) {
          if (await fs.access(dir).then(() => true, () => false)) cgroups.push(dir);
        }
      }
    }
    await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, [], 'sandboxes, namespaces, veths or mounts left behind');
    assert.deepEqual([...new Set(cgroups)], [], 'sandbox cgroups left behind');
    assert.ok(seenSandboxes.size > 0);
  });

  test('memoryMb at its minimum and maximum: 20 of 20 each; the maximum is a cgroup limit only', async () => {
    const { min, max } = bounds('memoryMb');
    assert.deepEqual([min, max], [64, 8192], 'the documented bounds');
    await deploy('mem-min', { memoryMb: min });
    await deploy('mem-max', { memoryMb: max });
    for (const name of ['mem-min', 'mem-max']) {
      const codes = await burst(20, 2, () => call(`/fn/${name}`));
      assert.deepEqual(codes, { 200: 20 }, name);
    }
    // While one runs: its cgroup's limit is memoryMb + the runtime's reserve + room for a body.
    const before = new Set(await liveSandboxIds());
    const running = call('/fn/mem-max?sleep=3000');
    const id = await waitFor('the mem-max sandbox', async () => (await liveSandboxIds()).find((i) => !before.has(i)), 20_000);
    const limitFile = (await fs.access('/sys/fs/cgroup/memory').then(() => true, () => false)) ? `/sys/fs/cgroup/memory/snapfn/${id}/memory.limit_in_bytes` : `/sys/fs/cgroup/snapfn/${id}/memory.max`;
    const limit = Number((await waitFor('its cgroup', () => fs.readFile(limitFile, 'utf8').catch(() => undefined), 20_000)).trim());
    assert.equal(limit, (max + RUNTIME_RESERVE_MB) * MiB + 2 * MAX_BODY);
    assert.equal((await running).status, 200);

    // Larger than the machine's memory (beyond the schema, through the driver): still only a limit.
    const engine = snapfn.engine as Orchestrator<SandboxDriver>;
    const serving = await snapfn.store.serving('mem-max');
    const template = await engine.driver.loadTemplate(serving!.deployment.templateId);
    const huge = Math.ceil((2 * os.totalmem()) / MiB);
    const sandbox = await engine.driver.resume(template!, { memoryMb: huge, network: 'none' });
    try {
      const outcome = await sandbox.invoke({ method: 'GET', url: 'http://localhost/fn/mem-max', headers: [] }, { timeoutMs: 10_000, env: {}, invocationId: 'huge', memoryMb: huge });
      assert.equal(outcome.ok, true, JSON.stringify(!outcome.ok && outcome.error));
    } finally {
      await sandbox.destroy();
    }
  });

  test('timeoutMs at its minimum and maximum', async () => {
    const { min, max } = bounds('timeoutMs');
    assert.deepEqual([min, max], [100, 900_000]);
    await deploy('t-min', { timeoutMs: min });
    await deploy('t-max', { timeoutMs: max });
    assert.equal((await call('/fn/t-min')).status, 200, 'a quick handler fits in 100 ms');
    const cut = await call('/fn/t-min?sleep=5000');
    assert.equal(cut.status, 504);
    assert.equal(cut.json.error.code, 'timeout');
    assert.ok(cut.ms < 4500, `a 100 ms timeout answered after ${Math.round(cut.ms)} ms`);
    const slow = await call('/fn/t-max?sleep=1500');
    assert.equal(slow.status, 200, JSON.stringify(slow.json));
    // Through the queue too: a job's limits are derived from the timeout.
    const queued = await call('/fn/t-max?sleep=200', { headers: { 'x-fn-async': '1' } });
    assert.equal(queued.status, 202);
    assert.equal((await settled(queued.json.id)).status, 'completed');
  });

  test('poolSize at its minimum and maximum: a 32-sandbox pool on a 4-sandbox node leaves room for others', async () => {
    const { min, max } = bounds('poolSize');
    assert.deepEqual([min, max], [0, 32]);
    const engine = snapfn.engine;
    await deploy('pool-max', { poolSize: max });
    await waitFor('the pool to fill', async () => ((engine.stats().pooled['pool-max'] ?? 0) >= 2 ? true : undefined), 60_000);
    assert.ok(engine.stats().liveSandboxes <= 4, `live ${engine.stats().liveSandboxes} on a node of 4`);
    const hit = await call('/fn/pool-max');
    assert.equal(hit.status, 200);
    // Another function still gets a sandbox (a pooled one gives way).
    assert.equal((await call('/fn/mem-min')).status, 200);
    assert.equal((await call('/fn/hello')).status, 200);
    assert.equal((await call('/v1/functions/pool-max', { method: 'DELETE' })).status, 200);
    await deploy('pool-min', { poolSize: min });
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(engine.stats().pooled['pool-min'] ?? 0, 0);
    assert.equal((await call('/fn/pool-min')).status, 200);
  });

  test('maxConcurrency and maxQueued at their minimum (one runs, one waits, the next is a 429) and maximum', async () => {
    for (const key of ['maxConcurrency', 'maxQueued'] as const) assert.equal(bounds(key).min, 1);
    assert.deepEqual([bounds('maxConcurrency').max, bounds('maxQueued').max], [1000, 1_000_000]);
    await deploy('q-min', { maxConcurrency: 1, maxQueued: 1 });
    const a = await call('/fn/q-min?sleep=2500', { headers: { 'x-fn-async': '1' } });
    assert.equal(a.status, 202);
    await waitFor('the first to run', async () => ((await call(`/v1/invocations/${a.json.id}`)).json?.status === 'active' ? true : undefined), 30_000);
    const b = await call('/fn/q-min?sleep=100', { headers: { 'x-fn-async': '1' } });
    assert.equal(b.status, 202);
    const c = await call('/fn/q-min', { headers: { 'x-fn-async': '1' } });
    assert.equal(c.status, 429, JSON.stringify(c.json));
    assert.equal(c.json.error.code, 'over_capacity');
    assert.ok(Number(c.headers.get('retry-after')) >= 1);
    const [ra, rb] = [await settled(a.json.id), await settled(b.json.id)];
    assert.deepEqual([ra.status, rb.status], ['completed', 'completed']);
    assert.ok(rb.result.body.started >= ra.result.body.ended, 'maxConcurrency 1: the second ran after the first');

    await deploy('q-max', { maxConcurrency: bounds('maxConcurrency').max, maxQueued: bounds('maxQueued').max });
    const ids = await Promise.all([0, 1, 2].map(async () => (await call('/fn/q-max?sleep=300', { headers: { 'x-fn-async': '1' } })).json.id));
    for (const id of ids) assert.equal((await settled(id)).status, 'completed');
  });

  test('concurrency (per sandbox) at its minimum and maximum', async () => {
    const { min, max } = bounds('concurrency');
    assert.deepEqual([min, max], [1, 256]);
    await deploy('c-min', { concurrency: min });
    await deploy('c-max', { concurrency: max });
    for (const name of ['c-min', 'c-max']) {
      const replies = await Promise.all([0, 1, 2, 3].map(() => call(`/fn/${name}?sleep=800`)));
      assert.deepEqual(replies.map((r) => r.status), [200, 200, 200, 200], name);
    }
  });

  test(`a body of SNAPFN_MAX_BODY_BYTES (6 MiB) never kills hello: 100 of 100, and 20 of 20 to one kept-warm sandbox`, async () => {
    const body = Buffer.alloc(MAX_BODY, 0x61);
    const post = () => call('/fn/hello', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body });
    const codes = await burst(100, 2, post);
    assert.deepEqual(codes, { 200: 100 });
    const over = await call('/fn/hello', { method: 'POST', body: Buffer.alloc(MAX_BODY + 1) });
    assert.equal(over.status, 413);
    // One sandbox taking body after body: what envd keeps of each must not add up.
    const r = await fn(['deploy', path.join(ROOT, 'functions/hello'), '--name', 'hello-warm', '--keep-warm']);
    assert.equal(r.exitCode, 0, r.stderr);
    const reusesBefore = snapfn.engine.stats().keepWarmReuses;
    const warm = await burst(20, 1, () => call('/fn/hello-warm', { method: 'POST', body }));
    assert.deepEqual(warm, { 200: 20 });
    assert.ok(snapfn.engine.stats().keepWarmReuses - reusesBefore >= 17, `only ${snapfn.engine.stats().keepWarmReuses - reusesBefore} of 20 reused the kept-warm sandbox: it died`);
    // The body read whole by the handler, at its minimum memory.
    const read = await burst(10, 2, () => call('/fn/mem-min?read=1', { method: 'POST', body }));
    assert.deepEqual(read, { 200: 10 });
    assert.equal((await call('/v1/functions/hello-warm', { method: 'DELETE' })).status, 200);
  });

  test('a sandbox that dies is out_of_memory only when its cgroup counted an OOM kill; kill -9 and exit say how it ended', async () => {
    const oom = await call('/fn/mem-min?do=oom');
    assert.equal(oom.status, 502);
    assert.equal(oom.json.error.code, 'out_of_memory', JSON.stringify(oom.json));
    assert.equal(oom.headers.get('x-fn-error'), 'out_of_memory');
    assert.match(oom.json.error.message, /OOM killer/);
    assert.equal((await call('/fn/mem-min')).status, 200, 'the next invocation works');

    const before = new Set(await liveSandboxIds());
    const hanging = call('/fn/mem-min?do=hang');
    const id = await waitFor('the hanging sandbox', async () => (await liveSandboxIds()).find((i) => !before.has(i)), 20_000);
    await new Promise((r) => setTimeout(r, 1000));
    const ps = await execa('ps', ['-eo', 'pid=,args=']);
    const sentries = ps.stdout.split('\n').filter((l) => l.includes('runsc-sandbox') && l.includes(id));
    assert.equal(sentries.length, 1, `the Sentry of ${id}: ${sentries.join(' | ')}`);
    process.kill(Number(sentries[0]!.trim().split(/\s+/)[0]), 'SIGKILL');
    const killed = await hanging;
    assert.equal(killed.status, 502);
    assert.equal(killed.json.error.code, 'sandbox_crashed');
    assert.match(killed.json.error.message, /signal 9 \(SIGKILL\)/);
    assert.match(killed.json.error.message, /counted no out-of-memory kill/);
    assert.doesNotMatch(killed.json.error.message, /out-of-memory kill looks like/);

    const exited = await call('/fn/mem-min?do=exit');
    assert.equal(exited.status, 502);
    assert.equal(exited.json.error.code, 'sandbox_crashed');
    assert.match(exited.json.error.message, /exited with code 3\b/);
    assert.equal((await call('/fn/mem-min')).status, 200);
  });
});
