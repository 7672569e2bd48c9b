import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sessionToken, validSession, safeNext } from '../src/console/auth.ts';
import { shapeOfSource } from '../src/console/handler-shape.ts';
import { InvocationSeries } from '../src/console/time-series.ts';
import { weightedPercentile } from '../src/console/percentile.ts';
import { connEnv, GatewayFixture, HELLO, LOCAL } from './helpers/gateway-fixture.ts';

/* The console's logic on the fake engine; test/console.e2e.test.ts drives it in a browser on real sandboxes. */

const SECRET = 'console-unit-secret-9d1c';
const LOGS_SECRET = `export default async function (request) {
  console.log('token is ' + process.env.TOKEN);
  if (new URL(request.url).searchParams.get('fail')) throw new Error('failed with ' + process.env.TOKEN);
  return { ok: true };
}
`;

describe('console: loopback mode (no API key)', () => {
  let f: GatewayFixture;
  const local = { host: '127.0.0.1:8080' };
  before(async () => {
    f = await GatewayFixture.create({ metrics: true });
    await f.deployOk({ name: 'hello', files: { 'index.js': HELLO } });
    await f.deployOk({ name: 'leaky', files: { 'index.js': LOGS_SECRET }, secrets: { TOKEN: SECRET }, env: { REGION: 'eu' } });
    await f.deployOk({ name: 'leaky', files: { 'index.js': `${LOGS_SECRET}// v2\n` }, secrets: { TOKEN: SECRET }, env: { REGION: 'eu' } });
    for (const q of ['', '?fail=1']) await (await f.request(`/fn/leaky${q}`)).text();
    await (await f.request('/fn/hello')).text();
  });
  after(() => f.close());

  const page = (path: string, init: RequestInit = {}, env = LOCAL) => f.request(`http://127.0.0.1:8080${path}`, { ...init, headers: { ...local, ...(init.headers as Record<string, string>) } }, env);

  it('serves every page to a local peer, with a CSP and no secret value anywhere', async () => {
    const list = await (await page('/console/invocations?function=leaky')).text();
    const detail = /href="(\/console\/invocations\/leaky\/[^"]+)"/.exec(list)?.[1];
    assert.ok(detail, list);
    for (const path of ['/console', '/console/functions/leaky', '/console/functions/leaky/charts', '/console/invocations', detail, '/console/live', '/console/live/panel', '/console/eval', '/console/functions/leaky/rollback?version=1']) {
      const res = await page(path);
      const text = await res.text();
      assert.equal(res.status, 200, `${path}: ${text}`);
      assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
      assert.ok(!text.includes(SECRET), `${path} shows the secret`);
    }
    const fn = await (await page('/console/functions/leaky')).text();
    assert.ok(fn.includes('<code class="name">TOKEN</code>'), 'the secret name is shown');
    assert.ok(fn.includes('<code class="name">REGION</code>'), 'the env var name is shown');
    assert.ok(!fn.includes('>eu<'), 'env values are not shown either');
  });

  it('shows a failure with its error, stack and redacted logs', async () => {
    const list = await (await page('/console/invocations?function=leaky&outcome=error')).text();
    const detail = /href="(\/console\/invocations\/leaky\/[^"]+)"/.exec(list)?.[1];
    const text = await (await page(detail!)).text();
    assert.match(text, /handler_error/);
    assert.match(text, /failed with \[redacted\]/);
    assert.match(text, /token is \[redacted\]/);
  });

  it('refuses remote peers, proxied requests and non-loopback Host names (DNS rebinding)', async () => {
    assert.equal((await page('/console', {}, connEnv('10.1.2.3'))).status, 403);
    assert.equal((await page('/console', { headers: { 'x-forwarded-for': '1.2.3.4' } })).status, 403);
    const rebound = await f.request('http://evil.example:8080/console', { headers: { host: 'evil.example:8080' } }, LOCAL);
    assert.equal(rebound.status, 403);
  });

  it('rolls back only on a same-origin form post', async () => {
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const refused: Array<Record<string, string>> = [{}, { origin: 'http://evil.example' }, { referer: 'http://evil.example/x' }, { origin: 'http://127.0.0.1:8080', 'sec-fetch-site': 'cross-site' }];
    for (const headers of refused) {
      const res = await page('/console/functions/leaky/rollback', { method: 'POST', headers: { ...form, ...headers }, body: 'version=1' });
      assert.equal(res.status, 403, JSON.stringify(headers));
    }
    assert.equal((await f.store.get('leaky'))?.active, 2);
    const ok = await page('/console/functions/leaky/rollback', { method: 'POST', headers: { ...form, origin: 'http://127.0.0.1:8080' }, body: 'version=1' });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get('location'), '/console/functions/leaky?rolledBack=1');
    assert.equal((await f.store.get('leaky'))?.active, 1);
  });

  it('answers unknown pages and functions with an HTML 404', async () => {
    const res = await page('/console/functions/nope');
    assert.equal(res.status, 404);
    assert.match(res.headers.get('content-type') ?? '', /text\/html/);
  });
});

