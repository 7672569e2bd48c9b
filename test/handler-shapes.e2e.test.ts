// The handler shapes people already have, end to end: deployed with the fn
// CLI to a real gateway (startSnapfn, as `npm start` runs it: real gVisor
// sandboxes, its own Redis for schedules) and invoked over HTTP.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { loadConfig } from '../src/config.ts';
import type { InvocationLogEntry } from '../src/schemas/api.ts';
import type { RunningSnapfn } from '../src/snapfn.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FN_BIN = path.join(ROOT, 'wrangler-free-deploy/bin/fn.js');

const WORKERS = `
let startedAt = 0;
let doneAt = null;
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === '/start') {
      startedAt = Date.now();
      doneAt = null;
      ctx.waitUntil(new Promise((resolve) => setTimeout(resolve, 800)).then(() => { doneAt = Date.now(); }));
      return Response.json({ started: true });
    }
    if (url.pathname === '/check') return Response.json({ startedAt, doneAt });
    return Response.json({ path: url.pathname, prefix: request.headers.get('x-forwarded-prefix'), greeting: env.GREETING, token: env.TOKEN === 'shh-workers-secret' ? 'present' : 'absent', fromProcessEnv: process.env.GREETING ?? null });
  },
  async scheduled(controller, env, ctx) {
    console.log('workers scheduled cron=' + controller.cron + ' greeting=' + env.GREETING + ' time=' + typeof controller.scheduledTime);
  },
};
`;

const HONO = `
import { Hono } from 'hono';
const app = new Hono();
app.get('/', (c) => c.text('hono root'));
app.get('/users/:id', (c) => c.json({ id: c.req.param('id'), q: c.req.query('q') ?? null }));
export default app;
`;

const ITTY = `
import { AutoRouter } from 'itty-router';
const router = AutoRouter();
router.get('/hi/:name', ({ params }) => ({ hi: params.name }));
export default router;
`;

const LAMBDA_ESM_CALLBACK = `
export const handler = (event, context, callback) => {
  setTimeout(() => callback(null, {
    statusCode: 201,
    headers: { 'x-shape': 'lambda' },
    cookies: ['a=1; Path=/', 'b=2; Path=/'],
    body: JSON.stringify({
      version: event.version, rawPath: event.rawPath, rawQueryString: event.rawQueryString, q: event.queryStringParameters,
      method: event.requestContext.http.method, cookies: event.cookies ?? null, body: event.body ?? null, isBase64Encoded: event.isBase64Encoded,
      requestId: context.awsRequestId, functionName: context.functionName, memory: context.memoryLimitInMB,
      remainingOk: context.getRemainingTimeInMillis() > 0 && context.getRemainingTimeInMillis() <= 10000,
    }),
  }), 10);
};
`;

const LAMBDA_CJS_ASSET = `
const fs = require('fs');
const path = require('path');
const Mustache = require('mustache');
const page = fs.readFileSync(path.join(__dirname, 'templates', 'page.html'), 'utf8');
exports.handler = async (event) => {
  if (event.source === 'aws.events') {
    console.log('lambda scheduled detail-type=' + event['detail-type']);
    return { ok: true };
  }
  return { statusCode: 200, headers: { 'content-type': 'text/html' }, body: Mustache.render(page, { who: event.queryStringParameters?.who ?? 'nobody' }) };
};
`;

const HOOKS = `
import fs from 'node:fs';
let warmed = 'no';
export function beforeSnapshot() { warmed = 'yes'; }
export function afterRestore() {
  const file = '/tmp/after-restore-count';
  const n = fs.existsSync(file) ? Number(fs.readFileSync(file, 'utf8')) : 0;
  fs.writeFileSync(file, String(n + 1));
}
export default async function () {
  return { count: Number(fs.readFileSync('/tmp/after-restore-count', 'utf8')), warmed, sandbox: Math.random() };
}
`;

const STATEFUL_WORKERS = `
let calls = 0;
export default {
  async fetch(request) {
    calls++;
    const url = new URL(request.url);
    if (url.pathname === '/hang') await new Promise(() => {});
    return Response.json({ calls });
  },
};
`;

const STATEFUL_LAMBDA = `
let calls = 0;
exports.handler = (event, context, callback) => {
  calls++;
  if (event.rawPath === '/hang') return; // never calls back
  callback(null, { calls });
};
`;

const FAILING_HOOK = `
export function afterRestore() { throw new Error('the database is unreachable'); }
export default async () => ({ ok: true });
`;

