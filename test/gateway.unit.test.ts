import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SnapfnError } from '../src/errors.ts';
import { connEnv, GatewayFixture, HELLO, LOCAL } from './helpers/gateway-fixture.ts';
import { SpanRecorder } from './helpers/span-recorder.ts';

const KEY = 'test-api-key-0123456789';

describe('gateway: invoking functions', () => {
  let f: GatewayFixture;
  before(async () => {
    f = await GatewayFixture.create({ maxBodyBytes: 1024 });
    await f.deployOk({ name: 'hello', files: { 'index.js': HELLO } });
    await f.deployOk({
      name: 'echo',
      files: {
        'index.js': `export default async function (request) {
          const body = await request.text();
          return new Response(JSON.stringify({ method: request.method, url: request.url, body, auth: request.headers.get('authorization') }), {
            status: 201, headers: { 'content-type': 'application/json', 'x-custom': 'yes' } });
        }`,
      },
    });
  });
  after(() => f.close());

  it('runs the handler with the query string and answers with its JSON', async () => {
    const res = await f.request('/fn/hello?name=Ada');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { greeting: 'hello Ada' });
    assert.match(res.headers.get('x-fn-invocation-id') ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(res.headers.get('x-fn-version'), '1');
  });

  it('passes method, full URL with sub-path and query, and body as a WireRequest; returns status and headers', async () => {
    const res = await f.request('/fn/echo/a/b?x=1&y=2', { method: 'PUT', body: 'payload' });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('x-custom'), 'yes');
    const json = (await res.json()) as { method: string; url: string; body: string };
    assert.deepEqual({ method: json.method, url: json.url, body: json.body }, { method: 'PUT', url: 'http://localhost/fn/echo/a/b?x=1&y=2', body: 'payload' });
    const wire = f.engine.invocations.at(-1)!.request;
    assert.equal(wire.bodyBase64, Buffer.from('payload').toString('base64'));
    assert.equal(wire.url, 'http://localhost/fn/echo/a/b?x=1&y=2');
  });

  it('404s an unknown function with a JSON error and an invocation id', async () => {
    const res = await f.request('/fn/nope');
    assert.equal(res.status, 404);
    assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'not_found');
    assert.ok(res.headers.get('x-fn-invocation-id'));
    assert.equal(res.headers.get('x-fn-error'), 'not_found');
  });

  it('404s a name that cannot be a function name', async () => {
    const res = await f.request('/fn/Not_A_Name');
    assert.equal(res.status, 404);
  });

  it('413s a body over SNAPFN_MAX_BODY_BYTES (declared length)', async () => {
    const res = await f.request('/fn/echo', { method: 'POST', body: 'x'.repeat(2000) });
    assert.equal(res.status, 413);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'payload_too_large');
    assert.ok(res.headers.get('x-fn-invocation-id'));
  });

  it('413s a chunked body that grows over the limit', async () => {
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 5; i++) controller.enqueue(new TextEncoder().encode('y'.repeat(400)));
        controller.close();
      },
    });
    const res = await f.request('/fn/echo', { method: 'POST', body: stream, duplex: 'half' } as RequestInit);
    assert.equal(res.status, 413);
  });

  it('maps a handler that throws to 502 handler_error', async () => {
    await f.deployOk({ name: 'thrower', files: { 'index.js': 'export default async () => { throw new Error("boom") }' } });
    const res = await f.request('/fn/thrower');
    assert.equal(res.status, 502);
    assert.deepEqual(await res.json(), { error: { code: 'handler_error', message: 'boom' } });
    assert.equal(res.headers.get('x-fn-error'), 'handler_error');
  });

  for (const [code, status] of [
    ['timeout', 504],
    ['sandbox_crashed', 502],
    ['invalid_response', 502],
    ['restore_failed', 503],
  ] as const) {
    it(`maps a ${code} outcome to ${status}`, async () => {
      f.engine.nextOutcome = { ok: false, error: { code, message: `${code} happened` }, logs: [], logsTruncated: false };
      const res = await f.request('/fn/hello');
      assert.equal(res.status, status);
      assert.deepEqual(await res.json(), { error: { code, message: `${code} happened` } });
      assert.ok(res.headers.get('x-fn-invocation-id'));
    });
  }

  it('turns a CapacityError from the engine into 429 with Retry-After', async () => {
    f.engine.overCapacity = true;
    try {
      const res = await f.request('/fn/hello');
      assert.equal(res.status, 429);
      assert.equal(res.headers.get('retry-after'), '3');
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'over_capacity');
    } finally {
      f.engine.overCapacity = false;
    }
  });

  it('passes any SnapfnError from the engine through with its status', async () => {
    f.engine.nextInvokeError = new SnapfnError('shutting_down', 503, 'this node is shutting down');
    const res = await f.request('/fn/hello');
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { error: { code: 'shutting_down', message: 'this node is shutting down' } });
  });

  it('never lets an unexpected exception out as a non-JSON 500', async () => {
    f.engine.nextInvokeError = new TypeError('something internal');
    const res = await f.request('/fn/hello');
    assert.equal(res.status, 500);
    assert.deepEqual(await res.json(), { error: { code: 'internal_error', message: 'internal error; see the gateway log' } });
  });

  it('502s a handler response with a header no HTTP response can carry', async () => {
    f.engine.nextOutcome = { ok: true, response: { status: 200, headers: [['bad header', 'x']], bodyBase64: '' }, logs: [], logsTruncated: false };
    const res = await f.request('/fn/hello');
    assert.equal(res.status, 502);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'invalid_response');
  });

  it('logs every invocation with status, duration and captured output', async () => {
    await f.deployOk({ name: 'chatty', files: { 'index.js': 'export default async () => { console.log("line one"); console.error("oops"); return "ok" }' } });
    const res = await f.request('/fn/chatty/sub?q=1');
    const id = res.headers.get('x-fn-invocation-id');
    const { json } = await f.api('GET', '/v1/functions/chatty/logs');
    const entry = json.entries.at(-1);
    assert.equal(entry.id, id);
    assert.equal(entry.status, 200);
    assert.equal(entry.path, '/fn/chatty/sub');
    assert.equal(typeof entry.durationMs, 'number');
    assert.deepEqual(
      entry.logs.map((l: { stream: string; text: string }) => [l.stream, l.text]),
      [
        ['stdout', 'line one\n'],
        ['stderr', 'oops\n'],
      ],
    );
  });
});

