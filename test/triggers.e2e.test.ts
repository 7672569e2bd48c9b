// Triggers through the real thing: the gateway of `npm start` (src/main.ts)
// in a child process with real gVisor sandboxes, on a Redis this test owns
// (it outlives the gateway), and a real HTTP receiver. A topic with three
// subscribers keeps every message through a SIGKILL of the gateway right
// after the publishes (nothing lost, nothing doubled), and an async
// invocation with X-Callback-Url calls back once, signed.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SIGNATURE_HEADER, verifyCallback } from '../src/invocation/callbacks/callback-signature.ts';
import { DeployEvent, type InvocationLogEntry, type InvocationView } from '../src/schemas/api.ts';
import type { CallbackPayload, PublishAccepted } from '../src/schemas/invocation.ts';
import { FIXTURES, tempHome } from './support/engine.ts';
import { freePort, spawnGateway, type GatewayProcess } from './support/gateway-process.ts';
import { startTestRedis, waitFor, type TestRedis } from './support/redis.ts';

const SECRET = 'e2e-callback-secret-5f1c2a9b';
const SUBSCRIBERS = ['orders-a', 'orders-b', 'orders-c'];
const MESSAGES = 4;

describe('e2e: topics and callbacks (child gateway, real sandboxes, real Redis)', { timeout: 8 * 60_000 }, () => {
  let redis: TestRedis;
  let home: string;
  let port: number;
  let gateway: GatewayProcess | undefined;
  let files: Record<string, string>;
  const received: Array<{ body: string; signature: string | undefined }> = [];
  let receiver: http.Server;
  let receiverUrl: string;

  const env = () => ({
    SNAPFN_HOME: home,
    REDIS_URL: redis.redis.url,
    SNAPFN_MAX_SANDBOXES: '3',
    SNAPFN_POOL_SIZE: '0',
    SNAPFN_EXAMPLES: '0',
    SNAPFN_EVAL: '0',
    SNAPFN_API_KEY: '',
    SNAPFN_CALLBACK_SECRET: SECRET,
    SNAPFN_CALLBACK_ALLOW: '',
  });
  const url = (route: string) => `${gateway!.url}${route}`;
  const api = async (method: string, route: string, init: { json?: unknown; body?: string; headers?: Record<string, string> } = {}) => {
    const headers = { ...(init.json !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers };
    const res = await fetch(url(route), { method, headers, signal: AbortSignal.timeout(60_000), ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : init.body !== undefined ? { body: init.body } : {}) });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  };
  const logs = async (name: string): Promise<InvocationLogEntry[]> => (await api('GET', `/v1/functions/${name}/logs?limit=1000`)).json.entries;

  before(async () => {
    redis = await startTestRedis('e2e-triggers');
    home = await tempHome('e2e-triggers');
    port = await freePort();
    files = { 'index.mjs': (await fs.readFile(path.join(FIXTURES, 'topic-echo.mjs'))).toString('base64') };
    receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        received.push({ body, signature: req.headers[SIGNATURE_HEADER] as string | undefined });
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    gateway = await spawnGateway(env(), port);
    for (const name of SUBSCRIBERS) {
      const res = await fetch(url('/v1/functions'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, files, config: { topics: ['orders'] } }), signal: AbortSignal.timeout(240_000) });
      const text = await res.text();
      assert.equal(DeployEvent.parse(JSON.parse(text.trim().split('\n').at(-1)!)).type, 'result', text);
    }
  });

  after(async () => {
    await gateway?.stop(60_000);
    await new Promise((r) => receiver?.close(r));
    await redis?.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  test('every message reaches each of three subscribers exactly once, across a SIGKILL of the gateway right after publishing', async () => {
    const published: PublishAccepted[] = [];
    for (let i = 0; i < MESSAGES; i++) {
      const res = await api('POST', '/v1/topics/orders', { body: `{"order":${i}}`, headers: { 'content-type': 'application/json', 'x-message-id': `order-${i}` } });
      assert.equal(res.status, 202, JSON.stringify(res.json));
      published.push(res.json as PublishAccepted);
    }
    await gateway!.crash();
    gateway = await spawnGateway(env(), port);
    // The client publishes the last message again, as it would after losing the answer: no new invocation.
    const again = await api('POST', '/v1/topics/orders', { body: `{"order":${MESSAGES - 1}}`, headers: { 'content-type': 'application/json', 'x-message-id': `order-${MESSAGES - 1}` } });
    assert.deepEqual(again.json.invocations, published.at(-1)!.invocations);

    const expected = new Map<string, Set<string>>(SUBSCRIBERS.map((name) => [name, new Set(published.map((p) => p.invocations.find((i) => i.function === name)!.id))]));
    const completed = async (name: string) => (await logs(name)).filter((e) => e.queue?.mode === 'topic' && e.queue.state === 'completed');
    // A job the SIGKILL caught running is taken again once its lock expires (10 s + the stalled check).
    await waitFor('every subscriber to have every message', async () => (await Promise.all(SUBSCRIBERS.map(completed))).every((entries) => entries.length >= MESSAGES), 240_000, 1000);
    await new Promise((r) => setTimeout(r, 3000));
    for (const name of SUBSCRIBERS) {
      const ids = (await completed(name)).map((e) => e.id);
      assert.deepEqual(new Set(ids), expected.get(name), `${name}: the published invocations`);
      assert.equal(ids.length, MESSAGES, `${name}: none twice`);
      for (const id of ids) {
        const view = (await api('GET', `/v1/invocations/${id}`)).json as InvocationView;
        const body = view.result?.body as { trigger: string; topic: string; messageId: string; body: string };
        assert.deepEqual({ trigger: body.trigger, topic: body.topic }, { trigger: 'topic', topic: 'orders' });
        assert.equal(body.body, `{"order":${body.messageId.split('-')[1]}}`);
      }
    }
  });

  test('an async invocation with X-Callback-Url calls back once, signed, with the handler response', async () => {
    const res = await fetch(url('/fn/orders-a?x=1'), { method: 'POST', headers: { 'x-fn-async': '1', 'x-callback-url': receiverUrl }, body: 'hello callback', signal: AbortSignal.timeout(30_000) });
    assert.equal(res.status, 202);
    const { id } = (await res.json()) as { id: string };
    await waitFor('the callback', () => received.some((r) => JSON.parse(r.body).id === id), 120_000, 200);
    await new Promise((r) => setTimeout(r, 1500));
    const mine = received.filter((r) => JSON.parse(r.body).id === id);
    assert.equal(mine.length, 1);
    assert.ok(verifyCallback(SECRET, mine[0]!.body, mine[0]!.signature), 'signed with SNAPFN_CALLBACK_SECRET');
    const payload = JSON.parse(mine[0]!.body) as CallbackPayload;
    assert.equal(payload.outcome, 'completed');
    assert.equal(payload.status, 200);
    const body = JSON.parse(Buffer.from(payload.bodyBase64!, 'base64').toString()) as { trigger: string; body: string };
    assert.deepEqual({ trigger: body.trigger, body: body.body }, { trigger: 'http', body: 'hello callback' });
    const view = (await api('GET', `/v1/invocations/${id}`)).json as InvocationView;
    assert.equal(view.callback?.state, 'delivered');
    const refused = await fetch(url('/fn/orders-a'), { method: 'POST', headers: { 'x-fn-async': '1', 'x-callback-url': 'http://169.254.169.254/latest' }, signal: AbortSignal.timeout(30_000) });
    assert.equal(refused.status, 400);
  });
});
