// The fn CLI's queue commands against a gateway with a queue (real Redis,
// fake engine): invoke --async, invocation/status, deploy --schedule,
// schedule, logs of retries and dead letters, and fn worker's checks.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';
import { openQueueLayer, type QueueLayer } from '../src/queue-layer.ts';
import { FunctionStore } from '../src/registry/function-store.ts';
import { InvocationView } from '../src/schemas/api.ts';
import { runCli } from './helpers/cli-harness.ts';
import { FakeEngine } from './helpers/fake-engine.ts';
import { startTestRedis, waitFor, type TestRedis } from './support/redis.ts';

describe('fn CLI: queued invocations and schedules', () => {
  let redis: TestRedis;
  let home: string;
  let work: string;
  let engine: FakeEngine;
  let store: FunctionStore;
  let layer: QueueLayer;
  let gateway: RunningGateway;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    redis = await startTestRedis('cli-queue');
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-cli-queue-home-'));
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-cli-queue-work-'));
    engine = await FakeEngine.create();
    store = await FunctionStore.open(home);
    layer = openQueueLayer({ redisUrl: redis.redis.url, shared: false, engine, store, maxQueuedPerFunction: 100, tuning: { attempts: 2, backoff: { type: 'fixed', delayMs: 50 } }, log: () => {} });
    gateway = await startGateway({ engine, store, queue: layer.functions, config: { apiKey: undefined, maxBodyBytes: 4096, maxDeployBytes: 1 << 20 }, port: 0, hostname: '127.0.0.1' });
    env = { FN_URL: gateway.url };
    const write = async (rel: string, text: string) => {
      await fs.mkdir(path.dirname(path.join(work, rel)), { recursive: true });
      await fs.writeFile(path.join(work, rel), text);
    };
    await write('tick/index.js', "export default async (req) => { console.log('trigger ' + req.headers.get('x-fn-trigger')); return { at: Date.now() }; };\n");
    await write('boom/index.js', "export default async () => { throw new Error('kaboom'); };\n");
  });

  after(async () => {
    await gateway?.close({ graceMs: 100 });
    await layer?.close();
    await store?.close();
    await engine?.close();
    await redis?.close();
    await fs.rm(home, { recursive: true, force: true });
    await fs.rm(work, { recursive: true, force: true });
  });

  it('deploy --schedule sets the schedule end to end: shown after the deploy, in Redis, and its runs in fn logs', async () => {
    const run = await runCli(['deploy', 'tick', '--schedule', '*/2 * * * * *'], { env, cwd: work });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /\n {2}schedule \*\/2 \* \* \* \* \* \(UTC\), next \d{4}-/);
    assert.equal((await layer.functions.schedules.get('tick'))?.cron, '*/2 * * * * *');
    await waitFor('a scheduled run', async () => (await store.logs.tail('tick', 100)).some((e) => e.queue?.mode === 'schedule'), 6000, 100);
    const logs = await runCli(['logs', 'tick'], { env });
    assert.match(logs.stdout, / 200 +[\d.]+ms +v1 +GET \/fn\/tick +repeat:cron-tick:\d+ +\[schedule 1\/1 completed, waited \d+ms\]\n {4}\| trigger schedule\n/);
  });

  it('schedule changes or removes it (a new version); bad usage exits 2', async () => {
    const set = await runCli(['schedule', 'tick', '0 9 * * 1-5', '--tz', 'Europe/Paris'], { env });
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /^updated tick v2 .*\n.*\n {2}schedule 0 9 \* \* 1-5 \(Europe\/Paris\), next /);
    const off = await runCli(['schedule', 'tick', '--off'], { env });
    assert.equal(off.code, 0, off.stderr);
    assert.doesNotMatch(off.stdout, /schedule/);
    assert.equal(await layer.functions.schedules.get('tick'), undefined);
    for (const argv of [['schedule', 'tick'], ['schedule', 'tick', '* * *'], ['schedule', 'tick', '* * * * *', '--off']]) {
      const bad = await runCli(argv, { env });
      assert.equal(bad.code, 2, argv.join(' '));
      assert.equal(bad.stderr.split('\n').filter(Boolean).length, 1);
    }
  });

  it('invoke --async prints only the id; invocation --wait shows the result; status is an alias', async () => {
    const run = await runCli(['invoke', 'tick', '--async'], { env });
    assert.equal(run.code, 0, run.stderr);
    const id = run.stdout.trim();
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.match(run.stderr, /fn invocation /);
    const shown = await runCli(['invocation', id, '--wait', '--timeout', '10000'], { env });
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^${id}  tick v\\d+  async  completed  attempt 1/2\\n`));
    assert.match(shown.stdout, /\n {2}HTTP 200 application\/json; charset=utf-8\n\{\n {2}"at": \d+\n\}/);
    const json = await runCli(['status', id, '--json'], { env });
    assert.equal(InvocationView.parse(JSON.parse(json.stdout)).status, 'completed');
    const unknown = await runCli(['status', 'no-such-invocation'], { env });
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^fn: not_found: /);
  });

  it('an Idempotency-Key gives the same id twice', async () => {
    const a = await runCli(['invoke', 'tick', '--async', '--idempotency-key', 'cli-key-1'], { env });
    const b = await runCli(['invoke', 'tick', '--async', '--idempotency-key', 'cli-key-1'], { env });
    assert.equal(a.stdout, b.stdout);
  });

  it('a dead letter: invocation exits 1 with the error, logs show each attempt', async () => {
    assert.equal((await runCli(['deploy', 'boom'], { env, cwd: work })).code, 0);
    const id = (await runCli(['invoke', 'boom', '--async'], { env })).stdout.trim();
    const shown = await runCli(['invocation', id, '--wait', '--timeout', '10000'], { env });
    assert.equal(shown.code, 1);
    assert.equal(shown.stderr, `fn: invocation ${id} is dead: handler_error: kaboom\n`);
    const logs = await runCli(['logs', 'boom'], { env });
    assert.match(logs.stdout, /\[async 1\/2 retrying, waited \d+ms\]/);
    assert.match(logs.stdout, /\[async 2\/2 dead \(dead letter\), waited \d+ms\]/);
  });

  it('worker checks its settings before starting anything', async () => {
    const run = await runCli(['worker'], { env: {} });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /^fn: a worker needs the gateways' Redis: --redis-url or REDIS_URL/);
    const noStore = await runCli(['worker', '--redis-url', redis.redis.url], { env: {} });
    assert.equal(noStore.code, 2);
    assert.match(noStore.stderr, /SNAPFN_TEMPLATE_STORE/);
  });
});