describe('gateway: tracing', () => {
  const recorder = new SpanRecorder();
  let f: GatewayFixture;
  before(async () => {
    recorder.install();
    f = await GatewayFixture.create();
    await f.deployOk({ name: 'hello', files: { 'index.js': HELLO } });
  });
  after(async () => {
    recorder.uninstall();
    await f.close();
  });

  it('wraps each invocation in a "gateway" span with fn.name, fn.version and invocation.id', async () => {
    const res = await f.request('/fn/hello');
    const span = recorder.spans.find((s) => s.name === 'gateway');
    assert.ok(span, 'no gateway span');
    assert.equal(span.tracer, 'snapfn');
    assert.equal(span.attributes['fn.name'], 'hello');
    assert.equal(span.attributes['fn.version'], 1);
    assert.equal(span.attributes['invocation.id'], res.headers.get('x-fn-invocation-id'));
    assert.ok(span.ended);
  });
});

describe('gateway: auth', () => {
  describe('with SNAPFN_API_KEY set', () => {
    let f: GatewayFixture;
    before(async () => {
      f = await GatewayFixture.create({ apiKey: KEY });
    });
    after(() => f.close());

    it('401s /v1 without a key, with WWW-Authenticate', async () => {
      const res = await f.api('GET', '/v1/functions');
      assert.equal(res.status, 401);
      assert.equal(res.json.error.code, 'unauthorized');
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
    });

    it('401s /v1 with a wrong key', async () => {
      const res = await f.api('GET', '/v1/functions', undefined, { key: 'wrong-key-wrong-key' });
      assert.equal(res.status, 401);
      assert.deepEqual(res.json, { error: { code: 'unauthorized', message: 'wrong API key' } });
    });

    it('accepts the right key, from any address', async () => {
      const res = await f.api('GET', '/v1/functions', undefined, { key: KEY, env: connEnv('203.0.113.9') });
      assert.equal(res.status, 200);
    });

    it('protects deploys too', async () => {
      const reply = await f.deploy({ name: 'hello', files: { 'index.js': HELLO } });
      assert.equal(reply.status, 401);
    });

    it('requires the key on /fn/:name only for functions with requireAuth', async () => {
      assert.equal((await f.deploy({ name: 'open', files: { 'index.js': HELLO } }, { key: KEY })).status, 200);
      assert.equal((await f.deploy({ name: 'closed', files: { 'index.js': HELLO }, config: { requireAuth: true } }, { key: KEY })).status, 200);
      assert.equal((await f.request('/fn/open', {}, connEnv('203.0.113.9'))).status, 200);
      const denied = await f.request('/fn/closed', {}, connEnv('203.0.113.9'));
      assert.equal(denied.status, 401);
      assert.ok(denied.headers.get('x-fn-invocation-id'));
      const allowed = await f.request('/fn/closed', { headers: { authorization: `Bearer ${KEY}` } }, connEnv('203.0.113.9'));
      assert.equal(allowed.status, 200);
      // The operator key is not handed to the handler.
      assert.equal(f.engine.invocations.at(-1)!.request.headers.find(([k]) => k === 'authorization'), undefined);
    });
  });

  describe('without SNAPFN_API_KEY', () => {
    let f: GatewayFixture;
    before(async () => {
      f = await GatewayFixture.create();
    });
    after(() => f.close());

    it('accepts IPv4 and IPv6 loopback clients', async () => {
      for (const address of ['127.0.0.1', '::1', '::ffff:127.0.0.1']) {
        assert.equal((await f.api('GET', '/v1/functions', undefined, { env: connEnv(address) })).status, 200, address);
      }
    });

    it('403s other clients', async () => {
      const res = await f.api('GET', '/v1/functions', undefined, { env: connEnv('192.0.2.10') });
      assert.equal(res.status, 403);
      assert.equal(res.json.error.code, 'forbidden');
    });

    it('403s when the peer address is unknown (fails closed)', async () => {
      const res = await f.request('/v1/functions', {}, {} as typeof LOCAL);
      assert.equal(res.status, 403);
    });

    it('403s a local proxy forwarding a remote client', async () => {
      const res = await f.request('/v1/functions', { headers: { 'x-forwarded-for': '198.51.100.7' } });
      assert.equal(res.status, 403);
    });

    it('leaves /healthz open', async () => {
      const res = await f.request('/healthz', {}, connEnv('192.0.2.10'));
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as { ok: boolean }).ok, true);
    });
  });
});

