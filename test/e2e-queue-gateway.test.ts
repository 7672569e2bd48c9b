// The queue wired into the gateway, end to end: the real gateway (npm start's
// src/main.ts) in a child process with the real engine (gVisor), 2 sandboxes,
// on a Redis this test owns (so it outlives the gateway). Async work survives
// a SIGKILL of the gateway, a sync burst beyond capacity is absorbed by the
// queue, Idempotency-Key, a seconds cron set through the API, the queue limit,
// and `fn worker` taking jobs next to it. Every wait is bounded.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { DeployEvent, type InvocationLogEntry, type InvocationView } from '../src/schemas/api.ts';
import { FIXTURES, tempHome } from './support/engine.ts';
import { freePort, spawnGateway, type GatewayProcess } from './support/gateway-process.ts';
import { leftovers } from './support/leaks.ts';
import { startTestRedis, waitFor, type TestRedis } from './support/redis.ts';

const FN_BIN = fileURLToPath(new URL('../wrangler-free-deploy/bin/fn.js', import.meta.url));
const ASYNC_COUNT = 20;
const BURST = 12;

interface Probe {
  n: string;
  trigger: string;
  run: string;
  uuid: string;
}

describe('e2e: queue through the gateway (child process, real engine, real Redis)', { timeout: 6 * 60_000 }, () => {
  let redis: TestRedis;
  let home: string;
  let port: number;
  let gateway: GatewayProcess | undefined;
  const gateways: GatewayProcess[] = [];
  let files: Record<string, string>;

  const env = () => ({
    SNAPFN_HOME: home,
    REDIS_URL: redis.redis.url,
    SNAPFN_MAX_SANDBOXES: '2',
    SNAPFN_POOL_SIZE: '0',
    SNAPFN_EXAMPLES: '0',
    SNAPFN_EVAL: '0',
    SNAPFN_API_KEY: '',
    // A loaded 2-vCPU machine restores in 1-2 s, one queued job at a time (one sandbox stays for direct calls).
    SNAPFN_MAX_QUEUE_WAIT_MS: '90000',
  });
  const start = async () => {
    gateway = await spawnGateway(env(), port);
    gateways.push(gateway);
  };
  const url = (route: string) => `${gateway!.url}${route}`;
  const api = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(url(route), { method, signal: AbortSignal.timeout(30_000), ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }) });
    const text = await res.text();
    return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined };
  };
  const deploy = async (name: string, config: Record<string, unknown> = {}) => {
    const res = await fetch(url('/v1/functions'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, files, config }), signal: AbortSignal.timeout(180_000) });
    const text = await res.text();
    const last = DeployEvent.parse(JSON.parse(text.trim().split('\n').at(-1)!));
    assert.equal(last.type, 'result', text);
  };
  const invokeAsync = async (route: string, headers: Record<string, string> = {}) => {
    const res = await fetch(url(route), { method: 'POST', headers: { 'x-fn-async': '1', ...headers }, signal: AbortSignal.timeout(30_000) });
    return { res, id: res.status === 202 ? ((await res.json()) as { id: string }).id : undefined };
  };
  const status = async (id: string) => (await api('GET', `/v1/invocations/${encodeURIComponent(id)}`)).json as InvocationView;
  const statuses = (ids: string[]) => Promise.all(ids.map(status));
  const logs = async (name: string): Promise<InvocationLogEntry[]> => (await api('GET', `/v1/functions/${name}/logs?limit=1000`)).json.entries;

  before(async () => {
    redis = await startTestRedis('e2e-queue');
    home = await tempHome('e2e-queue');
    port = await freePort();
    files = { 'index.mjs': (await fs.readFile(path.join(FIXTURES, 'queue-probe.mjs'))).toString('base64') };
    await start();
  });

  after(async () => {
    // The schedule would keep firing into the next gateway that serves this Redis; this one is ours.
    await api('PUT', '/v1/functions/probe/schedule', { schedule: null }).catch(() => {});
    const codes = [];
    for (const g of gateways) codes.push(await g.stop());
    const left = [];
    for (const g of gateways) left.push(...(await leftovers(home, g.pid)));
    await redis?.close();
    await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, [], 'sandboxes, namespaces, veths or mounts left behind (by the killed gateway or the last one)');
    assert.equal(codes.at(-1), 0, `the last gateway exits cleanly on SIGTERM: ${gateways.at(-1)?.output()}`);
  });

  test('deploys a function through the API', async () => {
    // keepWarm: queued jobs reuse a paused sandbox instead of restoring one each
    // (1-7 s on a loaded 2-vCPU machine, one queued job at a time): keeps this
    // file within minutes. Requests sleep (?ms=) so that work is really in flight.
    await deploy('probe', { keepWarm: true });
    const res = await fetch(url('/fn/probe?n=direct'));
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as Probe).trigger, 'http');
  });

  test(`${ASYNC_COUNT} async invocations survive a SIGKILL of the gateway: all complete, each once`, async (t) => {
    const accepted = await Promise.all(Array.from({ length: ASYNC_COUNT }, (_, i) => invokeAsync(`/fn/probe?n=${i}&ms=500`)));
    assert.deepEqual(accepted.map((a) => a.res.status), Array(ASYNC_COUNT).fill(202));
    const ids = accepted.map((a) => a.id!);
    assert.equal(new Set(ids).size, ASYNC_COUNT);
    // Killed while one runs (its lock must expire before another node retries it) and the rest wait.
    let atKill: InvocationView[] = [];
    await waitFor(
      'a completion, and the next one running',
      async () => {
        atKill = await statuses(ids);
        return atKill.some((s) => s.status === 'completed') && atKill.some((s) => s.status === 'active');
      },
      90_000,
      100,
    );
    const activeAtKill = new Set(atKill.filter((s) => s.status === 'active').map((s) => s.id));
    const queuedAtKill = atKill.filter((s) => s.status === 'queued').length;
    assert.ok(queuedAtKill >= 5, `work still queued at the kill (${queuedAtKill})`);
    await gateway!.crash();
    const killedAt = Date.now();

    await start();
    await waitFor(
      `all ${ASYNC_COUNT} async invocations to complete after the restart`,
      async () => (await statuses(ids)).every((s) => s.status === 'completed'),
      150_000,
      500,
    );
    const done = await statuses(ids);
    const probes = done.map((s) => s.result!.body as Probe);
    assert.deepEqual(probes.map((p) => p.n), ids.map((_, i) => String(i)), 'each invocation ran its own request');
    assert.equal(new Set(probes.map((p) => p.run)).size, ASYNC_COUNT);
    // At least once: only a job that was running on the killed gateway may have run twice.
    const entries = (await logs('probe')).filter((e) => ids.includes(e.id));
    const completions = new Map<string, number>();
    for (const e of entries) if (e.queue?.state === 'completed') completions.set(e.id, (completions.get(e.id) ?? 0) + 1);
    for (const id of ids) {
      const n = completions.get(id) ?? 0;
      if (activeAtKill.has(id)) assert.ok(n >= 1 && n <= 2, `${id} (running at the kill) completed ${n} times`);
      else assert.equal(n, 1, `${id} completed ${n} times`);
    }
    const repeats = [...completions.values()].reduce((a, b) => a + b, 0) - ASYNC_COUNT;
    const uuids = new Set(probes.map((p) => p.uuid)).size;
    t.diagnostic(`queued at kill ${queuedAtKill}, running at kill ${activeAtKill.size}, ran twice ${repeats}, all done ${Math.round((Date.now() - killedAt) / 1000)} s after the kill, distinct crypto.randomUUID() values ${uuids}/${ASYNC_COUNT}`);
  });

  test(`a sync burst of ${BURST} with 2 sandboxes: every request answers 200, the overflow through the queue`, async (t) => {
    // Each takes a second: every request arrives while the first two still hold both sandboxes.
    const replies = await Promise.all(Array.from({ length: BURST }, (_, i) => fetch(url(`/fn/probe?n=s${i}&ms=1000`), { signal: AbortSignal.timeout(120_000) })));
    const bodies = await Promise.all(replies.map(async (r) => ({ status: r.status, queued: r.headers.has('x-fn-queue-wait-ms'), body: r.status === 200 ? ((await r.json()) as Probe) : await r.text() })));
    assert.deepEqual(bodies.map((b) => b.status), Array(BURST).fill(200), JSON.stringify(bodies.filter((b) => b.status !== 200)));
    assert.deepEqual(bodies.map((b) => (b.body as Probe).n), Array.from({ length: BURST }, (_, i) => `s${i}`));
    const queued = bodies.filter((b) => b.queued).length;
    assert.ok(queued >= BURST - 4, `${queued} of ${BURST} went through the queue`);
    t.diagnostic(`sync burst: ${queued} queued, ${BURST - queued} direct, queue waits ${replies.map((r) => r.headers.get('x-fn-queue-wait-ms') ?? '-').join(' ')} ms`);
  });

  test('Idempotency-Key: a repeated request gets the first invocation (async: its id; sync: its result)', async () => {
    const first = await invokeAsync('/fn/probe?n=k1', { 'idempotency-key': 'e2e-async-key' });
    const again = await invokeAsync('/fn/probe?n=k1', { 'idempotency-key': 'e2e-async-key' });
    assert.equal(first.res.status, 202);
    assert.equal(again.id, first.id);
    assert.equal(again.res.headers.get('x-fn-invocation-id'), first.id);
    const sync = () => fetch(url('/fn/probe?n=k2'), { headers: { 'idempotency-key': 'e2e-sync-key' }, signal: AbortSignal.timeout(120_000) });
    const a = await sync();
    const b = await sync();
    assert.equal(a.status, 200);
    assert.equal(a.headers.get('x-fn-invocation-id'), b.headers.get('x-fn-invocation-id'));
    assert.equal(((await a.json()) as Probe).run, ((await b.json()) as Probe).run, 'the same run, not a second one');
  });

  test('a */2 seconds cron set through the API fires into the function\'s log', async () => {
    const set = await api('PUT', '/v1/functions/probe/schedule', { schedule: '*/2 * * * * *' });
    assert.equal(set.status, 200, JSON.stringify(set.json));
    assert.equal(set.json.schedule.cron, '*/2 * * * * *');
    assert.equal((await api('GET', '/v1/functions/probe')).json.schedule.cron, '*/2 * * * * *');
    const since = Date.now();
    let run: InvocationLogEntry | undefined;
    await waitFor(
      'a scheduled run in the log',
      async () => (run = (await logs('probe')).find((e) => e.queue?.mode === 'schedule' && Number(e.id.split(':').pop()) >= since - 2000)) !== undefined,
      30_000,
      250,
    );
    assert.equal(run!.status, 200);
    assert.ok(run!.logs.some((l) => l.text.includes('trigger=schedule')), JSON.stringify(run!.logs));
    const off = await api('PUT', '/v1/functions/probe/schedule', { schedule: null });
    assert.equal(off.json.schedule, null);
  });

  test('past the queue limit: 429 over_capacity with Retry-After', async () => {
    await deploy('limited', { maxQueued: 2, keepWarm: true });
    const replies = [];
    for (let i = 0; i < 8; i++) replies.push(await invokeAsync(`/fn/limited?n=l${i}&ms=1000`));
    const refused = replies.filter((r) => r.res.status === 429);
    assert.ok(refused.length >= 3, `refused ${refused.length} of 8: ${replies.map((r) => r.res.status).join(' ')}`);
    assert.ok(replies.every((r) => r.res.status === 202 || r.res.status === 429));
    for (const r of refused) {
      assert.match(r.res.headers.get('retry-after') ?? '', /^\d+$/);
      assert.equal(r.res.headers.get('x-fn-error'), 'over_capacity');
    }
    const acceptedIds = replies.filter((r) => r.id).map((r) => r.id!);
    await waitFor('the accepted ones to complete', async () => (await statuses(acceptedIds)).every((s) => s.status === 'completed'), 60_000, 300);
  });

  test('fn worker: a worker-only node takes queued invocations; their log comes back to the gateway', async (t) => {
    const workerHome = await tempHome('e2e-queue-worker');
    const healthPort = await freePort();
    const fn = spawn(process.execPath, [FN_BIN, 'worker', '--redis-url', redis.redis.url, '--template-store', path.join(home, 'templates'), '--health-port', String(healthPort), '--home', workerHome], {
      // The key the gateway generated into its home (no SNAPFN_SECRETS_KEY there): every node needs the same.
      env: { ...process.env, SNAPFN_SECRETS_KEY: (await fs.readFile(path.join(home, 'secrets.key'), 'utf8')).trim(), SNAPFN_MAX_SANDBOXES: '2', SNAPFN_POOL_SIZE: '0', SNAPFN_WORKER_POLL_MS: '200' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    fn.stdout!.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-4000)));
    fn.stderr!.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-4000)));
    const exited = once(fn, 'exit') as Promise<[number | null]>;
    let workerPid = 0;
    try {
      await waitFor(
        `the worker node's health endpoint (${output})`,
        async () => {
          const res = await fetch(`http://127.0.0.1:${healthPort}/healthz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
          return res?.ok === true && ((await res.json()) as { functions: number }).functions >= 2;
        },
        60_000,
        250,
      );
      // fn's child running src/worker.ts (fn has others, e.g. esbuild's service for tsx).
      workerPid = Number((await execa('pgrep', ['-P', String(fn.pid), '-f', 'src/worker.ts'], { reject: false })).stdout.trim().split('\n')[0]);
      assert.ok(workerPid > 0, 'found the worker process');
      const ids = (await Promise.all(Array.from({ length: 6 }, (_, i) => invokeAsync(`/fn/probe?n=w${i}&ms=300`)))).map((a) => a.id!);
      await waitFor('6 completions', async () => (await statuses(ids)).every((s) => s.status === 'completed'), 90_000, 300);
      const done = await statuses(ids);
      const onWorker = done.filter((s) => s.worker?.endsWith(`:${workerPid}`)).map((s) => s.id);
      assert.ok(onWorker.length >= 1, `some ran on the worker node (pid ${workerPid}): ${done.map((s) => s.worker).join(' ')}`);
      // The gateway's log has an entry for every one, wherever it ran: the worker node's come over the result stream.
      await waitFor(
        'log entries for the worker node runs',
        async () => {
          const logged = new Set((await logs('probe')).map((e) => e.id));
          return onWorker.every((id) => logged.has(id));
        },
        15_000,
        250,
      );
      t.diagnostic(`worker node pid ${workerPid} ran ${onWorker.length} of 6`);
    } finally {
      fn.kill('SIGINT');
      const timer = setTimeout(() => fn.kill('SIGKILL'), 60_000);
      const [code] = await exited;
      clearTimeout(timer);
      const left = workerPid ? await leftovers(workerHome, workerPid) : [];
      await fs.rm(workerHome, { recursive: true, force: true });
      assert.equal(code, 0, `fn worker exits cleanly on Ctrl-C: ${output}`);
      assert.deepEqual(left, [], 'the worker node left sandboxes behind');
    }
  });
});