describe('e2e: handler shapes (Workers, Lambda, snapfn) through the CLI and HTTP', { timeout: 15 * 60_000 }, () => {
  let home: string;
  let work: string;
  let snapfn: RunningSnapfn;
  let url: string;

  const fn = (argv: string[]) => execa('node', [FN_BIN, ...argv], { env: { ...process.env, FN_URL: url, FN_API_KEY: '' }, reject: false, timeout: 5 * 60_000 });
  const write = async (name: string, files: Record<string, string>) => {
    const dir = path.join(work, name);
    for (const [file, text] of Object.entries(files)) {
      await fs.mkdir(path.dirname(path.join(dir, file)), { recursive: true });
      await fs.writeFile(path.join(dir, file), text);
    }
    return dir;
  };
  const deploy = async (name: string, files: Record<string, string>, flags: string[] = []) => {
    const run = await fn(['deploy', await write(name, files), '--name', name, ...flags]);
    assert.equal(run.exitCode, 0, `deploy of ${name}: ${run.stderr}\n${run.stdout}`);
  };
  const logs = async (name: string): Promise<InvocationLogEntry[]> => ((await (await fetch(`${url}/v1/functions/${name}/logs?limit=200`)).json()) as { entries: InvocationLogEntry[] }).entries;
  const until = async (what: string, check: () => Promise<boolean>, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  };

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-shapes-home-'));
    work = await fs.mkdtemp(path.join(ROOT, '.shapes-work-'));
    const { startSnapfn } = await import('../src/snapfn.ts');
    const config = loadConfig({ ...process.env, SNAPFN_HOME: home, PORT: '0', SNAPFN_API_KEY: '', SNAPFN_POOL_SIZE: '0', SNAPFN_MAX_SANDBOXES: '4', SNAPFN_EXAMPLES: '0', SNAPFN_EVAL: '0' });
    snapfn = await startSnapfn({ config, hostname: '127.0.0.1', log: () => {} });
    url = snapfn.url;
  });

  after(async () => {
    await snapfn?.close();
    await fs.rm(work, { recursive: true, force: true });
    await fs.rm(home, { recursive: true, force: true });
  });

  it('a Workers module: fetch gets the path below /fn/<name>, env bindings (vars and secrets), a cron tick calls scheduled()', async () => {
    await deploy('workers', { 'index.js': WORKERS }, ['--env', 'GREETING=hej', '--secret', 'TOKEN=shh-workers-secret', '--schedule', '*/2 * * * * *']);
    try {
      const res = await fetch(`${url}/fn/workers/some/path?x=1`);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { path: '/some/path', prefix: '/fn/workers', greeting: 'hej', token: 'present', fromProcessEnv: 'hej' });
      let line: string | undefined;
      await until('a scheduled() run in the log', async () => {
        line = (await logs('workers')).filter((e) => e.queue?.mode === 'schedule').flatMap((e) => e.logs.map((l) => l.text)).find((t) => t.includes('workers scheduled'));
        return line !== undefined;
      });
      assert.match(line!, /cron=\*\/2 \* \* \* \* \* greeting=hej time=number/);
    } finally {
      await fn(['schedule', 'workers', '--off']);
    }
  });

  it('a Workers module: ctx.waitUntil work finishes after the response, and the sandbox is not paused before it does (keepWarm)', async () => {
    await deploy('waituntil', { 'index.js': WORKERS }, ['--keep-warm']);
    const sent = Date.now();
    const start = await fetch(`${url}/fn/waituntil/start`);
    assert.equal(start.status, 200);
    await start.json();
    const answeredIn = Date.now() - sent;
    assert.ok(answeredIn < 800 + 2000, `the response waited for waitUntil work (${answeredIn} ms)`);
    await new Promise((r) => setTimeout(r, 2500));
    const check = (await (await fetch(`${url}/fn/waituntil/check`)).json()) as { startedAt: number; doneAt: number | null };
    assert.ok(check.startedAt > 0, 'the check ran in another sandbox than the start');
    assert.ok(check.doneAt !== null, 'the waitUntil work never finished');
    // Paused right after the response, its timer would only have fired on the next thaw, ~2.5 s later.
    assert.ok(check.doneAt - check.startedAt < 1800, `the waitUntil work ran ${check.doneAt - check.startedAt} ms after its start: the sandbox was frozen meanwhile`);
  });

  it('a Hono app and an itty-router app as the default export run as Workers modules', async () => {
    await deploy('honoapp', { 'index.ts': HONO, 'package.json': JSON.stringify({ name: 'honoapp', type: 'module', dependencies: { hono: '*' } }) });
    assert.equal(await (await fetch(`${url}/fn/honoapp`)).text(), 'hono root');
    assert.deepEqual(await (await fetch(`${url}/fn/honoapp/users/7?q=z`)).json(), { id: '7', q: 'z' });
    await deploy('ittyapp', { 'index.js': ITTY, 'package.json': JSON.stringify({ name: 'ittyapp', type: 'module', dependencies: { 'itty-router': '*' } }) });
    assert.deepEqual(await (await fetch(`${url}/fn/ittyapp/hi/ada`)).json(), { hi: 'ada' });
  });

  it('a Lambda ESM handler with a callback gets an API Gateway v2 event and a context; its result maps back as API Gateway maps it', async () => {
    await deploy('lambdaesm', { 'index.mjs': LAMBDA_ESM_CALLBACK }, ['--memory', '320']);
    const res = await fetch(`${url}/fn/lambdaesm/orders/9?a=1&a=2&b=x`, { method: 'POST', headers: { 'content-type': 'application/json', cookie: 'sid=abc; theme=dark' }, body: '{"n":1}' });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('x-shape'), 'lambda');
    assert.deepEqual(res.headers.getSetCookie(), ['a=1; Path=/', 'b=2; Path=/']);
    const body = (await res.json()) as Record<string, unknown>;
    const id = res.headers.get('x-fn-invocation-id');
    assert.deepEqual(body, {
      version: '2.0', rawPath: '/orders/9', rawQueryString: 'a=1&a=2&b=x', q: { a: '1,2', b: 'x' },
      method: 'POST', cookies: ['sid=abc', 'theme=dark'], body: '{"n":1}', isBase64Encoded: false,
      requestId: id, functionName: 'lambdaesm', memory: '320', remainingOk: true,
    });
  });

  it('a Lambda CommonJS handler reads an asset through __dirname, renders it with an npm package; a cron tick sends an EventBridge scheduled event', async () => {
    await deploy('lambdacjs', {
      'index.js': LAMBDA_CJS_ASSET,
      'templates/page.html': '<h1>Hello {{who}}</h1>',
      'package.json': JSON.stringify({ name: 'lambdacjs', dependencies: { mustache: '*' } }),
    }, ['--schedule', '*/2 * * * * *']);
    try {
      const res = await fetch(`${url}/fn/lambdacjs?who=Grace`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'text/html');
      assert.equal(await res.text(), '<h1>Hello Grace</h1>');
      await until('an EventBridge scheduled run in the log', async () => (await logs('lambdacjs')).some((e) => e.queue?.mode === 'schedule' && e.logs.some((l) => l.text.includes('detail-type=Scheduled Event'))));
    } finally {
      await fn(['schedule', 'lambdacjs', '--off']);
    }
  });

  it('afterRestore runs once in every restored sandbox and never in the template build; beforeSnapshot runs before the checkpoint', async () => {
    await deploy('hooks', { 'index.js': HOOKS, 'package.json': JSON.stringify({ type: 'module' }) });
    const seen = new Set<number>();
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${url}/fn/hooks`);
      assert.equal(res.status, 200);
      const body = (await res.json()) as { count: number; warmed: string; sandbox: number };
      assert.equal(body.count, 1, 'the counter written by afterRestore');
      assert.equal(body.warmed, 'yes');
      seen.add(body.sandbox);
    }
    assert.equal(seen.size, 3, 'each request ran in a fresh sandbox');
  });

  it('a failing afterRestore fails that sandbox with the reason, not the deploy', async () => {
    await deploy('badhook', { 'index.mjs': FAILING_HOOK });
    const res = await fetch(`${url}/fn/badhook`);
    assert.equal(res.status, 503);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'restore_failed');
    assert.match(body.error.message, /afterRestore failed: the database is unreachable/);
  });

  for (const [shape, source, file] of [['workers', STATEFUL_WORKERS, 'index.mjs'], ['lambda', STATEFUL_LAMBDA, 'index.js']] as const) {
    it(`${shape}: a fresh sandbox per request keeps no state; keepWarm keeps it; a handler past its timeout is a 504`, async () => {
      await deploy(`fresh-${shape}`, { [file]: source }, ['--timeout', '1500']);
      for (let i = 0; i < 2; i++) assert.deepEqual(await (await fetch(`${url}/fn/fresh-${shape}`)).json(), { calls: 1 });
      await deploy(`warm-${shape}`, { [file]: source }, ['--keep-warm']);
      const counts: number[] = [];
      for (let i = 0; i < 3; i++) {
        counts.push(((await (await fetch(`${url}/fn/warm-${shape}`)).json()) as { calls: number }).calls);
        // The sandbox is re-paused after the response: give it a moment to land, as a sequential client would.
        await new Promise((r) => setTimeout(r, 300));
      }
      assert.deepEqual(counts, [1, 2, 3]);
      const started = Date.now();
      const hang = await fetch(`${url}/fn/fresh-${shape}/hang`);
      assert.equal(hang.status, 504);
      assert.equal(((await hang.json()) as { error: { code: string } }).error.code, 'timeout');
      assert.ok(Date.now() - started < 1500 + 5000, 'the timeout was not enforced');
    });
  }

  it('a module whose exports match no shape fails the deploy, naming the shapes it accepts', async () => {
    const run = await fn(['deploy', await write('noshape', { 'index.js': 'module.exports = { notAHandler: 1 };\n' }), '--name', 'noshape']);
    assert.equal(run.exitCode, 1);
    assert.match(run.stderr, /invalid_handler: the module exports no handler .*Workers module.*AWS Lambda/);
  });
});
