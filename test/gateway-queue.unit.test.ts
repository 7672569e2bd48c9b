// The gateway with its queue layer: a real Redis (started per file), the
// in-process fake engine. Async invocations, Idempotency-Key, the queue as
// overflow of the direct path, limits, withdrawals, retries and dead letters
// in the log, the status API and its auth, schedules through the API.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CapacityError } from '../src/errors.ts';
import type { GatewayEnv } from '../src/gateway/app.ts';
import type { InvocationLogEntry, InvocationView } from '../src/schemas/api.ts';
import { connEnv, GatewayFixture, HELLO } from './helpers/gateway-fixture.ts';
import { startTestRedis, waitFor, type TestRedis } from './support/redis.ts';

const ECHO = `export default async function (request) {
  const url = new URL(request.url);
  const ms = Number(url.searchParams.get('ms') ?? 0);
  if (ms) await new Promise((r) => setTimeout(r, ms));
  return { url: request.url, run: Math.random().toString(36).slice(2), key: request.headers.get('idempotency-key') };
}
`;
const THROWER = 'export default async () => { throw new Error("always fails") }';
const SECRET = 'sekrit-value-8f2d4a';
const LEAKY = `export default async () => { console.log('token is ' + process.env.TOKEN); return new Response('plain ' + process.env.TOKEN.length, { headers: { 'content-type': 'text/plain' } }); }`;
const REMOTE = connEnv('203.0.113.9');

