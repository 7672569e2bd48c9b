import { HANDLER_SHAPES_HINT } from '../src/deploy/handler-shapes.ts';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { GatewayFixture, HELLO } from './helpers/gateway-fixture.ts';

const CJS_DEP = {
  'index.js': `import greet from 'greeter';\nexport default async () => ({ text: greet('cjs') });\n`,
  'node_modules/greeter/package.json': JSON.stringify({ name: 'greeter', main: 'lib.js' }),
  // CommonJS that requires a Node built-in: only works in an ESM bundle thanks to the createRequire banner.
  'node_modules/greeter/lib.js': `const path = require('node:path');\nmodule.exports = (who) => 'hi ' + who + ' ' + path.basename('/a/b.txt');\n`,
};

describe('deploy: validation before streaming (plain JSON errors)', () => {
  let f: GatewayFixture;
  before(async () => {
    f = await GatewayFixture.create({ maxDeployBytes: 4096 });
  });
  after(() => f.close());

  it('400s a module that exports no handler, naming the shapes it accepts (invalid_handler)', async () => {
    const reply = await f.deploy({ name: 'nodefault', files: { 'index.ts': 'export const helper = () => 1;\n' } });
    assert.equal(reply.status, 400);
    assert.match(reply.contentType, /application\/json/);
    assert.deepEqual(reply.json, { error: { code: 'invalid_handler', message: `index.ts exports no handler: ${HANDLER_SHAPES_HINT}` } });
    assert.equal(f.engine.builds, 0);
  });

  it("400s a syntax error with esbuild's first message (bundle_failed)", async () => {
    const reply = await f.deploy({ name: 'broken', files: { 'index.js': 'export default async function () {\n  return {;\n}\n' } });
    assert.equal(reply.status, 400);
    const error = (reply.json as { error: { code: string; message: string } }).error;
    assert.equal(error.code, 'bundle_failed');
    assert.match(error.message, /^index\.js:2:\d+: /);
  });

  it('400s an import that does not resolve', async () => {
    const reply = await f.deploy({ name: 'missing', files: { 'index.js': "import x from 'not-installed';\nexport default () => x;\n" } });
    assert.equal(reply.status, 400);
    assert.match((reply.json as { error: { message: string } }).error.message, /Could not resolve "not-installed"/);
  });

  it("a TypeScript entry that requires its own .node addon deploys (the addon stays a file loaded at run time)", async () => {
    const fn = await f.deployOk({ name: 'own-addon', files: { 'index.ts': "export default async () => { const addon = require('./native.node'); return addon.ok; };\n", 'native.node': 'not really ELF' } });
    assert.equal(fn.name, 'own-addon');
  });

  it('413s a bundle whose decoded files exceed SNAPFN_MAX_DEPLOY_BYTES', async () => {
    const reply = await f.deploy({ name: 'big', files: { 'index.js': HELLO, 'data.bin': 'x'.repeat(5000) } });
    assert.equal(reply.status, 413);
    assert.equal((reply.json as { error: { code: string } }).error.code, 'payload_too_large');
  });

  it('413s a request body far beyond the limit without parsing it', async () => {
    const res = await f.request('/v1/functions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(13 * 1024 * 1024) });
    assert.equal(res.status, 413);
  });

  it('400s an invalid function name', async () => {
    for (const name of ['Hello', '1abc', 'a_b', '../etc', 'x'.repeat(64)]) {
      const reply = await f.deploy({ name, files: { 'index.js': HELLO } });
      assert.equal(reply.status, 400, name);
      assert.match((reply.json as { error: { message: string } }).error.message, /^invalid deploy request: name: function names are 1-63 chars/);
    }
  });

  it('400s bundle paths that would leave the bundle', async () => {
    for (const path of ['../evil.js', '/etc/passwd', 'a/../../b', 'a\\b', './x']) {
      const reply = await f.deploy({ name: 'paths', files: { 'index.js': HELLO, [path]: 'x' } });
      assert.equal(reply.status, 400, path);
    }
  });

  it('400s a bundle without an entry point', async () => {
    const reply = await f.deploy({ name: 'noentry', files: { 'lib.js': HELLO } });
    assert.equal(reply.status, 400);
    assert.equal((reply.json as { error: { code: string } }).error.code, 'invalid_handler');
  });

  it('400s a name that is both an env var and a secret', async () => {
    const reply = await f.deploy({ name: 'clash', files: { 'index.js': HELLO }, env: { TOKEN: 'a' }, secrets: { TOKEN: 'b' } });
    assert.equal(reply.status, 400);
  });

  it('400s an invalid API config before building', async () => {
    const reply = await f.deploy({ name: 'cfg', files: { 'index.js': HELLO }, config: { timeoutMs: 5 } });
    assert.equal(reply.status, 400);
    assert.match((reply.json as { error: { message: string } }).error.message, /config\.timeoutMs/);
  });

  it('400s files that are not base64', async () => {
    const res = await f.api('POST', '/v1/functions', { name: 'b64', files: { 'index.js': 'not base64!' } });
    assert.equal(res.status, 400);
  });
});

describe('deploy: the pipeline', () => {
  let f: GatewayFixture;
  before(async () => {
    f = await GatewayFixture.create();
  });
  after(() => f.close());

  it('streams NDJSON progress and ends with the result', async () => {
    const reply = await f.deploy({ name: 'hello', files: { 'index.js': HELLO } });
    assert.equal(reply.status, 200);
    assert.match(reply.contentType, /application\/x-ndjson/);
    const steps = reply.events.filter((e) => e.type === 'progress').map((e) => (e as { step: string }).step);
    assert.deepEqual(steps, ['prepared', 'rootfs', 'boot', 'warm', 'checkpoint', 'done', 'activating', 'activated']);
    const last = reply.events.at(-1)!;
    assert.equal(last.type, 'result');
    if (last.type === 'result') {
      assert.equal(last.function.name, 'hello');
      assert.equal(last.function.activeVersion, 1);
      assert.equal(last.function.url, 'http://localhost/fn/hello');
    }
  });

  it('bundles CommonJS dependencies from the upload into one ESM file that can require()', async () => {
    await f.deployOk({ name: 'cjs', files: CJS_DEP });
    const res = await f.request('/fn/cjs');
    assert.deepEqual(await res.json(), { text: 'hi cjs b.txt' });
  });

  it('uses package.json "main" as the entry point', async () => {
    await f.deployOk({ name: 'main-field', files: { 'package.json': JSON.stringify({ main: 'src/handler.ts' }), 'src/handler.ts': 'export default async (r: Request): Promise<string> => "from main";\n' } });
    assert.equal(await (await f.request('/fn/main-field')).json(), 'from main');
  });

  it("merges the handler's `export const config` with the API config (API wins)", async () => {
    const fn = await f.deployOk({
      name: 'configured',
      files: { 'index.js': 'export const config = { timeoutMs: 2000, keepWarm: true, memoryMb: 512 };\nexport default () => 1;\n' },
      config: { timeoutMs: 3000 },
    });
    assert.deepEqual(
      { timeoutMs: fn.active!.config.timeoutMs, keepWarm: fn.active!.config.keepWarm, memoryMb: fn.active!.config.memoryMb, network: fn.active!.config.network },
      { timeoutMs: 3000, keepWarm: true, memoryMb: 512, network: 'none' },
    );
  });

  it('reports an invalid handler config as an error event and activates nothing', async () => {
    const reply = await f.deploy({ name: 'badcfg', files: { 'index.js': 'export const config = { timeoutMs: 1, colour: "red" };\nexport default () => 1;\n' } });
    const last = reply.events.at(-1)!;
    assert.equal(last.type, 'error');
    if (last.type === 'error') assert.equal(last.error.code, 'invalid_config');
    assert.equal((await f.api('GET', '/v1/functions/badcfg')).status, 404);
  });

  it('rebuilds the template when the handler config asks for another network mode', async () => {
    const before = f.engine.builds;
    const fn = await f.deployOk({ name: 'egress', files: { 'index.js': "export const config = { network: 'egress' };\nexport default () => 1;\n" } });
    assert.equal(fn.active!.config.network, 'egress');
    assert.equal(f.engine.builds, before + 2);
    const reply = await f.deploy({ name: 'egress', files: { 'index.js': "export const config = { network: 'egress' };\nexport default () => 1;\n" }, config: { network: 'none' } });
    const last = reply.events.at(-1)!;
    assert.equal(last.type === 'result' && last.function.active!.config.network, 'none');
  });

  it('keeps the previous version active and serving when the template build fails', async () => {
    await f.deployOk({ name: 'stable', files: { 'index.js': 'export default () => "v1";\n' } });
    f.engine.failNextBuild = 'the sandbox did not boot: runsc exited with code 1';
    const reply = await f.deploy({ name: 'stable', files: { 'index.js': 'export default () => "v2";\n' } });
    assert.equal(reply.status, 200);
    const last = reply.events.at(-1)!;
    assert.deepEqual(last, { type: 'error', error: { code: 'template_build_failed', message: 'the sandbox did not boot: runsc exited with code 1' } });
    const res = await f.request('/fn/stable');
    assert.equal(await res.json(), 'v1');
    assert.equal(res.headers.get('x-fn-version'), '1');
    const { json } = await f.api('GET', '/v1/functions/stable/versions');
    assert.equal(json.versions.length, 1);
  });

  it('creates a new immutable version per deploy', async () => {
    await f.deployOk({ name: 'versioned', files: { 'index.js': 'export default () => "a";\n' } });
    const fn = await f.deployOk({ name: 'versioned', files: { 'index.js': 'export default () => "b";\n' } });
    assert.equal(fn.activeVersion, 2);
    assert.equal(await (await f.request('/fn/versioned')).json(), 'b');
    const { json } = await f.api('GET', '/v1/functions/versioned/versions');
    assert.deepEqual(
      json.versions.map((v: { version: number; active: boolean }) => [v.version, v.active]),
      [
        [1, false],
        [2, true],
      ],
    );
  });

  it('ignores .git in uploads', async () => {
    // The handler imports a file under .git: since .git is skipped, the import cannot resolve.
    const reply = await f.deploy({ name: 'gitdir', files: { 'index.js': "import x from './.git/x.js';\nexport default () => x;\n", '.git/x.js': 'export default 1;\n' } });
    assert.equal(reply.status, 400);
    assert.match((reply.json as { error: { message: string } }).error.message, /Could not resolve "\.\/\.git\/x\.js"/);
  });
});
