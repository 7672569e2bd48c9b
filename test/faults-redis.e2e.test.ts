// Faults: Redis going away under a real gateway (npm start's src/main.ts as
// a child process, the real gVisor engine, 2 sandboxes, a function deployed
// with the fn CLI). kill -9 Redis during a sync burst and during an async
// burst; /healthz, direct, async and status requests while it is down;
// SIGTERM with Redis gone; a second signal; the node's own (supervised)
// Redis restarted after kill -9 and gone after a SIGKILL of the gateway or a
// SIGTERM to the process group of `npm start`. Every caller must be answered
// within its bound, and nothing may be left behind. Figures go to the
// diagnostics (requests accepted, completed, failed with which code, waits).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { Redis } from 'ioredis';
import { connectRedis } from '../src/queue/redis-connection.ts';
import type { InvocationLogEntry, InvocationView } from '../src/schemas/api.ts';
import { FIXTURES, tempHome } from './support/engine.ts';
import { freePort, spawnGateway, type GatewayProcess } from './support/gateway-process.ts';
import { leftovers } from './support/leaks.ts';
import { redisServers, startTestRedis, waitFor, type TestRedis } from './support/redis.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FN_BIN = path.join(ROOT, 'wrangler-free-deploy/bin/fn.js');
/** What docs/queue.md promises a caller that waits on Redis when it goes away. */
const UNAVAILABLE_BOUND_MS = 5000;
/** The function's timeout: a SIGTERM must be over within it plus 10 s. */
const TIMEOUT_MS = 30_000;

interface Reply {
  label: string;
  status: number;
  code?: string;
  id?: string;
  queued: boolean;
  startedAt: number;
  endedAt: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * leftovers() plus any process still naming `home` (a `runsc restore` that
 * has not forked its runsc-sandbox yet would pass for gone), looked at twice
 * a second apart so that one coming up just after the exit is seen too.
 */
async function leftBehind(home: string, ownerPid: number): Promise<string[]> {
  await sleep(1000);
  const found = await leftovers(home, ownerPid);
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = (await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ').trim();
    const stat = await fs.readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    if (cmdline.includes(`${home}/`) && !/^\d+ \([^)]*\) Z/.test(stat) && !found.some((f) => f.startsWith(`process ${entry} `))) found.push(`process ${entry} ${cmdline.slice(0, 120)}`);
  }
  return found;
}