describe('gateway with the queue (real Redis, fake engine)', () => {
  let redis: TestRedis;
  let f: GatewayFixture;

  const status = (id: string, env?: GatewayEnv['Bindings']) => f.api('GET', `/v1/invocations/${encodeURIComponent(id)}`, undefined, env ? { env } : {});
  const settled = async (id: string, timeoutMs = 10_000): Promise<InvocationView> => {
    let view: InvocationView | undefined;
    await waitFor(
      `invocation ${id} to settle`,
      async () => {
        const res = await status(id);
        view = res.json as InvocationView;
        return res.status === 200 && ['completed', 'failed', 'dead'].includes(view.status);
      },
      timeoutMs,
      30,
    );
    return view!;
  };
  const logsOf = async (name: string): Promise<InvocationLogEntry[]> => (await f.api('GET', `/v1/functions/${name}/logs?limit=1000`)).json.entries;

  before(async () => {
    redis = await startTestRedis('gateway-queue');
    f = await GatewayFixture.create({
      queue: { redisUrl: redis.redis.url, maxQueuedPerFunction: 10, maxQueueWaitMs: 10_000, tuning: { attempts: 3, backoff: { type: 'fixed', delayMs: 50 } } },
    });
    await f.deployOk({ name: 'hello', files: { 'index.js': HELLO } });
    await f.deployOk({ name: 'echo', files: { 'index.js': ECHO } });
    await f.deployOk({ name: 'thrower', files: { 'index.js': THROWER } });
    await f.deployOk({ name: 'leaky', files: { 'index.js': LEAKY }, secrets: { TOKEN: SECRET } });
    await f.deployOk({ name: 'private', files: { 'index.js': HELLO }, config: { requireAuth: true } });
  });

  after(async () => {
    await f?.close();
    await redis?.close();
  });

  it('X-Fn-Async: 1 answers 202 with the id, a Location and X-Fn-Invocation-Id; the status API has the decoded result', async () => {
    const res = await f.request('/fn/hello?name=Ada', { headers: { 'x-fn-async': '1' } });
    assert.equal(res.status, 202);
    const { id } = (await res.json()) as { id: string };
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.equal(res.headers.get('x-fn-invocation-id'), id);
    assert.equal(res.headers.get('location'), `/v1/invocations/${id}`);
    const view = await settled(id);
    assert.equal(view.status, 'completed');
    assert.equal(view.mode, 'async');
    assert.equal(view.function, 'hello');
    assert.equal(view.version, 1);
    assert.equal(view.attempts, 1);
    assert.deepEqual(view.result, { status: 200, headers: { 'content-type': 'application/json; charset=utf-8' }, bodyEncoding: 'json', body: { greeting: 'hello Ada' } });
    assert.ok(Date.parse(view.enqueuedAt) <= Date.parse(view.finishedAt!));
    const entry = (await logsOf('hello')).find((e) => e.id === id);
    assert.deepEqual(entry?.queue && { mode: entry.queue.mode, attempt: entry.queue.attempt, state: entry.queue.state }, { mode: 'async', attempt: 1, state: 'completed' });
    assert.equal(entry?.path, '/fn/hello');
  });

  it('?async=1 and Prefer: respond-async are async too; the handler never sees async=1', async () => {
    const viaQuery = await f.request('/fn/echo/sub?x=1&async=1');
    assert.equal(viaQuery.status, 202);
    const view = await settled(((await viaQuery.json()) as { id: string }).id);
    assert.equal((view.result?.body as { url: string }).url, 'http://localhost/fn/echo/sub?x=1');
    const viaPrefer = await f.request('/fn/echo', { headers: { prefer: 'respond-async, wait=5' } });
    assert.equal(viaPrefer.status, 202);
    const bad = await f.request('/fn/echo', { headers: { 'x-fn-async': 'maybe' } });
    assert.equal(bad.status, 400);
  });

  it('an Idempotency-Key maps repeats to the first invocation: async gets the same id, sync the same result', async () => {
    const first = await f.request('/fn/echo', { headers: { 'x-fn-async': '1', 'idempotency-key': 'order-17' } });
    const second = await f.request('/fn/echo', { headers: { 'x-fn-async': '1', 'idempotency-key': 'order-17' } });
    const id = ((await first.json()) as { id: string }).id;
    assert.equal(((await second.json()) as { id: string }).id, id);
    assert.equal(second.headers.get('x-fn-invocation-id'), id);
    await settled(id);

    const a = await f.request('/fn/echo', { headers: { 'idempotency-key': 'pay-42' } });
    const b = await f.request('/fn/echo', { headers: { 'idempotency-key': 'pay-42' } });
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    assert.equal(a.headers.get('x-fn-invocation-id'), b.headers.get('x-fn-invocation-id'));
    assert.deepEqual(await a.json(), await b.json());
    const runs = f.engine.invocations.filter((i) => i.invocationId === a.headers.get('x-fn-invocation-id') || i.invocationId === id);
    assert.equal(runs.length, 2, 'each key ran once');
    const logged = (await logsOf('echo')).filter((e) => e.id === id);
    assert.equal(logged.length, 1);
  });

  it('with no free sandbox, synchronous invocations go through the queue and all answer 200', async () => {
    f.engine.maxSandboxes = 2;
    try {
      const replies = await Promise.all(Array.from({ length: 6 }, (_, i) => f.request(`/fn/echo?ms=150&i=${i}`)));
      assert.deepEqual(replies.map((r) => r.status), [200, 200, 200, 200, 200, 200]);
      const queued = replies.filter((r) => r.headers.has('x-fn-queue-wait-ms'));
      assert.ok(queued.length >= 4, `${queued.length} went through the queue`);
      assert.ok(queued.every((r) => r.headers.get('x-fn-version') === '1'));
      const ids = new Set(queued.map((r) => r.headers.get('x-fn-invocation-id')));
      const entries = (await logsOf('echo')).filter((e) => ids.has(e.id));
      assert.equal(entries.length, queued.length, 'one log entry per queued invocation (written by the worker)');
      assert.ok(entries.every((e) => e.queue?.mode === 'sync' && e.queue.state === 'completed'));
    } finally {
      f.engine.maxSandboxes = 8;
    }
  });

  it('past the queue limit (SNAPFN_MAX_QUEUED_PER_FUNCTION, or the function\'s maxQueued): 429 with Retry-After, logged', async () => {
    await f.deployOk({ name: 'limited', files: { 'index.js': HELLO }, config: { maxQueued: 2 } });
    await f.deployOk({ name: 'backlog', files: { 'index.js': HELLO } });
    // Nobody takes their jobs: the backlog stays exactly where the test puts it.
    await f.queue.workers.stop('limited');
    await f.queue.workers.stop('backlog');
    const send = (name: string) => f.request(`/fn/${name}`, { method: 'POST', headers: { 'x-fn-async': '1' } });
    assert.equal((await send('limited')).status, 202);
    assert.equal((await send('limited')).status, 202);
    const refused = await send('limited');
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get('retry-after'), '5');
    assert.equal(refused.headers.get('x-fn-error'), 'over_capacity');
    assert.match(((await refused.json()) as { error: { message: string } }).error.message, /2 invocations of limited are already queued \(limit 2\)/);
    const entry = (await logsOf('limited')).find((e) => e.id === refused.headers.get('x-fn-invocation-id'));
    assert.equal(entry?.status, 429);
    assert.equal(entry?.error?.code, 'over_capacity');

    for (let i = 0; i < 10; i++) assert.equal((await send('backlog')).status, 202);
    assert.equal((await send('backlog')).status, 429, 'the node-wide default (10 in this test) applies without maxQueued');
  });

  it('a synchronous invocation that waits too long is withdrawn: 503 queue_timeout, logged, never run', async () => {
    await f.deployOk({ name: 'stuck', files: { 'index.js': HELLO } });
    await f.queue.workers.stop('stuck');
    f.config.maxQueueWaitMs = 300;
    try {
      const res = await f.request('/fn/stuck', { headers: { 'idempotency-key': 'too-slow' } });
      assert.equal(res.status, 503);
      assert.equal(res.headers.get('x-fn-error'), 'queue_timeout');
      const body = (await res.json()) as { error: { code: string; details: { invocationId: string; state: string } } };
      assert.equal(body.error.code, 'queue_timeout');
      assert.equal(body.error.details.state, 'withdrawn');
      const id = res.headers.get('x-fn-invocation-id')!;
      assert.equal(body.error.details.invocationId, id);
      assert.equal((await status(id)).status, 404, 'withdrawn: the job is gone');
      assert.equal((await logsOf('stuck')).find((e) => e.id === id)?.error?.code, 'queue_timeout');
      assert.ok(!f.engine.invocations.some((i) => i.invocationId === id));
    } finally {
      f.config.maxQueueWaitMs = 10_000;
    }
  });

  it('an engine that refuses a queued sync invocation answers like the direct path (429), logged as failed, status failed', async () => {
    f.engine.nextInvokeError = new CapacityError('all 8 sandboxes of this node stayed busy for 30000 ms', 30);
    const res = await f.request('/fn/hello', { headers: { 'idempotency-key': 'refused-by-engine' } });
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '5');
    assert.equal(res.headers.get('x-fn-error'), 'over_capacity');
    const id = res.headers.get('x-fn-invocation-id')!;
    const entry = (await logsOf('hello')).find((e) => e.id === id);
    assert.deepEqual([entry?.status, entry?.error?.code, entry?.queue?.state], [429, 'over_capacity', 'failed']);
    const view = (await status(id)).json as InvocationView;
    assert.equal(view.status, 'failed');
    assert.equal(view.error?.code, 'over_capacity');
  });

  it('a failing async invocation is retried, then dead; the log shows every attempt and the dead letter', async () => {
    const res = await f.request('/fn/thrower', { headers: { 'x-fn-async': '1' } });
    const { id } = (await res.json()) as { id: string };
    const view = await settled(id);
    assert.equal(view.status, 'dead');
    assert.equal(view.attempts, 3);
    assert.equal(view.maxAttempts, 3);
    assert.deepEqual(view.error, { code: 'handler_error', message: 'always fails' });
    const attempts = (await logsOf('thrower')).filter((e) => e.id === id);
    assert.deepEqual(
      attempts.map((e) => [e.queue?.attempt, e.queue?.state, e.status, e.error?.code]),
      [
        [1, 'retrying', 502, 'handler_error'],
        [2, 'retrying', 502, 'handler_error'],
        [3, 'dead', 502, 'handler_error'],
      ],
    );
  });

  it('secret values are redacted from queued log entries and from the status API', async () => {
    const res = await f.request('/fn/leaky', { headers: { 'x-fn-async': '1' } });
    const { id } = (await res.json()) as { id: string };
    const view = await settled(id);
    assert.deepEqual(view.result?.body, `plain ${SECRET.length}`);
    assert.equal(view.result?.bodyEncoding, 'text');
    assert.deepEqual(view.logs?.map((l) => l.text), ['token is [redacted]\n']);
    const entry = (await logsOf('leaky')).find((e) => e.id === id);
    assert.deepEqual(entry?.logs.map((l) => l.text), ['token is [redacted]\n']);
  });

  it('GET /v1/invocations/:id: 404 for unknown ids; other clients may poll public functions, not private ones or schedule runs', async () => {
    assert.equal((await status('0f0e0d0c-0000-4000-8000-000000000000')).status, 404);
    const open = await f.request('/fn/hello', { headers: { 'x-fn-async': '1' } }, REMOTE);
    assert.equal(open.status, 202);
    const openId = ((await open.json()) as { id: string }).id;
    await settled(openId);
    assert.equal((await status(openId, REMOTE)).status, 200);
    const closed = await f.request('/fn/private', { headers: { 'x-fn-async': '1' } });
    const closedId = ((await closed.json()) as { id: string }).id;
    await settled(closedId);
    assert.equal((await status(closedId, REMOTE)).status, 403);
    assert.equal((await status('0f0e0d0c-0000-4000-8000-000000000000', REMOTE)).status, 403, 'unknown ids answer like the guard');
    assert.equal((await status('repeat:cron-hello:1700000000000', REMOTE)).status, 403);
  });

  it('PUT /v1/functions/:name/schedule: a new version whose schedule GET shows; it fires into the log; null removes it', async () => {
    await f.deployOk({ name: 'ticker', files: { 'index.js': HELLO } });
    const bad = await f.api('PUT', '/v1/functions/ticker/schedule', { schedule: '61 * * * *' });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /^invalid schedule update: schedule/);

    const set = await f.api('PUT', '/v1/functions/ticker/schedule', { schedule: '* * * * * *' });
    assert.equal(set.status, 200, JSON.stringify(set.json));
    assert.equal(set.json.activeVersion, 2);
    assert.equal(set.json.active.source, 'schedule');
    assert.equal(set.json.schedule.cron, '* * * * * *');
    assert.ok(Date.parse(set.json.schedule.next) > Date.now() - 1000);
    const again = await f.api('PUT', '/v1/functions/ticker/schedule', { schedule: '*  *  * * * *' });
    assert.equal(again.json.activeVersion, 2, 'an unchanged schedule makes no new version');
    assert.equal((await f.api('GET', '/v1/functions/ticker')).json.schedule.cron, '* * * * * *');
    assert.equal((await f.queue.schedules.get('ticker'))?.cron, '* * * * * *');

    let run: InvocationLogEntry | undefined;
    await waitFor('a scheduled run in the log', async () => (run = (await logsOf('ticker')).find((e) => e.queue?.mode === 'schedule')) !== undefined, 5000, 100);
    assert.match(run!.id, /^repeat:cron-ticker:\d+$/);
    assert.equal(run!.status, 200);
    assert.equal((await status(run!.id)).json.mode, 'schedule');

    const off = await f.api('PUT', '/v1/functions/ticker/schedule', { schedule: null });
    assert.equal(off.json.activeVersion, 3);
    assert.equal(off.json.schedule, null);
    assert.equal(await f.queue.schedules.get('ticker'), undefined);
    // A rollback brings back that version's schedule, in Redis too.
    await f.api('POST', '/v1/functions/ticker/rollback', { version: 2 });
    assert.equal((await f.queue.schedules.get('ticker'))?.cron, '* * * * * *');
    await f.api('PUT', '/v1/functions/ticker/schedule', { schedule: null });
    assert.equal(await f.queue.schedules.get('ticker'), undefined);
  });

  it('a deploy applies config.schedule; deleting the function removes its schedule, queue and worker', async () => {
    await f.deployOk({ name: 'nightly', files: { 'index.js': HELLO }, config: { schedule: { cron: '0 3 * * *', tz: 'Europe/Berlin' } } });
    assert.deepEqual(await f.queue.schedules.get('nightly').then((s) => s && { cron: s.cron, tz: s.tz }), { cron: '0 3 * * *', tz: 'Europe/Berlin' });
    const view = (await f.api('GET', '/v1/functions/nightly')).json;
    assert.equal(view.schedule.tz, 'Europe/Berlin');
    assert.equal(new Date(view.schedule.next).getUTCMinutes(), 0);
    assert.ok(f.queue.workers.functions().includes('nightly'));
    assert.equal((await f.api('DELETE', '/v1/functions/nightly')).status, 200);
    assert.equal(await f.queue.schedules.get('nightly'), undefined);
    assert.ok(!f.queue.workers.functions().includes('nightly'));
  });

  it('documents the new endpoints in /v1/openapi.json', async () => {
    const { json } = await f.api('GET', '/v1/openapi.json');
    assert.ok(json.paths['/v1/invocations/{id}'].get);
    assert.ok(json.paths['/v1/functions/{name}/schedule'].put);
    assert.deepEqual(json.components.schemas.InvocationView.properties.status.enum, ['queued', 'active', 'completed', 'failed', 'dead']);
    assert.ok(json.components.schemas.InvocationLogEntry.properties.queue);
    assert.ok(json.components.schemas.FunctionView.properties.schedule);
  });

  it('reports no unexpected errors', () => {
    assert.deepEqual(f.logged.filter((m) => !m.includes('could not append')), []);
  });
});

describe('gateway without a queue', () => {
  let f: GatewayFixture;
  before(async () => {
    f = await GatewayFixture.create();
    await f.deployOk({ name: 'hello', files: { 'index.js': HELLO } });
  });
  after(() => f.close());

  it('refuses async and Idempotency-Key invocations with 501 queue_disabled, and has no invocation statuses', async () => {
    const res = await f.request('/fn/hello', { headers: { 'x-fn-async': '1' } });
    assert.equal(res.status, 501);
    assert.equal(res.headers.get('x-fn-error'), 'queue_disabled');
    assert.equal((await f.request('/fn/hello', { headers: { 'idempotency-key': 'k' } })).status, 501);
    assert.equal((await f.request('/fn/hello')).status, 200);
    assert.equal((await f.api('GET', '/v1/invocations/x')).status, 404);
    assert.equal((await f.api('GET', '/v1/invocations/x', undefined, { env: REMOTE })).status, 403);
  });
});
