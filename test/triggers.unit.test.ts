// Triggers with a real Redis and the in-process fake engine: async callbacks
// (signed, once, retried, refused outside the allow-list, denied when a
// granted name resolves to a host-internal address) to a real HTTP receiver,
// and topics (fan-out to three subscribers, a repeated message id, a
// subscriber that throws is retried and dead-lettered).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { verifyCallback, SIGNATURE_HEADER } from '../src/invocation/callbacks/callback-signature.ts';
import { addressAllowed, checkCallbackUrl, parseAllowList } from '../src/invocation/callbacks/callback-target.ts';
import type { InvocationLogEntry, InvocationView } from '../src/schemas/api.ts';
import type { CallbackPayload, PublishAccepted, TopicsView } from '../src/schemas/invocation.ts';
import { GatewayFixture, HELLO } from './helpers/gateway-fixture.ts';
import { startTestRedis, waitFor, type TestRedis } from './support/redis.ts';

const SECRET = 'callback-secret-for-tests-0123';
const THROWER = 'export default async () => { throw new Error("subscriber fails") }';
const ECHO = `export default async function (request) {
  return { topic: request.headers.get('x-fn-topic'), messageId: request.headers.get('x-fn-message-id'), trigger: request.headers.get('x-fn-trigger'), body: await request.text(), custom: request.headers.get('x-custom') };
}
`;