describe('console: with an API key', () => {
  const KEY = 'console-unit-key-52b7';
  let f: GatewayFixture;
  before(async () => {
    f = await GatewayFixture.create({ apiKey: KEY, metrics: true });
  });
  after(() => f.close());
  const page = (path: string, init: RequestInit = {}) => f.request(`http://gw.example${path}`, { ...init, headers: { host: 'gw.example', ...(init.headers as Record<string, string>) } }, connEnv('10.1.2.3'));

  it('sends a browser without a session to the login form and refuses fragments and posts', async () => {
    const res = await page('/console/functions?x=1', { redirect: 'manual' });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/console/login?next=%2Fconsole%2Ffunctions%3Fx%3D1');
    assert.equal((await page('/console/live/panel', { headers: { 'x-console-fragment': '1' } })).status, 401);
    const post = await page('/console/functions/x/rollback', { method: 'POST', headers: { origin: 'http://gw.example', 'content-type': 'application/x-www-form-urlencoded' }, body: 'version=1' });
    assert.equal(post.status, 401);
  });

  it('signs in with the key in the body, into an HttpOnly SameSite=Strict cookie that is not the key', async () => {
    const form = { 'content-type': 'application/x-www-form-urlencoded', origin: 'http://gw.example' };
    const wrong = await page('/console/login', { method: 'POST', headers: form, body: 'key=nope&next=%2Fconsole' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers.get('set-cookie'), null);
    const res = await page('/console/login', { method: 'POST', headers: form, body: `key=${KEY}&next=%2Fconsole%2Flive`, redirect: 'manual' });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/console/live');
    const cookie = res.headers.get('set-cookie') ?? '';
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    assert.ok(!cookie.includes(KEY));
    const session = cookie.split(';')[0]!;
    assert.equal((await page('/console/live', { headers: { cookie: session } })).status, 200);
    assert.equal((await page('/console/live', { headers: { cookie: 'snapfn_console=1.abc' }, redirect: 'manual' })).status, 303);
    assert.equal((await page('/console', { headers: { authorization: `Bearer ${KEY}` } })).status, 200);
  });

  it('only redirects to console paths after signing in', () => {
    assert.equal(safeNext('https://evil.example/'), '/console');
    assert.equal(safeNext('//evil.example/console'), '/console');
    assert.equal(safeNext('/console/live'), '/console/live');
    assert.equal(safeNext('/consoleevil'), '/console');
  });

  it('sessions expire and are bound to the key', () => {
    const token = sessionToken(KEY, 0);
    assert.ok(validSession(KEY, token, 1000));
    assert.ok(!validSession('other-key', token, 1000));
    assert.ok(!validSession(KEY, token, 13 * 3600_000));
  });
});

describe('console: time series', () => {
  it('counts per minute by outcome and keeps latency by path, bounded', () => {
    let now = 10 * 60_000;
    const series = new InvocationSeries({ minutes: 5, samplesPerMinute: 8, now: () => now });
    const timings = (source: 'pool' | 'keep-warm' | 'restore') => ({ acquireMs: 0, restoreMs: source === 'restore' ? 600 : 0, handlerMs: 5, source });
    for (let i = 0; i < 100; i++) series.record({ fn: 'a', outcome: 'ok', totalMs: 10 + (i % 10), timings: timings('pool'), queued: false });
    series.record({ fn: 'a', outcome: 'handler_error', totalMs: 700, timings: timings('restore'), queued: false });
    series.record({ fn: 'a', outcome: 'ok', totalMs: 50, timings: timings('keep-warm'), queued: true });
    series.record({ fn: 'a', outcome: 'queue_full', totalMs: 1, queued: false });
    const [point] = series.minutes('a').slice(-1);
    assert.deepEqual(point!.outcomes, { ok: 101, handler_error: 1, queue_full: 1 });
    assert.equal(point!.latency.pool?.count, 100);
    assert.equal(point!.latency.queued?.p50, 50);
    assert.equal(point!.restore?.p50, 600);
    const hour = series.summary('a');
    assert.equal(hour.invocations, 103);
    assert.equal(hour.errors, 2);
    now += 10 * 60_000;
    assert.equal(series.summary('a').invocations, 0, 'minutes older than the window are gone');
    assert.equal(series.minutes('a').length, 5);
  });

  it('weights kept samples by what they stand for', () => {
    assert.equal(weightedPercentile([{ value: 1, weight: 99 }, { value: 100, weight: 1 }], 0.5), 1);
    assert.equal(weightedPercentile([{ value: 1, weight: 1 }, { value: 100, weight: 99 }], 0.5), 100);
  });
});

describe('console: handler shape from the source', () => {
  it('reads the three shapes as envd would decide them', () => {
    assert.equal(shapeOfSource('export default async function (request) { return 1 }', undefined), 'snapfn');
    assert.equal(shapeOfSource('export default { async fetch(request, env) { return new Response("x") } }', undefined), 'workers');
    assert.equal(shapeOfSource('import { Hono } from "hono";\nconst app = new Hono();\nexport default app;', undefined), 'workers');
    assert.equal(shapeOfSource('var index_default = {\n  async fetch(r) {}\n};\nexport {\n  index_default as default\n};', undefined), 'workers');
    assert.equal(shapeOfSource('async function index_default(request) {}\nexport {\n  index_default as default\n};', undefined), 'snapfn');
    assert.equal(shapeOfSource('exports.handler = async (event, context) => ({ statusCode: 200 })', undefined), 'lambda');
    assert.equal(shapeOfSource('export function run(event) {}', 'run'), 'lambda');
    assert.equal(shapeOfSource('export default makeHandler();', undefined), 'unknown');
  });
});
