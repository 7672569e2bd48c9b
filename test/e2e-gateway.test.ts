import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { execa } from 'execa';
import { loadConfig } from '../src/config.ts';
import { DeployEvent, FunctionList, FunctionView, LogsResponse, VersionList } from '../src/schemas/api.ts';
import type { RunningSnapfn } from '../src/snapfn.ts';

/*
 * End to end through the real engine (gVisor): the gateway is started by
 * the same startSnapfn() that `npm start` runs, on a random port with a
 * temporary SNAPFN_HOME, and driven over HTTP and through bin/fn.js.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ENGINE_ENTRY = path.join(ROOT, 'src/orchestrator/index.ts');
const FN_BIN = path.join(ROOT, 'wrangler-free-deploy/bin/fn.js');
const SECRET = 'e2e-secret-3c9f1a7b5d2e';
const skip = existsSync(ENGINE_ENTRY) ? false : 'src/orchestrator/index.ts does not exist yet: the real engine has not landed, so there is nothing to test end to end';

const handlerSource = (label: string) => `export default async function (request) {
  const url = new URL(request.url);
  console.log('e2e ${label} ' + url.pathname);
  return { label: ${JSON.stringify(label)}, name: url.searchParams.get('name'), region: process.env.REGION ?? null, token: process.env.TOKEN ? 'present' : 'absent' };
}
`;

async function writeHandler(dir: string, source: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'index.js'), source);
  return dir;
}

describe('e2e: gateway + real engine', { skip, timeout: 15 * 60_000 }, () => {
  let home: string;
  let work: string;
  let snapfn: RunningSnapfn;
  let url: string;
  const apiTexts: string[] = [];

  const start = async () => {
    const { startSnapfn } = await import('../src/snapfn.ts');
    const config = loadConfig({ ...process.env, SNAPFN_HOME: home, PORT: '0', SNAPFN_API_KEY: '', SNAPFN_POOL_SIZE: '0', SNAPFN_MAX_SANDBOXES: '4' });
    snapfn = await startSnapfn({ config, hostname: '127.0.0.1', log: () => {} });
    url = snapfn.url;
  };
  const fn = (argv: string[]) => execa('node', [FN_BIN, ...argv], { env: { ...process.env, FN_URL: url, FN_API_KEY: '' }, reject: false, timeout: 5 * 60_000 });
  const api = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(`${url}${route}`, { method, ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }) });
    const text = await res.text();
    apiTexts.push(text);
    return { status: res.status, json: text ? JSON.parse(text) : undefined, headers: res.headers };
  };

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-e2e-home-'));
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-e2e-work-'));
    await start();
  });

  after(async () => {
    await snapfn?.close();
    await fs.rm(work, { recursive: true, force: true });
    await fs.rm(home, { recursive: true, force: true });
  });

  it('deployed the examples at startup and they answer', async () => {
    assert.deepEqual(snapfn.examples.map((e) => [e.name, e.error ?? 'ok']), [
      ['hello', 'ok'],
      ['json-api', 'ok'],
      ['lambda-page', 'ok'],
      ['markdown', 'ok'],
      ['workers-greeter', 'ok'],
    ]);
    const hello = await fetch(`${url}/fn/hello?name=Ada`);
    assert.equal(hello.status, 200);
    assert.equal(((await hello.json()) as { message: string }).message, 'Hello, Ada!');
    assert.ok(hello.headers.get('x-fn-invocation-id'));

    const order = await fetch(`${url}/fn/json-api`, { method: 'POST', body: JSON.stringify({ item: 'tea', quantity: 3, unitPriceCents: 250 }) });
    assert.equal(order.status, 200);
    assert.equal(((await order.json()) as { totalCents: number }).totalCents, 750);
    const invalid = await fetch(`${url}/fn/json-api`, { method: 'POST', body: JSON.stringify({ item: '', quantity: 0 }) });
    assert.equal(invalid.status, 400);

    const md = await fetch(`${url}/fn/markdown`, { method: 'POST', body: '# Title\n\n*em*' });
    assert.equal(md.status, 200);
    assert.match(md.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(await md.text(), /<h1>Title<\/h1>[\s\S]*<em>em<\/em>/);

    const greeter = await fetch(`${url}/fn/workers-greeter?name=Ada`);
    assert.equal(greeter.status, 200);
    assert.deepEqual(await greeter.json(), { message: 'Hello, Ada!', runtime: 'workers' });

    const page = await fetch(`${url}/fn/lambda-page?name=Ada`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(await page.text(), /<h1>Hello, Ada!<\/h1>/);
  });

  it('deploys over HTTP with NDJSON progress, env vars and a secret', async () => {
    const files = { 'index.js': Buffer.from(handlerSource('one')).toString('base64') };
    const res = await fetch(`${url}/v1/functions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'e2e', files, env: { REGION: 'eu' }, secrets: { TOKEN: SECRET } }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /application\/x-ndjson/);
    const text = await res.text();
    apiTexts.push(text);
    const events = text.trim().split('\n').map((l) => DeployEvent.parse(JSON.parse(l)));
    assert.ok(events.some((e) => e.type === 'progress' && e.step === 'checkpoint'), text);
    const last = events.at(-1)!;
    assert.equal(last.type, 'result', text);

    const invoked = await fetch(`${url}/fn/e2e/path?name=x`);
    assert.deepEqual(await invoked.json(), { label: 'one', name: 'x', region: 'eu', token: 'present' });
  });

  it('deploys a second version through the CLI and invokes it through the CLI', async () => {
    const dir = await writeHandler(path.join(work, 'e2e'), handlerSource('two'));
    const deployed = await fn(['deploy', dir, '--env', 'REGION=us', '--secret', `TOKEN=${SECRET}`]);
    assert.equal(deployed.exitCode, 0, deployed.stderr);
    // Progress on stderr, the result on stdout.
    assert.match(deployed.stderr, /checkpointing/);
    assert.match(deployed.stdout, /^deployed e2e v2 /);
    const invoked = await fn(['invoke', 'e2e', '--path', '?name=cli']);
    assert.equal(invoked.exitCode, 0, invoked.stderr);
    assert.deepEqual(JSON.parse(invoked.stdout), { label: 'two', name: 'cli', region: 'us', token: 'present' });
  });

  it('lists functions over HTTP and the CLI', async () => {
    const list = FunctionList.parse((await api('GET', '/v1/functions')).json);
    assert.deepEqual(list.functions.map((f) => f.name), ['e2e', 'hello', 'json-api', 'lambda-page', 'markdown', 'workers-greeter']);
    const ls = await fn(['ls']);
    assert.match(ls.stdout, /\ne2e +v2 /);
  });

  it('keeps the invocation log with handler output', async () => {
    const logs = LogsResponse.parse((await api('GET', '/v1/functions/e2e/logs?limit=10')).json);
    const texts = logs.entries.flatMap((e) => e.logs.map((l) => l.text));
    assert.ok(texts.some((t) => t.includes('e2e two /fn/e2e')), JSON.stringify(texts));
    const cli = await fn(['logs', 'e2e', '-n', '5']);
    assert.match(cli.stdout, /\| e2e two \/fn\/e2e/);
  });

  it('keeps serving the previous version when a deploy fails in the sandbox', async () => {
    // Throws while envd imports it: bundles fine, fails the template build.
    const dir = await writeHandler(path.join(work, 'broken'), "throw new Error('fails at import');\nexport default () => 1;\n");
    const deployed = await fn(['deploy', dir, '--name', 'e2e']);
    assert.equal(deployed.exitCode, 1);
    // The last line, after the progress lines.
    assert.match(deployed.stderr, /\nfn: deploy of e2e failed: template_build_failed: [^\n]*$/);
    const res = await fetch(`${url}/fn/e2e`);
    assert.equal(res.headers.get('x-fn-version'), '2');
    assert.equal(((await res.json()) as { label: string }).label, 'two');
  });

  it('rolls back through the CLI and over HTTP', async () => {
    const back = await fn(['rollback', 'e2e']);
    assert.equal(back.exitCode, 0, back.stderr);
    assert.equal(((await (await fetch(`${url}/fn/e2e`)).json()) as { label: string }).label, 'one');
    const forward = FunctionView.parse((await api('POST', '/v1/functions/e2e/rollback', { version: 2 })).json);
    assert.equal(forward.activeVersion, 2);
    assert.equal(((await (await fetch(`${url}/fn/e2e`)).json()) as { label: string }).label, 'two');
  });

  it('changes env vars and secrets without rebuilding the template', async () => {
    const updated = FunctionView.parse((await api('PUT', '/v1/functions/e2e/env', { env: { REGION: 'ap' }, secrets: { TOKEN: null } })).json);
    const versions = VersionList.parse((await api('GET', '/v1/functions/e2e/versions')).json).versions;
    const base = versions.find((v) => v.version === 2)!;
    assert.equal(updated.active?.templateId, base.templateId);
    assert.deepEqual(await (await fetch(`${url}/fn/e2e`)).json(), { label: 'two', name: null, region: 'ap', token: 'absent' });
    const cli = await fn(['env', 'e2e', '--secret', `TOKEN=${SECRET}`]);
    assert.equal(cli.exitCode, 0, cli.stderr);
    assert.equal(((await (await fetch(`${url}/fn/e2e`)).json()) as { token: string }).token, 'present');
  });

  it('never shows the secret in API responses or stores it outside secrets.json', async () => {
    for (const text of apiTexts) assert.ok(!text.includes(SECRET));
    const { stdout } = await execa('grep', ['-rlF', '--', SECRET, home], { reject: false });
    const holders = stdout.split('\n').filter(Boolean).map((f) => path.relative(home, f));
    assert.deepEqual(holders, ['functions/e2e/secrets.json']);
  });

  it('re-activates functions after a restart, without redeploying unchanged examples', async () => {
    await snapfn.close();
    await start();
    assert.ok(snapfn.examples.every((e) => e.unchanged), JSON.stringify(snapfn.examples));
    const res = await fetch(`${url}/fn/e2e`);
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { region: string }).region, 'ap');
  });

  it('removes functions through the CLI and over HTTP', async () => {
    const removed = await fn(['rm', 'e2e']);
    assert.equal(removed.exitCode, 0, removed.stderr);
    assert.equal((await fetch(`${url}/fn/e2e`)).status, 404);
    assert.equal((await api('GET', '/v1/functions/e2e')).status, 404);
    assert.deepEqual((await api('DELETE', '/v1/functions/markdown')).json, { deleted: true, name: 'markdown' });
    assert.equal((await fetch(`${url}/fn/markdown`)).status, 404);
    // Sandboxes are destroyed in the background after each invocation.
    for (let i = 0; i < 100 && snapfn.engine.stats().liveSandboxes > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(snapfn.engine.stats().liveSandboxes, 0);
  });
});