function tally(replies: Reply[]): string {
  const counts = new Map<string, number>();
  for (const r of replies) {
    const key = r.status === 200 ? `200${r.queued ? ' queued' : ' direct'}` : `${r.status} ${r.code ?? ''}`.trim();
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${n}× ${k}`).join(', ');
}

describe('faults: Redis going away (real gateway, real engine)', { timeout: 9 * 60_000 }, () => {
  let redis: TestRedis;
  let probe: Redis;
  let home: string;
  let port: number;
  let fnDir: string;
  let gateway: GatewayProcess | undefined;
  const gatewayPids: number[] = [];

  const env = (extra: Record<string, string> = {}) => ({
    SNAPFN_HOME: home,
    REDIS_URL: redis.redis.url,
    SNAPFN_MAX_SANDBOXES: '2',
    SNAPFN_POOL_SIZE: '0',
    SNAPFN_EXAMPLES: '0',
    SNAPFN_EVAL: '0',
    SNAPFN_API_KEY: '',
    SNAPFN_MAX_QUEUE_WAIT_MS: '60000',
    ...extra,
  });
  const start = async (extra: Record<string, string> = {}) => {
    // One gateway at a time on this port and home (a test run alone may find the last one still up).
    if (gateway && gateway.process.exitCode === null && gateway.process.signalCode === null) await gateway.stop();
    gateway = await spawnGateway(env(extra), port, 120_000);
    gatewayPids.push(gateway.pid);
    return gateway;
  };
  const url = (route: string) => `http://127.0.0.1:${port}${route}`;
  const call = async (label: string, route: string, init: RequestInit = {}): Promise<Reply> => {
    const startedAt = Date.now();
    try {
      const res = await fetch(url(route), { ...init, signal: AbortSignal.timeout(150_000) });
      const text = await res.text();
      let code: string | undefined;
      try {
        code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
      } catch {
        // a handler's body
      }
      return { label, status: res.status, ...(code ? { code } : {}), ...(res.headers.get('x-fn-invocation-id') ? { id: res.headers.get('x-fn-invocation-id')! } : {}), queued: res.headers.has('x-fn-queue-wait-ms'), startedAt, endedAt: Date.now() };
    } catch (err) {
      return { label, status: 0, code: `no answer: ${(err as Error).message}`, queued: false, startedAt, endedAt: Date.now() };
    }
  };
  const asyncCall = (label: string, route: string) => call(label, route, { method: 'POST', headers: { 'x-fn-async': '1' } });
  const health = async () => {
    const res = await fetch(url('/healthz'), { signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: (await res.json()) as { ok: boolean; error?: { code: string; message: string }; engine: { freeCapacity: number } } };
  };
  const api = async (route: string) => {
    const res = await fetch(url(route), { signal: AbortSignal.timeout(30_000) });
    return { status: res.status, json: (await res.json()) as any };
  };
  const status = async (id: string) => (await api(`/v1/invocations/${encodeURIComponent(id)}`)).json as InvocationView;
  const logs = async (): Promise<InvocationLogEntry[]> => (await api('/v1/functions/probe/logs?limit=1000')).json.entries;
  const queueLengths = async () => ({ wait: await probe.llen('snapfn:fn-probe:wait'), active: await probe.llen('snapfn:fn-probe:active') });

  before(async () => {
    redis = await startTestRedis('faults');
    probe = connectRedis(redis.redis.url);
    probe.on('error', () => {});
    home = await tempHome('faults-redis');
    port = await freePort();
    fnDir = path.join(home, 'probe-src');
    await fs.mkdir(fnDir, { recursive: true });
    await fs.copyFile(path.join(FIXTURES, 'queue-probe.mjs'), path.join(fnDir, 'index.mjs'));
    await start();
  });

  after(async () => {
    if (gateway && gateway.process.exitCode === null && gateway.process.signalCode === null) await gateway.stop();
    const left: string[] = [];
    for (const pid of gatewayPids) left.push(...(await leftBehind(home, pid)));
    probe?.disconnect();
    await redis?.close();
    await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, [], 'sandboxes, namespaces, veths or mounts left behind');
  });

  test('deploys a small handler with the fn CLI', async () => {
    // keepWarm: invocations reuse a paused sandbox instead of restoring one each (~1 s here).
    const r = await execa(process.execPath, [FN_BIN, 'deploy', fnDir, '--name', 'probe', '--keep-warm', '--timeout', String(TIMEOUT_MS)], { env: { ...process.env, FN_URL: gateway!.url, FN_API_KEY: '' }, reject: false, timeout: 300_000 });
    assert.equal(r.exitCode, 0, `fn deploy: ${r.stderr}\n${r.stdout}`);
    assert.equal((await call('warm', '/fn/probe?n=warm')).status, 200);
  });

  test('kill -9 Redis during a sync burst: every caller is answered, the waiting ones with 503 queue_unavailable within 5 s', async (t) => {
    const N = 16;
    const burst = Promise.all(Array.from({ length: N }, (_, i) => call(`s${i}`, `/fn/probe?n=s${i}&ms=1500`)));
    // Killed while the queue is really in use: a queued job running, others waiting for a sandbox.
    let atKill = { wait: 0, active: 0 };
    await waitFor('a queued sync invocation running and others waiting', async () => {
      atKill = await queueLengths();
      return atKill.active >= 1 && atKill.wait >= 3;
    }, 60_000, 50);
    const killedAt = Date.now();
    await redis.kill();
    const replies = await burst;

    const unexpected = replies.filter((r) => !(r.status === 200 || (r.status === 503 && r.code === 'queue_unavailable')));
    assert.deepEqual(unexpected, [], 'every caller gets its result or 503 queue_unavailable');
    const afterKill = replies.filter((r) => r.endedAt > killedAt).map((r) => r.endedAt - killedAt);
    const maxAfterKill = Math.max(0, ...afterKill);
    assert.ok(maxAfterKill <= UNAVAILABLE_BOUND_MS, `a caller waited ${maxAfterKill} ms after Redis died`);
    const abandoned = replies.filter((r) => r.status === 503);
    assert.ok(abandoned.length >= 3, `callers waiting in the queue at the kill heard of it (${tally(replies)})`);
    assert.ok(abandoned.every((r) => r.id), 'a 503 still names its invocation');

    // While Redis is down.
    const down = await health();
    assert.equal(down.status, 503);
    assert.equal(down.body.ok, false);
    assert.equal(down.body.error?.code, 'queue_unavailable');
    assert.match(down.body.error?.message ?? '', /Redis is unavailable/);
    await waitFor('a free sandbox', async () => (await health()).body.engine.freeCapacity >= 1, 30_000, 100);
    const direct = await call('direct', '/fn/probe?n=direct-while-down');
    assert.equal(direct.status, 200, 'direct invocations keep working');
    assert.equal(direct.queued, false);
    const refused = await asyncCall('async', '/fn/probe?n=async-while-down');
    assert.equal(refused.status, 503);
    assert.equal(refused.code, 'queue_unavailable');
    assert.ok(refused.endedAt - refused.startedAt <= UNAVAILABLE_BOUND_MS, `async refused after ${refused.endedAt - refused.startedAt} ms`);
    const statusStarted = Date.now();
    const statusRes = await api(`/v1/invocations/${encodeURIComponent(abandoned[0]!.id!)}`);
    assert.equal(statusRes.status, 503);
    assert.equal(statusRes.json.error.code, 'queue_unavailable');
    const statusMs = Date.now() - statusStarted;
    assert.ok(statusMs <= UNAVAILABLE_BOUND_MS, `status answered after ${statusMs} ms`);

    const restartedAt = Date.now();
    await redis.restart();
    await waitFor('/healthz 200 again', async () => (await health()).status === 200, 20_000, 100);
    const recoveredMs = Date.now() - restartedAt;
    // The abandoned callers' jobs are withdrawn, never run (except one a worker was already running at the kill).
    await waitFor('the queue to drain', async () => {
      const q = await queueLengths();
      return q.wait === 0 && q.active === 0;
    }, 60_000, 200);
    await sleep(500);
    // A job a worker had already taken at the kill may finish (its caller has its 503); none may start after it.
    const entries = await logs();
    const ran = abandoned.filter((r) => entries.some((e) => e.id === r.id && e.queue?.state === 'completed'));
    const startedAfterKill = [];
    for (const r of ran) {
      const s = await status(r.id!);
      const startedAt = s.startedAt ? Date.parse(s.startedAt) : undefined;
      if (startedAt === undefined || startedAt >= killedAt) startedAfterKill.push(`${r.id} (started ${startedAt === undefined ? '?' : startedAt - killedAt} ms after the kill)`);
    }
    assert.deepEqual(startedAfterKill, [], 'an abandoned sync invocation was started after Redis died');
    const ranAfter = ran.length;
    t.diagnostic(
      `sync burst of ${N}: ${tally(replies)}; queue at the kill: ${atKill.wait} waiting, ${atKill.active} running; max wait after the kill ${maxAfterKill} ms; ` +
        `while down: direct 200 in ${direct.endedAt - direct.startedAt} ms, async 503 in ${refused.endedAt - refused.startedAt} ms, status 503 in ${statusMs} ms; ` +
        `/healthz 200 ${recoveredMs} ms after Redis was back; abandoned jobs that ran anyway ${ranAfter}`,
    );
  });

  test('kill -9 Redis during an async burst: everything accepted completes exactly once after it returns, or is dead-lettered with a reason', async (t) => {
    const N = 12;
    const accepted = await Promise.all(Array.from({ length: N }, (_, i) => asyncCall(`a${i}`, `/fn/probe?n=a${i}&ms=400`)));
    assert.deepEqual(accepted.map((r) => r.status), Array(N).fill(202));
    const ids = accepted.map((r) => r.id!);
    let atKill: InvocationView[] = [];
    await waitFor('a completion, and work still queued', async () => {
      atKill = await Promise.all(ids.map(status));
      return atKill.some((s) => s.status === 'completed') && atKill.filter((s) => s.status === 'queued').length >= 3;
    }, 60_000, 100);
    const killedAt = Date.now();
    await redis.kill();
    const refused = await asyncCall('refused', '/fn/probe?n=a-refused');
    assert.equal(refused.status, 503);
    assert.equal(refused.code, 'queue_unavailable');
    // Down for less than a job lock (10 s): the job running at the kill keeps its lock.
    await sleep(Math.max(0, 5000 - (Date.now() - killedAt)));
    await redis.restart();
    const backAt = Date.now();
    let done: InvocationView[] = [];
    await waitFor(`all ${N} to complete or die`, async () => {
      done = await Promise.all(ids.map(status));
      return done.every((s) => s.status === 'completed' || s.status === 'dead');
    }, 120_000, 300);
    const allDoneMs = Date.now() - backAt;
    const dead = done.filter((s) => s.status === 'dead');
    for (const s of dead) assert.ok(s.error?.code && s.error.message, `dead letter ${s.id} has a reason`);
    const entries = (await logs()).filter((e) => ids.includes(e.id));
    const completions = new Map<string, number>();
    for (const e of entries) if (e.queue?.state === 'completed') completions.set(e.id, (completions.get(e.id) ?? 0) + 1);
    for (const s of done) {
      if (s.status === 'completed') assert.equal(completions.get(s.id), 1, `${s.id} completed ${completions.get(s.id) ?? 0} times`);
    }
    const bodies = done.filter((s) => s.status === 'completed').map((s) => (s.result!.body as { n: string }).n);
    assert.deepEqual(bodies.sort(), ids.map((_, i) => `a${i}`).filter((n) => bodies.includes(n)).sort(), 'each ran its own request');
    t.diagnostic(
      `async burst of ${N}: ${N} accepted (202); at the kill ${atKill.filter((s) => s.status === 'completed').length} completed, ${atKill.filter((s) => s.status === 'active').length} running, ${atKill.filter((s) => s.status === 'queued').length} queued; ` +
        `while down: async ${refused.status} ${refused.code} in ${refused.endedAt - refused.startedAt} ms; Redis down ${backAt - killedAt} ms; ` +
        `after: ${done.filter((s) => s.status === 'completed').length} completed exactly once, ${dead.length} dead (${dead.map((s) => s.error?.code).join(' ') || '-'}), all done ${allDoneMs} ms after Redis was back`,
    );
  });

  test('SIGTERM with Redis gone: done within the longest timeout + 10 s, the running direct invocation answered, no sandbox left', async (t) => {
    await redis.kill();
    await waitFor('/healthz to see Redis gone', async () => (await health()).status === 503, 10_000, 100);
    const inflight = call('term', '/fn/probe?n=term&ms=2000');
    await waitFor('the invocation in a sandbox', async () => (await health()).body.engine.freeCapacity < 2, 10_000, 50);
    const pid = gateway!.pid;
    const stoppedAt = Date.now();
    const code = await gateway!.stop(TIMEOUT_MS + 30_000);
    const tookMs = Date.now() - stoppedAt;
    const reply = await inflight;
    assert.equal(code, 0, `a graceful exit: ${gateway!.output()}`);
    assert.ok(tookMs <= TIMEOUT_MS + 10_000, `SIGTERM took ${tookMs} ms`);
    assert.equal(reply.status, 200, 'the running invocation finished');
    assert.deepEqual(await leftBehind(home, pid), [], 'no runsc process, namespace or mount left');
    await redis.restart();
    t.diagnostic(`SIGTERM with Redis down: exit ${code} after ${tookMs} ms (bound ${TIMEOUT_MS + 10_000} ms); in-flight direct invocation ${reply.status}`);
  });

  test('a second signal: the sandboxes of running invocations are destroyed before it exits', async (t) => {
    await start();
    const exited = once(gateway!.process, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    // A fresh gateway has no warm sandbox: both restore (~1 s here), and the
    // signals come while they do or just after (a restore in progress at a
    // forced stop used to leave its runsc-sandbox behind).
    const running = [call('long1', '/fn/probe?n=long1&ms=20000'), call('long2', '/fn/probe?n=long2&ms=20000')];
    await waitFor('both invocations to hold a place', async () => (await health()).body.engine.freeCapacity === 0, 30_000, 20);
    gateway!.process.kill('SIGTERM');
    // Past the window in which a repeated signal counts as the same one.
    await sleep(1100);
    const secondAt = Date.now();
    gateway!.process.kill('SIGTERM');
    const [code] = await exited;
    const tookMs = Date.now() - secondAt;
    const replies = await Promise.all(running);
    assert.equal(code, 1, gateway!.output());
    // 1-3.5 s here; the bound leaves room for a loaded host (cutting restores short, runsc delete).
    assert.ok(tookMs <= 15_000, `exited ${tookMs} ms after the second signal`);
    assert.deepEqual(await leftBehind(home, gateway!.pid), [], `no runsc process, namespace or mount left: ${gateway!.output()}`);
    t.diagnostic(`second SIGTERM: exit ${code} ${tookMs} ms after it; the two running callers got ${replies.map((r) => r.status || r.code).join(', ')}`);
  });

  test('its own Redis (no REDIS_URL): restarted on the same port after kill -9, gone with a SIGKILLed gateway', async (t) => {
    await start({ REDIS_URL: '' });
    const dir = path.join(home, 'redis');
    const [first] = await redisServers({ dir });
    assert.ok(first, 'a redis-server runs on SNAPFN_HOME/redis');
    const cmdline = (await fs.readFile(`/proc/${first}/cmdline`, 'utf8')).replaceAll('\0', ' ');
    const ownPort = Number(/:(\d+)/.exec(cmdline)?.[1]);
    assert.ok(ownPort > 0, cmdline);
    const killedAt = Date.now();
    process.kill(first, 'SIGKILL');
    let second: number | undefined;
    await waitFor('a new redis-server on the same port and directory', async () => {
      const pids = await redisServers({ dir, port: ownPort });
      second = pids.find((p) => p !== first);
      return second !== undefined;
    }, 15_000, 50);
    await waitFor('/healthz 200 again', async () => (await health()).status === 200, 15_000, 50);
    const backMs = Date.now() - killedAt;
    const accepted = await asyncCall('own', '/fn/probe?n=own-redis');
    assert.equal(accepted.status, 202);
    await waitFor('the async invocation on the restarted Redis', async () => (await status(accepted.id!)).status === 'completed', 60_000, 200);

    await gateway!.crash();
    const crashedAt = Date.now();
    await waitFor('its redis-server to die with it', async () => (await redisServers({ dir, port: ownPort })).length === 0, 5000, 20);
    t.diagnostic(`own Redis: pid ${first} -> ${second} on port ${ownPort}, /healthz 200 ${backMs} ms after the kill; after a SIGKILL of the gateway its Redis was gone in ${Date.now() - crashedAt} ms`);
  });

  test('npm start stopped by SIGTERM to its process group: the gateway and its Redis both end, nothing left', async (t) => {
    // `npm start` without its setup step (prestart): npm -> sh -> tsx -> node src/main.ts, one process group.
    const child: ChildProcess = spawn('npm', ['start', '--ignore-scripts', '--silent'], { cwd: ROOT, env: { ...process.env, ...env({ REDIS_URL: '' }), PORT: String(port) }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-6000)));
    child.stderr!.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-6000)));
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    const dir = path.join(home, 'redis');
    try {
      await waitFor(`npm start to be ready (${output})`, async () => (await health().catch(() => undefined))?.status === 200, 120_000, 250);
      // The node running src/main.ts (not tsx's CLI around it): it owns the sandboxes.
      let mainPid = 0;
      for (const pid of (await fs.readdir('/proc')).filter((p) => /^\d+$/.test(p)).map(Number)) {
        const cmd = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
        const pgid = Number((await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.split(' ')[2]);
        if (pgid === child.pid && cmd.some((a) => a.endsWith('src/main.ts')) && cmd[0]?.endsWith('node') && !cmd.some((a) => a.endsWith('/tsx') || a.endsWith('cli.mjs'))) mainPid = pid;
      }
      if (mainPid) gatewayPids.push(mainPid);
      const [own] = await redisServers({ dir });
      assert.ok(own, 'its own Redis runs');
      const reply = await call('npm', '/fn/probe?n=npm');
      assert.equal(reply.status, 200);
      const stoppedAt = Date.now();
      process.kill(-child.pid!, 'SIGTERM');
      const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), TIMEOUT_MS + 20_000);
      await exited;
      clearTimeout(timer);
      // npm itself goes at once; the gateway in the same group takes its graceful stop.
      await waitFor('every process of the group to end', async () => (await execa('pgrep', ['-g', String(child.pid)], { reject: false })).stdout.trim() === '', TIMEOUT_MS + 10_000, 100);
      const tookMs = Date.now() - stoppedAt;
      assert.deepEqual(await redisServers({ dir }), [], 'no redis-server left on SNAPFN_HOME/redis');
      assert.ok(/SIGTERM, shutting down/.test(output), output);
      assert.ok(!/again, /.test(output), `one group signal is one stop, not a forced one: ${output}`);
      if (mainPid) assert.deepEqual(await leftBehind(home, mainPid), [], 'no runsc process, namespace or mount left');
      t.diagnostic(`npm start (gateway pid ${mainPid}) and every process of its group ended ${tookMs} ms after SIGTERM to the group; its Redis (pid ${own}) ended with it`);
    } finally {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
    }
  });
});
