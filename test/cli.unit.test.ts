import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { execa } from 'execa';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';
import { FunctionStore } from '../src/registry/function-store.ts';
import { FunctionView } from '../src/schemas/api.ts';
import { runCli } from './helpers/cli-harness.ts';
import { FakeEngine } from './helpers/fake-engine.ts';
import { freePort } from '../src/queue/free-port.ts';

const FN_BIN = fileURLToPath(new URL('../wrangler-free-deploy/bin/fn.js', import.meta.url));
const KEY = 'cli-test-key-0123456789';

const oneLineError = (stderr: string) => {
  assert.equal(stderr.split('\n').filter(Boolean).length, 1, `expected one stderr line, got: ${stderr}`);
  assert.match(stderr, /^fn: /);
};

describe('fn CLI against a gateway (fake engine)', () => {
  let home: string;
  let work: string;
  let engine: FakeEngine;
  let store: FunctionStore;
  let gateway: RunningGateway;
  let env: NodeJS.ProcessEnv;
  const write = async (rel: string, text: string) => {
    await fs.mkdir(path.dirname(path.join(work, rel)), { recursive: true });
    await fs.writeFile(path.join(work, rel), text);
  };

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-cli-home-'));
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-cli-work-'));
    engine = await FakeEngine.create();
    store = await FunctionStore.open(home);
    gateway = await startGateway({ engine, store, config: { apiKey: KEY, maxBodyBytes: 4096, maxDeployBytes: 4 << 20 }, port: 0, hostname: '127.0.0.1' });
    env = { FN_URL: gateway.url, FN_API_KEY: KEY };
    await write('greet/index.js', "export default async (req) => { const u = new URL(req.url); console.log('hi from ' + u.pathname); return { name: u.searchParams.get('name'), method: req.method, path: u.pathname, body: req.method === 'GET' ? null : await req.text(), secret: process.env.TOKEN ? 'set' : 'unset' }; };\n");
    await write('greet/.git/HEAD', 'ref');
    await write('picky/index.js', "export default async (req) => new Response('nope', { status: 418 });\n");
    await write('nodefault/index.js', 'export const x = 1;\n');
    await write('body.txt', 'plain text body');
  });

  after(async () => {
    await store.close();
    await gateway.close({ graceMs: 100 });
    await engine.close();
    await fs.rm(home, { recursive: true, force: true });
    await fs.rm(work, { recursive: true, force: true });
  });

  it('deploy prints progress on stderr as it uploads and the build streams, then the URL on stdout', async () => {
    const run = await runCli(['deploy', 'greet', '--env', 'MODE=x', '--secret', 'TOKEN', '--timeout', '3000', '--keep-warm'], { env: { ...env, TOKEN: 'from-my-env-123' }, cwd: work });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /^deploying greet from .*greet \(1 files, \d+ B\)\n {2}uploading 1 of 1 blobs \(\d+ B\)\n {2}uploaded 1 blobs \(\d+ B\)\n/);
    assert.match(run.stderr, /\n {2}booting a sandbox with the handler\n/);
    assert.match(run.stderr, /\n {2}activated v1\n$/);
    assert.match(run.stdout, new RegExp(`^deployed greet v1 -> ${gateway.url}/fn/greet`));
    assert.match(run.stdout, /keep-warm, env: MODE, secrets: TOKEN/);
    const fn = await store.serving('greet');
    assert.equal(fn?.version.config.timeoutMs, 3000);
    assert.equal(fn?.deployment.env.TOKEN, 'from-my-env-123');
  });

  it('deploy --json prints only the function as JSON, with the bytes it uploaded', async () => {
    const run = await runCli(['deploy', path.join(work, 'greet'), '--name', 'greet2', '--json'], { env });
    assert.equal(run.code, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    const fn = FunctionView.parse(out);
    assert.equal(fn.name, 'greet2');
    // Same contents as greet: the gateway already has the blob.
    assert.deepEqual([out.uploadedBlobs, out.uploadedBytes], [0, 0]);
    assert.match(run.stderr, /\n {2}the gateway has all 1 blobs already: nothing to upload\n/);
  });

  it('deploy reports the server error code as its last line', async () => {
    const run = await runCli(['deploy', 'nodefault'], { env, cwd: work });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /\nfn: invalid_handler: index\.js exports no handler: [^\n]*\n$/);
  });

  it('deploy validates flags with the API schemas before uploading', async () => {
    for (const args of [['--timeout', '5'], ['--network', 'wifi'], ['--memory', 'lots'], ['--env', 'NOEQUALS'], ['--name', 'Bad_Name']]) {
      const run = await runCli(['deploy', 'greet', ...args], { env, cwd: work });
      assert.equal(run.code, 2, args.join(' '));
      oneLineError(run.stderr);
    }
  });

  it('invoke prints the body; --data, --path and --method are passed through', async () => {
    const get = await runCli(['invoke', 'greet', '--path', '/sub?name=Ada'], { env });
    assert.equal(get.code, 0, get.stderr);
    assert.deepEqual(JSON.parse(get.stdout), { name: 'Ada', method: 'GET', path: '/fn/greet/sub', body: null, secret: 'set' });
    const post = await runCli(['invoke', 'greet', '--data', '{"a":1}'], { env });
    assert.equal(JSON.parse(post.stdout).body, '{"a":1}');
    const put = await runCli(['invoke', 'greet', '--data', '@body.txt', '--method', 'put'], { env, cwd: work });
    assert.deepEqual([JSON.parse(put.stdout).method, JSON.parse(put.stdout).body], ['PUT', 'plain text body']);
    const stdin = await runCli(['invoke', 'greet', '--data', '@-'], { env, stdin: 'from stdin' });
    assert.equal(JSON.parse(stdin.stdout).body, 'from stdin');
  });

  it('invoke --json shows status, headers and the invocation id', async () => {
    const run = await runCli(['invoke', 'greet', '--json'], { env });
    const out = JSON.parse(run.stdout);
    assert.equal(out.status, 200);
    assert.match(out.invocationId, /^[0-9a-f-]{36}$/);
  });

  it('invoke fails (exit 1, one line) for a handler 4xx, after printing its body', async () => {
    await runCli(['deploy', 'picky'], { env, cwd: work });
    const run = await runCli(['invoke', 'picky'], { env });
    assert.equal(run.code, 1);
    assert.equal(run.stdout, 'nope\n');
    oneLineError(run.stderr);
    assert.match(run.stderr, /^fn: picky answered HTTP 418/);
  });

  it('invoke of an unknown function shows the gateway error', async () => {
    const run = await runCli(['invoke', 'ghost'], { env });
    assert.equal(run.code, 1);
    assert.equal(run.stderr, 'fn: not_found: no function named ghost\n');
  });

  it('invoke refuses --data that is not JSON', async () => {
    const run = await runCli(['invoke', 'greet', '--data', 'not json'], { env });
    assert.equal(run.code, 2);
    oneLineError(run.stderr);
  });

  it('ls shows a table, --json the list', async () => {
    const table = await runCli(['ls'], { env });
    assert.match(table.stdout, /^NAME +VERSION +NETWORK +POOL +UPDATED +URL\n/);
    assert.match(table.stdout, /\ngreet +v1 +none /);
    const json = await runCli(['ls', '--json'], { env });
    assert.deepEqual(JSON.parse(json.stdout).map((f: { name: string }) => f.name), ['greet', 'greet2', 'picky']);
  });

  it('logs shows invocations with their output', async () => {
    const run = await runCli(['logs', 'greet', '-n', '2'], { env });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, / 200 +[\d.]+ms +v1 +POST \/fn\/greet /);
    assert.match(run.stdout, /\n {4}\| hi from \/fn\/greet\n/);
    const json = await runCli(['logs', 'greet', '--json'], { env });
    assert.ok(json.stdout.trim().split('\n').every((line) => typeof JSON.parse(line).id === 'string'));
  });

  it('logs -f streams new invocations until interrupted', async () => {
    // Run the real binary so it can be stopped with a signal like a user would.
    const child = execa('node', [FN_BIN, 'logs', 'greet', '-f', '-n', '1'], { env: { ...process.env, ...env }, reject: false });
    let seen = '';
    const sawLive = new Promise<void>((resolve) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        seen += chunk.toString();
        if (seen.includes('/fn/greet/live')) resolve();
      });
    });
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    await runCli(['invoke', 'greet', '--path', '/live'], { env });
    await sawLive;
    assert.equal(store.logs.followerCount('greet'), 1);
    child.kill('SIGINT');
    await child;
    assert.match(seen, /GET \/fn\/greet\/live/);
    // The server notices the disconnect and drops its follower.
    for (let i = 0; i < 50 && store.logs.followerCount('greet') > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(store.logs.followerCount('greet'), 0);
  });

  it('rollback switches versions', async () => {
    await runCli(['deploy', 'greet'], { env, cwd: work });
    const run = await runCli(['rollback', 'greet'], { env });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^rolled back: greet v1 /);
    const explicit = await runCli(['rollback', 'greet', 'v2', '--json'], { env });
    assert.equal(JSON.parse(explicit.stdout).activeVersion, 2);
    const bad = await runCli(['rollback', 'greet', 'latest'], { env });
    assert.equal(bad.code, 2);
  });

  it('env updates variables and secrets without a rebuild', async () => {
    const builds = engine.builds;
    const run = await runCli(['env', 'greet', '--env', 'NEW=1', '--unset', 'MODE', '--unset-secret', 'TOKEN'], { env });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^updated greet v3 /);
    assert.equal(engine.builds, builds);
    assert.equal(JSON.parse((await runCli(['invoke', 'greet'], { env })).stdout).secret, 'unset');
  });

  it('versions lists them', async () => {
    const run = await runCli(['versions', 'greet'], { env });
    assert.match(run.stdout, /^VERSION +ACTIVE +SOURCE/);
    assert.match(run.stdout, /\nv3 +\* +env /);
  });

  it('rm deletes', async () => {
    const run = await runCli(['rm', 'greet2'], { env });
    assert.equal(run.stdout, 'deleted greet2\n');
    assert.equal((await runCli(['rm', 'greet2'], { env })).stderr, 'fn: not_found: no function named greet2\n');
  });

  it('eval explains that the endpoint does not exist yet', async () => {
    const run = await runCli(['eval', '-'], { env, stdin: 'console.log(1)' });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^fn: this gateway \(.*\) has no \/v1\/eval endpoint yet/);
  });

  it('shows a wrong API key as the server reports it', async () => {
    const run = await runCli(['ls'], { env: { FN_URL: gateway.url, FN_API_KEY: 'not-the-key-at-all' } });
    assert.equal(run.code, 1);
    assert.equal(run.stderr, 'fn: unauthorized: wrong API key\n');
  });

  it('says the gateway is not running when the connection is refused', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const run = await runCli(['ls'], { env: { FN_URL: url } });
    assert.equal(run.code, 1);
    oneLineError(run.stderr);
    assert.match(run.stderr, new RegExp(`^fn: the gateway is not running at ${url.replace(/\./g, '\\.')} `));
  });

  it('usage errors exit 2 with one line', async () => {
    for (const argv of [['frobnicate'], ['invoke'], ['ls', 'extra'], ['logs', 'x', '--bogus'], ['rollback', 'a', '1', '2']]) {
      const run = await runCli(argv, { env });
      assert.equal(run.code, 2, argv.join(' '));
      oneLineError(run.stderr);
    }
    assert.equal((await runCli(['--help'], { env })).code, 0);
    assert.match((await runCli(['deploy', '--help'], { env })).stdout, /^usage: fn deploy <dir>/);
  });

  it('bin/fn.js runs the same CLI as a process', async () => {
    const ok = await execa('node', [FN_BIN, 'invoke', 'picky'], { env: { ...process.env, ...env }, reject: false });
    assert.equal(ok.exitCode, 1);
    assert.equal(ok.stdout, 'nope');
    assert.match(ok.stderr, /^fn: picky answered HTTP 418/);
    const refused = await execa('node', [FN_BIN, 'ls'], { env: { ...process.env, FN_URL: `http://127.0.0.1:${await freePort()}` }, reject: false });
    assert.equal(refused.exitCode, 1);
    assert.match(refused.stderr, /^fn: the gateway is not running at /);
  });

  it('redeploying with unchanged dependencies uploads only the changed file (well under 1% of the first upload)', async () => {
    const dir = path.join(work, 'heavy');
    // Incompressible, distinct contents, like a real node_modules.
    for (let i = 0; i < 20; i++) await write(`heavy/node_modules/blobby/part${i}.bin`, crypto.randomBytes(50_000).toString('base64'));
    await write('heavy/node_modules/blobby/package.json', JSON.stringify({ name: 'blobby', main: 'index.js' }));
    await write('heavy/node_modules/blobby/index.js', "module.exports = 'blobby';\n");
    await write('heavy/index.js', "import b from 'blobby';\nexport default () => ({ b, v: 1 });\n");
    const first = await runCli(['deploy', dir, '--json'], { env });
    assert.equal(first.code, 0, first.stderr);
    const firstBytes = JSON.parse(first.stdout).uploadedBytes as number;
    assert.ok(firstBytes > 1_300_000, String(firstBytes));

    await write('heavy/index.js', "import b from 'blobby';\nexport default () => ({ b, v: 2 });\n");
    const second = await runCli(['deploy', dir, '--json'], { env });
    assert.equal(second.code, 0, second.stderr);
    const out = JSON.parse(second.stdout);
    assert.deepEqual([out.activeVersion, out.uploadedBlobs, out.uploadedBytes], [2, 1, (await fs.stat(path.join(dir, 'index.js'))).size]);
    assert.ok(out.uploadedBytes < firstBytes / 100);
    assert.match(second.stderr, /\n {2}uploading 1 of 23 blobs \(\d+ B\)\n {2}uploaded 1 blobs \(\d+ B\)\n/);
    assert.deepEqual(await (await fetch(`${gateway.url}/fn/heavy`)).json(), { b: 'blobby', v: 2 });
  });

  it('deploy leaves out what .fnignore lists, and keeps node_modules', async () => {
    await write('ignoring/index.js', "import fs from 'node:fs';\nexport default () => fs.readdirSync(new URL('.', import.meta.url)).sort();\n");
    await write('ignoring/.fnignore', '# local only\n*.log\nfixtures/\n');
    await write('ignoring/debug.log', 'noise');
    await write('ignoring/fixtures/big.json', '{}');
    await write('ignoring/node_modules/dep/index.js', 'module.exports = 1;');
    const run = await runCli(['deploy', 'ignoring'], { env, cwd: work });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /^deploying ignoring from .* \(3 files, /);
    const listed = (await (await fetch(`${gateway.url}/fn/ignoring`)).json()) as string[];
    assert.deepEqual(listed.filter((f) => !f.startsWith('.snapfn')), ['.fnignore', 'index.js', 'node_modules']);
  });

  it('deploy --handler names the module and export', async () => {
    // The fake engine calls the default export whatever the setting says; the gateway must have kept the setting.
    await write('named/src/app.js', 'export const main = () => "from main";\nexport default main;\n');
    const run = await runCli(['deploy', 'named', '--handler', 'src/app.main'], { env, cwd: work });
    assert.equal(run.code, 0, run.stderr);
    const fn = await store.serving('named');
    assert.equal(fn?.version.config.handler, 'src/app.main');
  });
});
