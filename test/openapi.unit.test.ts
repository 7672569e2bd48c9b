// GET /v1/openapi.json is generated from the route declarations: it must be
// a valid OpenAPI document, name every route the app has, and every path it
// names must be served with the answers it documents (real Redis for the
// queue routes, the in-process fake engine, a real template collector).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import SwaggerParser from '@apidevtools/swagger-parser';
// First, as the CLI and the e2e tests do: the shared schemas exist before
// @hono/zod-openapi extends zod, and must still get their component names.
import { ErrorBody } from '../src/schemas/api.ts';
import { createGateway, type GatewayApp } from '../src/gateway/app.ts';
import { ANY_METHODS, isMiddleware } from '../src/gateway/declare.ts';
import { TemplateCollector } from '../src/gc/template-collector.ts';
import { openQueueLayer, type QueueLayer } from '../src/queue-layer.ts';
import { FunctionStore } from '../src/registry/function-store.ts';
import { TemplateStore } from '../src/sandbox/template/template-store.ts';
import { SnapfnMetrics } from '../src/telemetry/snapfn-metrics.ts';
import { HELLO, LOCAL, textFiles } from './helpers/gateway-fixture.ts';
import { FakeEngine } from './helpers/fake-engine.ts';
import { startTestRedis, type TestRedis } from './support/redis.ts';

type Json = Record<string, any>;
type Operation = { path: string; method: string; op: Json };

const BLOB = Buffer.from('blob bytes for the openapi test');
const BLOB_SHA = crypto.createHash('sha256').update(BLOB).digest('hex');

/** A valid body for each JSON body schema the document names (a new one must be added here: the test says so). */
const VALID_BODIES: Record<string, unknown> = {
  DeployRequest: { name: 'hello', files: textFiles({ 'index.js': HELLO }) },
  BlobsMissingRequest: { blobs: [BLOB_SHA] },
  EnvUpdateRequest: { env: { GREETING: 'hi' } },
  RollbackRequest: {},
  ScheduleRequest: { schedule: null },
  TopicsRequest: { topics: ['orders'] },
  GcRequest: { dryRun: true },
  EvalRequest: { language: 'javascript', code: '1 + 1' },
};

/** Values for the path parameters (`id` is set once an async invocation exists). */
const PARAMS: Record<string, string> = { name: 'hello', sha256: BLOB_SHA, topic: 'orders', path: 'sub/path' };
/** Under /console/{path}: a page that exists. */
const CONSOLE_PAGE = 'live';

function operations(doc: Json): Operation[] {
  const out: Operation[] = [];
  for (const [p, item] of Object.entries(doc.paths as Json)) {
    for (const method of ANY_METHODS) if ((item as Json)[method]) out.push({ path: p, method, op: (item as Json)[method] });
  }
  return out;
}

function jsonBodySchemaName(op: Json): string | undefined {
  const ref = op.requestBody?.content?.['application/json']?.schema?.$ref as string | undefined;
  return ref?.split('/').at(-1);
}

/** Hono's path as the document writes it: `:x` is `{x}`, a trailing `*` is `{path}`. */
function documentedForm(honoPath: string): string {
  return honoPath.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\/\*$/, '/{path}');
}

/** The documented path covering `route`: the same template, or a documented `.../{path}` catch-all below which it lies. */
function coveringPath(doc: Json, route: string): string | undefined {
  if (doc.paths[route]) return route;
  if (route === '/*' || route === '*') return undefined;
  return Object.keys(doc.paths).find((p) => p.endsWith('/{path}') && route.startsWith(p.slice(0, -'{path}'.length)));
}