interface Received {
  path: string;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** A real HTTP receiver; `/fail-twice/<key>` answers 500 to the first two posts of each key. */
async function startReceiver(): Promise<{ url: string; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const failures = new Map<string, number>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push({ path: req.url ?? '', body, headers: req.headers });
      const key = /^\/fail-twice\/(.+)$/.exec(req.url ?? '')?.[1];
      if (key !== undefined) {
        const n = (failures.get(key) ?? 0) + 1;
        failures.set(key, n);
        if (n <= 2) return res.writeHead(500).end('not yet');
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, received, close: () => new Promise((r) => server.close(() => r())) };
}

describe('triggers: callbacks and topics (real Redis, fake engine, real receiver)', () => {
  let redis: TestRedis;
  let f: GatewayFixture;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  const saved = { secret: process.env.SNAPFN_CALLBACK_SECRET, allow: process.env.SNAPFN_CALLBACK_ALLOW };

  const status = async (id: string) => (await f.api('GET', `/v1/invocations/${encodeURIComponent(id)}`)).json as InvocationView;
  const logsOf = async (name: string): Promise<InvocationLogEntry[]> => (await f.api('GET', `/v1/functions/${name}/logs?limit=1000`)).json.entries;
  const callbacksTo = (path: string) => receiver.received.filter((r) => r.path === path);
  const asyncWithCallback = async (fn: string, callback: string) => {
    const res = await f.request(`/fn/${fn}`, { headers: { 'x-fn-async': '1', 'x-callback-url': callback } });
    assert.equal(res.status, 202, await res.clone().text());
    return ((await res.json()) as { id: string }).id;
  };

  before(async () => {
    process.env.SNAPFN_CALLBACK_SECRET = SECRET;
    delete process.env.SNAPFN_CALLBACK_ALLOW; // the default: loopback only
    redis = await startTestRedis('triggers');
    receiver = await startReceiver();
    f = await GatewayFixture.create({
      queue: { redisUrl: redis.redis.url, maxQueueWaitMs: 10_000, tuning: { attempts: 3, backoff: { type: 'fixed', delayMs: 50 }, callbacks: { backoffMs: 100, attempts: 4, timeoutMs: 2000 } } },
    });
    await f.deployOk({ name: 'hello', files: { 'index.js': HELLO } });
    await f.deployOk({ name: 'thrower', files: { 'index.js': THROWER } });
    for (const name of ['sub-a', 'sub-b', 'sub-c']) await f.deployOk({ name, files: { 'index.js': ECHO }, config: { topics: ['orders'] } });
    await f.deployOk({ name: 'sub-bad', files: { 'index.js': THROWER }, config: { topics: ['bad'] } });
  });

  after(async () => {
    await f?.close();
    await receiver?.close();
    await redis?.close();
    if (saved.secret === undefined) delete process.env.SNAPFN_CALLBACK_SECRET;
    else process.env.SNAPFN_CALLBACK_SECRET = saved.secret;
    if (saved.allow !== undefined) process.env.SNAPFN_CALLBACK_ALLOW = saved.allow;
  });

  it('a completed async invocation calls back once, signed over the body, and its record says delivered', async () => {
    const id = await asyncWithCallback('hello', `${receiver.url}/ok`);
    await waitFor('the callback', () => callbacksTo('/ok').length >= 1, 15_000);
    await waitFor('its delivery to be recorded', async () => (await status(id)).callback?.state === 'delivered', 5000);
    await new Promise((r) => setTimeout(r, 500));
    const [got, ...more] = callbacksTo('/ok');
    assert.equal(more.length, 0, 'exactly one callback');
    assert.ok(verifyCallback(SECRET, got!.body, got!.headers[SIGNATURE_HEADER] as string), 'the signature verifies');
    assert.equal(verifyCallback('another-secret-entirely', got!.body, got!.headers[SIGNATURE_HEADER] as string), false);
    const payload = JSON.parse(got!.body) as CallbackPayload;
    assert.equal(payload.id, id);
    assert.equal(got!.headers['x-fn-invocation-id'], id);
    assert.deepEqual({ outcome: payload.outcome, status: payload.status, trigger: payload.trigger, fn: payload.function }, { outcome: 'completed', status: 200, trigger: 'async', fn: 'hello' });
    assert.deepEqual(JSON.parse(Buffer.from(payload.bodyBase64!, 'base64').toString()), { greeting: 'hello world' });
    const view = await status(id);
    assert.equal(view.callback?.attempts, 1);
    assert.equal(view.callback?.lastStatus, 204);
  });

  it('a dead-lettered async invocation calls back once, after its last attempt, with the error', async () => {
    const id = await asyncWithCallback('thrower', `${receiver.url}/dead`);
    await waitFor('the callback of the dead letter', () => callbacksTo('/dead').length >= 1, 20_000);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(callbacksTo('/dead').length, 1, 'one callback, not one per attempt');
    const payload = JSON.parse(callbacksTo('/dead')[0]!.body) as CallbackPayload;
    assert.equal(payload.outcome, 'dead');
    assert.equal(payload.attempts, 3);
    assert.equal(payload.error?.code, 'handler_error');
    assert.match(payload.error!.message, /subscriber fails/);
    assert.equal((await status(id)).status, 'dead');
  });

  it('a receiver answering 500 twice gets the callback on the third attempt', async () => {
    const id = await asyncWithCallback('hello', `${receiver.url}/fail-twice/a`);
    await waitFor('three deliveries', () => callbacksTo('/fail-twice/a').length >= 3, 20_000);
    await waitFor('delivered', async () => (await status(id)).callback?.state === 'delivered', 5000);
    await new Promise((r) => setTimeout(r, 500));
    const posts = callbacksTo('/fail-twice/a');
    assert.equal(posts.length, 3);
    assert.deepEqual(posts.map((p) => p.headers['x-fn-callback-attempt']), ['1', '2', '3']);
    assert.deepEqual(new Set(posts.map((p) => JSON.parse(p.body).id)), new Set([id]));
    assert.equal((await status(id)).callback?.attempts, 3);
  });

  it('a callback host outside the allow-list is refused at request time with 400, and nothing is queued', async () => {
    const before = (await logsOf('hello')).length;
    for (const url of ['http://169.254.169.254/latest/meta-data', 'http://10.0.0.1:8080/x', 'http://example.com/hook', 'file:///etc/passwd', 'http://user:pw@127.0.0.1/x']) {
      const res = await f.request('/fn/hello', { headers: { 'x-fn-async': '1', 'x-callback-url': url } });
      assert.equal(res.status, 400, url);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'invalid_input');
    }
    const sync = await f.request('/fn/hello', { headers: { 'x-callback-url': `${receiver.url}/sync` } });
    assert.equal(sync.status, 400, 'a callback needs an async invocation');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await logsOf('hello')).length, before);
  });

  it('with SNAPFN_CALLBACK_ALLOW=*, a name that resolves to loopback is accepted, then never called (checked per resolved address)', async () => {
    // Its own Redis: the callbacks queue is shared by every gateway of one Redis, which share one allow-list.
    const own = await startTestRedis('triggers-open');
    process.env.SNAPFN_CALLBACK_ALLOW = '*';
    const open = await GatewayFixture.create({ queue: { redisUrl: own.redis.url, tuning: { callbacks: { backoffMs: 100, attempts: 2, timeoutMs: 2000 } } } });
    delete process.env.SNAPFN_CALLBACK_ALLOW;
    try {
      await open.deployOk({ name: 'hello-open', files: { 'index.js': HELLO } });
      const port = new URL(receiver.url).port;
      const res = await open.request('/fn/hello-open', { headers: { 'x-fn-async': '1', 'x-callback-url': `http://localhost:${port}/rebind` } });
      assert.equal(res.status, 202, 'the name itself is allowed by *');
      const { id } = (await res.json()) as { id: string };
      assert.equal((await open.request(`/fn/hello-open`, { headers: { 'x-fn-async': '1', 'x-callback-url': `http://127.0.0.1:${port}/x` } })).status, 400, 'a loopback literal is not');
      let view: InvocationView | undefined;
      await waitFor('the callback to be refused', async () => (view = (await open.api('GET', `/v1/invocations/${id}`)).json as InvocationView).callback?.state === 'failed', 10_000);
      assert.match(view!.callback!.lastError!, /resolves to .*127\.0\.0\.1.*does not grant/);
      assert.equal(callbacksTo('/rebind').length, 0, 'the receiver on loopback was never reached');
    } finally {
      await open.close();
      await own.close();
    }
  });

  it('a granted host name that resolves to a host-internal address is not called (DNS rebinding)', () => {
    const anyPublic = parseAllowList('*');
    // The name passes the request-time check ...
    assert.equal(checkCallbackUrl('http://localhost:1/x', anyPublic).hostname, 'localhost');
    // ... but what it resolves to is checked at connect time, and loopback or metadata addresses are not granted by '*'.
    for (const address of ['127.0.0.1', '::1', '169.254.169.254', '10.1.2.3', '::ffff:192.168.1.1', 'fd00::1']) assert.equal(addressAllowed(address, anyPublic, true), false, address);
    assert.equal(addressAllowed('93.184.216.34', anyPublic, true), true);
    assert.equal(addressAllowed('10.1.2.3', parseAllowList('hooks.internal,10.0.0.0/8'), true), true, 'a CIDR entry grants it');
    assert.throws(() => checkCallbackUrl('http://127.0.0.1/x', anyPublic), /not allowed/);
  });

  it('a message published to a topic with three subscribers gives each exactly one invocation; the same message id again adds none', async () => {
    const topics = (await f.api('GET', '/v1/topics')).json as TopicsView;
    assert.deepEqual(topics.topics.find((t) => t.topic === 'orders')?.subscribers, ['sub-a', 'sub-b', 'sub-c']);
    const publish = () => f.request('/v1/topics/orders', { method: 'POST', headers: { 'content-type': 'application/json', 'x-message-id': 'order-1', 'x-custom': 'yes', authorization: 'Bearer not-for-subscribers' }, body: '{"order":1}' });
    const res = await publish();
    assert.equal(res.status, 202);
    const accepted = (await res.json()) as PublishAccepted;
    assert.equal(accepted.messageId, 'order-1');
    assert.deepEqual(accepted.invocations.map((i) => i.function), ['sub-a', 'sub-b', 'sub-c']);
    for (const { id } of accepted.invocations) await waitFor(`${id} to complete`, async () => (await status(id)).status === 'completed', 10_000);
    const again = (await (await publish()).json()) as PublishAccepted;
    assert.deepEqual(again.invocations, accepted.invocations, 'same ids: nothing new queued');
    await new Promise((r) => setTimeout(r, 500));
    for (const { function: name, id } of accepted.invocations) {
      const entries = (await logsOf(name)).filter((e) => e.queue?.mode === 'topic');
      assert.deepEqual(entries.map((e) => e.id), [id], `${name} ran once`);
      const view = await status(id);
      assert.equal(view.mode, 'topic');
      assert.deepEqual(view.result?.body, { topic: 'orders', messageId: 'order-1', trigger: 'topic', body: '{"order":1}', custom: 'yes' });
    }
    const recorded = f.engine.invocations.filter((i) => i.request.headers.some(([k, v]) => k === 'x-fn-message-id' && v === 'order-1'));
    assert.equal(recorded.length, 3);
    assert.ok(recorded.every((i) => !i.request.headers.some(([k]) => k === 'authorization')), "the publisher's credentials stay with snapfn");
  });

  it('a subscriber that throws is retried, then dead-lettered', async () => {
    const accepted = (await (await f.request('/v1/topics/bad', { method: 'POST', body: 'x' })).json()) as PublishAccepted;
    const id = accepted.invocations[0]!.id;
    await waitFor('the dead letter', async () => (await status(id)).status === 'dead', 15_000);
    const states = (await logsOf('sub-bad')).filter((e) => e.id === id).map((e) => e.queue?.state);
    assert.deepEqual(states, ['retrying', 'retrying', 'dead']);
    assert.equal((await status(id)).attempts, 3);
  });

  it('PUT /v1/functions/:name/topics changes the subscriptions (a new version); an unknown topic name is a 400', async () => {
    const res = await f.api('PUT', '/v1/functions/sub-c/topics', { topics: ['invoices'] });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json.active.config.topics, ['invoices']);
    assert.equal(res.json.active.source, 'topics');
    const topics = ((await f.api('GET', '/v1/topics')).json as TopicsView).topics;
    assert.deepEqual(topics.find((t) => t.topic === 'orders')?.subscribers, ['sub-a', 'sub-b']);
    assert.deepEqual(topics.find((t) => t.topic === 'invoices')?.subscribers, ['sub-c']);
    assert.equal((await f.api('PUT', '/v1/functions/sub-c/topics', { topics: ['Bad Name'] })).status, 400);
    assert.equal((await f.request('/v1/topics/Bad%20Name', { method: 'POST' })).status, 400);
    const deleted = await f.api('DELETE', '/v1/functions/sub-c');
    assert.equal(deleted.status, 200);
    assert.equal(((await f.api('GET', '/v1/topics')).json as TopicsView).topics.find((t) => t.topic === 'invoices'), undefined);
  });

  it('the webhook example (docs/examples/webhook) accepts GitHub and Stripe signatures made with its secrets and nothing else', async () => {
    const source = await fs.readFile(new URL('../docs/examples/webhook/index.mjs', import.meta.url), 'utf8');
    await f.deployOk({ name: 'webhook', files: { 'index.mjs': source }, secrets: { GITHUB_WEBHOOK_SECRET: 'gh-secret-123456', STRIPE_WEBHOOK_SECRET: 'whsec_test_abcdef' } });
    const body = '{"action":"opened","type":"charge.succeeded"}';
    const gh = (secret: string) => `sha256=${crypto.createHmac('sha256', secret).update(body).digest('hex')}`;
    const good = await f.request('/fn/webhook', { method: 'POST', body, headers: { 'x-hub-signature-256': gh('gh-secret-123456'), 'x-github-event': 'pull_request' } });
    assert.equal(good.status, 200);
    assert.deepEqual(await good.json(), { received: true, source: 'github', kind: 'pull_request' });
    assert.equal((await f.request('/fn/webhook', { method: 'POST', body, headers: { 'x-hub-signature-256': gh('guessed-secret') } })).status, 401);
    assert.equal((await f.request('/fn/webhook', { method: 'POST', body })).status, 401);
    const stripe = (t: number) => `t=${t},v1=${crypto.createHmac('sha256', 'whsec_test_abcdef').update(`${t}.${body}`).digest('hex')}`;
    const now = Math.floor(Date.now() / 1000);
    const paid = await f.request('/fn/webhook', { method: 'POST', body, headers: { 'stripe-signature': stripe(now) } });
    assert.deepEqual(await paid.json(), { received: true, source: 'stripe', kind: 'charge.succeeded' });
    assert.equal((await f.request('/fn/webhook', { method: 'POST', body, headers: { 'stripe-signature': stripe(now - 3600) } })).status, 401, 'an old one replayed');
  });

  it('reports no unexpected errors', () => {
    assert.deepEqual(f.logged, []);
  });
});