describe('gateway: errors are JSON', () => {
  let f: GatewayFixture;
  before(async () => {
    f = await GatewayFixture.create();
  });
  after(() => f.close());

  it('404s unknown routes as JSON', async () => {
    const res = await f.api('GET', '/v1/nothing-here');
    assert.equal(res.status, 404);
    assert.equal(res.json.error.code, 'not_found');
  });

  it('400s a body that is not JSON', async () => {
    const res = await f.request('/v1/functions', { method: 'POST', body: '{nope' });
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { error: { code: 'invalid_input', message: 'the deploy request is not valid JSON' } });
  });

  it('400s unknown fields with a readable one-line message', async () => {
    const res = await f.api('POST', '/v1/functions', { name: 'x', files: { 'index.js': '' }, colour: 'red' });
    assert.equal(res.status, 400);
    assert.equal(res.json.error.message, 'invalid deploy request: Unrecognized key: "colour"');
  });

  it('400s a bad logs query', async () => {
    await f.deployOk({ name: 'hello', files: { 'index.js': HELLO } });
    const res = await f.api('GET', '/v1/functions/hello/logs?limit=0');
    assert.equal(res.status, 400);
    assert.match(res.json.error.message, /^invalid logs query: limit: /);
  });

  it('serves an OpenAPI document generated from the request schemas', async () => {
    const res = await f.api('GET', '/v1/openapi.json');
    assert.equal(res.status, 200);
    assert.equal(res.json.openapi, '3.0.3');
    assert.ok(res.json.paths['/v1/functions'].post);
    const deploy = res.json.components.schemas.DeployRequest;
    // files, manifest or both: only the name is required by the schema itself.
    assert.deepEqual(deploy.required, ['name']);
    assert.equal(deploy.properties.name.pattern, '^[a-z][a-z0-9-]{0,62}$');
  });
});