describe('the OpenAPI document', () => {
  let redis: TestRedis;
  let home: string;
  let engine: FakeEngine;
  let store: FunctionStore;
  let queueLayer: QueueLayer;
  let gc: TemplateCollector;
  let app: GatewayApp;
  let doc: Json;
  const logged: string[] = [];

  const request = (url: string, init: RequestInit = {}) => Promise.resolve(app.request(url, init, LOCAL));

  before(async () => {
    redis = await startTestRedis('openapi');
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-openapi-'));
    engine = await FakeEngine.create();
    store = await FunctionStore.open(home);
    const metrics = new SnapfnMetrics({ engineStats: () => engine.stats(), driver: { name: 'fake', platform: 'none' } });
    queueLayer = openQueueLayer({ redisUrl: redis.redis.url, shared: false, engine, store, maxQueuedPerFunction: 1000, metrics, log: (m) => logged.push(m) });
    gc = new TemplateCollector({ templates: new TemplateStore(path.join(home, 'templates')), registry: store, keepVersions: 3, minAgeMs: 0 });
    app = createGateway({
      engine,
      store,
      config: { apiKey: undefined, maxBodyBytes: 1024 * 1024, maxDeployBytes: 20 * 1024 * 1024 },
      queue: queueLayer.functions,
      metrics,
      gc,
      // Every route mounted: eval that cannot start still has its route (503 after validation).
      evalUnavailable: 'no eval template in this test',
      log: (m) => logged.push(m),
    });
    const deployed = await request('/v1/functions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(VALID_BODIES.DeployRequest) });
    assert.match(await deployed.text(), /"type":"result"/);
    const res = await request('/v1/openapi.json');
    assert.equal(res.status, 200);
    doc = (await res.json()) as Json;
  });

  after(async () => {
    await gc.close();
    await queueLayer.close();
    await store.close();
    await engine.close();
    await redis.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  it('is a valid OpenAPI 3.0.3 document (swagger-parser)', async () => {
    assert.equal(doc.openapi, '3.0.3');
    // validate() dereferences in place: give it a copy.
    const api = (await SwaggerParser.validate(structuredClone(doc) as never)) as Json;
    assert.ok(Object.keys(api.paths).length >= 20, `${Object.keys(api.paths).length} paths`);
  });

  it('names the routes the old hand-written document had missed', () => {
    for (const p of ['/v1/eval', '/fn/{name}', '/fn/{name}/{path}', '/metrics', '/healthz', '/v1/docs', '/v1/openapi.json']) assert.ok(doc.paths[p], p);
    for (const method of ANY_METHODS) assert.ok(doc.paths['/fn/{name}'][method], `${method} /fn/{name}`);
    const invoke = doc.paths['/fn/{name}'].post;
    const headers = invoke.parameters.filter((p: Json) => p.in === 'header').map((p: Json) => p.name);
    assert.deepEqual(headers.sort(), ['idempotency-key', 'prefer', 'x-callback-url', 'x-fn-async']);
    for (const status of ['202', '413', '429', '502', '503', '504']) assert.ok(invoke.responses[status], `POST /fn/{name} documents ${status}`);
    assert.ok(invoke.responses['200'].headers['X-Fn-Invocation-Id']);
    assert.ok(invoke.responses['202'].headers['X-Fn-Invocation-Id']);
  });

  it('has a path for every route the app registers', () => {
    const missing: string[] = [];
    let checked = 0;
    for (const route of app.routes) {
      if (isMiddleware(route.handler)) continue;
      checked++;
      const documented = coveringPath(doc, documentedForm(route.path));
      const method = route.method.toLowerCase();
      if (!documented) missing.push(`${route.method} ${route.path}`);
      else if (method !== 'all' && !doc.paths[documented][method]) missing.push(`${route.method} ${route.path} (path ${documented} has no ${method})`);
    }
    assert.deepEqual(missing, []);
    assert.ok(checked > 20, `${checked} routes checked`);
  });

  it('every documented operation answers a valid request with one of its documented statuses, never 404', async (t) => {
    const async = await request('/fn/hello', { headers: { 'x-fn-async': '1' } });
    assert.equal(async.status, 202);
    const params: Record<string, string> = { ...PARAMS, id: ((await async.json()) as { id: string }).id };
    // Deletes last: the other operations need the function.
    const ops = operations(doc).sort((a, b) => Number(a.method === 'delete') - Number(b.method === 'delete'));
    const wrong: string[] = [];
    const answered: string[] = [];
    for (const { path: p, method, op } of ops) {
      const url = p.replace(/{([^}]+)}/g, (_m, name: string) => (p.startsWith('/console/') && name === 'path' ? CONSOLE_PAGE : encodeURI(params[name]!)));
      const init: RequestInit = { method: method.toUpperCase() };
      const schema = jsonBodySchemaName(op);
      if (schema) {
        assert.ok(schema in VALID_BODIES, `a valid ${schema} for ${method} ${p} (add it to VALID_BODIES)`);
        init.body = JSON.stringify(VALID_BODIES[schema]);
        init.headers = { 'content-type': 'application/json' };
      } else if (p.startsWith('/v1/blobs/')) init.body = BLOB;
      else if (op.requestBody && method !== 'get' && method !== 'head') init.body = 'a message';
      const res = await request(url, init);
      await res.arrayBuffer();
      answered.push(`${method.toUpperCase()} ${url} ${res.status}`);
      if (res.status === 404 || !(String(res.status) in op.responses)) wrong.push(`${method.toUpperCase()} ${url}: ${res.status}`);
    }
    t.diagnostic(answered.join('; '));
    assert.deepEqual(wrong, []);
    assert.ok(ops.length > 35, `${ops.length} operations`);
  });

  it('answers an invalid body of every documented body schema with its documented 400 in the one error shape', async () => {
    await request('/v1/functions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(VALID_BODIES.DeployRequest) }).then((r) => r.text());
    const withBody = operations(doc).filter(({ op }) => jsonBodySchemaName(op));
    assert.deepEqual([...new Set(withBody.map(({ op }) => jsonBodySchemaName(op)))].sort(), Object.keys(VALID_BODIES).sort(), 'every body schema is exercised');
    for (const { path: p, method, op } of withBody) {
      const url = p.replace(/{([^}]+)}/g, (_m, name: string) => encodeURI(PARAMS[name]!));
      assert.equal(op.responses['400']?.content['application/json'].schema.$ref, '#/components/schemas/ErrorBody', `${method} ${p} documents its 400`);
      // Of the wrong type for every schema (all are objects), and not JSON at all.
      for (const body of ['["not", "an", "object"]', '{"unterminated": ']) {
        const res = await request(url, { method: method.toUpperCase(), headers: { 'content-type': 'application/json' }, body });
        assert.equal(res.status, 400, `${method} ${p} with ${body}`);
        assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
        const parsed = ErrorBody.safeParse(await res.json());
        assert.ok(parsed.success, `${method} ${p}: the error shape`);
        assert.equal(parsed.data.error.code, 'invalid_input');
        assert.ok(parsed.data.error.message.length > 0);
      }
    }
  });

  it('answers invalid params, query and headers as 400 invalid_input too', async () => {
    const cases: Array<[string, RequestInit]> = [
      ['/v1/functions/hello/logs?limit=0', {}],
      ['/v1/blobs/not-a-digest', { method: 'PUT', body: 'x' }],
      ['/v1/topics/Bad%20Name', { method: 'POST' }],
      ['/v1/topics/orders', { method: 'POST', headers: { 'x-message-id': 'é' } }],
      ['/fn/hello', { headers: { 'x-fn-async': 'maybe' } }],
      ['/fn/hello', { headers: { 'idempotency-key': 'clé' } }],
    ];
    for (const [url, init] of cases) {
      const res = await request(url, init);
      assert.equal(res.status, 400, url);
      const parsed = ErrorBody.parse(await res.json());
      assert.equal(parsed.error.code, 'invalid_input', `${url}: ${parsed.error.message}`);
    }
  });

  it('serves /v1/docs: one HTML page from the document, with no script and nothing from elsewhere', async () => {
    const res = await request('/v1/docs');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    const html = await res.text();
    assert.doesNotMatch(html, /<script|<link|src=|https?:\/\//i);
    for (const { path: p, method } of operations(doc)) assert.ok(html.includes(`${method.toUpperCase()} ${p.replace(/&/g, '&#38;')}`), `${method} ${p} listed`);
    for (const name of Object.keys(doc.components.schemas)) assert.ok(html.includes(`id="schema-${name}"`), `schema ${name}`);
  });

  it('keeps /v1/docs and /v1/openapi.json under the operator guard', async () => {
    const remote = { incoming: { socket: { remoteAddress: '203.0.113.9', remotePort: 40000, remoteFamily: 'IPv4' } } } as never;
    for (const url of ['/v1/docs', '/v1/openapi.json']) assert.equal((await app.request(url, {}, remote)).status, 403, url);
  });

  it('reports no unexpected errors', () => {
    assert.deepEqual(logged.filter((m) => m.includes('unexpected')), []);
  });
});
