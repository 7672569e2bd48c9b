import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { execa } from 'execa';
import sharp from 'sharp';
import { loadConfig } from '../src/config.ts';
import type { RunningSnapfn } from '../src/snapfn.ts';

/*
 * Native addons through real runsc sandboxes: each function is deployed
 * with `fn deploy` from test/fixtures/functions (its dependencies come from
 * this repository's node_modules, as the packer hoists them) and invoked
 * over HTTP.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURES = path.join(ROOT, 'test/fixtures/functions');
const FN_BIN = path.join(ROOT, 'wrangler-free-deploy/bin/fn.js');

describe('e2e: native addons (sharp, better-sqlite3) in gVisor sandboxes', { timeout: 15 * 60_000 }, () => {
  let home: string;
  let work: string;
  let snapfn: RunningSnapfn;

  const fn = (argv: string[]) => execa('node', [FN_BIN, ...argv], { env: { ...process.env, FN_URL: snapfn.url, FN_API_KEY: '' }, reject: false, timeout: 5 * 60_000 });
  const deployed = async (argv: string[]) => {
    const r = await fn(['deploy', ...argv]);
    assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
    return r;
  };

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-native-home-'));
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-native-work-'));
    const { startSnapfn } = await import('../src/snapfn.ts');
    // better-sqlite3 with its sources is ~30 MB: over the old 20 MiB default.
    const env = { ...process.env, SNAPFN_HOME: home, PORT: '0', SNAPFN_API_KEY: '', SNAPFN_POOL_SIZE: '0', SNAPFN_MAX_SANDBOXES: '4', SNAPFN_MAX_BUNDLE_BYTES: String(256 * 1024 * 1024) };
    snapfn = await startSnapfn({ config: loadConfig(env), examplesDir: false, queue: false, hostname: '127.0.0.1', log: () => {} });
  });

  after(async () => {
    await snapfn?.close();
    await fs.rm(work, { recursive: true, force: true });
    await fs.rm(home, { recursive: true, force: true });
  });

  it('resizes a PNG with sharp: bytes in, a PNG out, checked with sharp on the host', async () => {
    await deployed([path.join(FIXTURES, 'sharp-thumbnail'), '--name', 'thumbnail']);
    const input = await sharp({ create: { width: 320, height: 200, channels: 3, background: { r: 200, g: 30, b: 90 } } }).png().toBuffer();
    for (const width of [80, 40]) {
      const res = await fetch(`${snapfn.url}/fn/thumbnail?width=${width}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: input });
      const body = Buffer.from(await res.arrayBuffer());
      assert.equal(res.status, 200, body.toString());
      assert.equal(res.headers.get('content-type'), 'image/png');
      assert.equal(res.headers.get('x-libvips'), sharp.versions.vips);
      const meta = await sharp(body).metadata();
      assert.equal(meta.format, 'png');
      assert.deepEqual([meta.width, meta.height], [width, (width * 200) / 320]);
      assert.deepEqual((await sharp(body).stats()).dominant, (await sharp(input).stats()).dominant);
    }
  });

  it('runs a query on better-sqlite3 (built by node-gyp) from a CommonJS Lambda handler', async () => {
    await deployed([path.join(FIXTURES, 'sqlite-query'), '--name', 'sqlite']);
    const rows = [
      { item: 'tea', quantity: 2, cents: 250 },
      { item: 'cake', quantity: 1, cents: 400 },
      { item: 'tea', quantity: 3, cents: 250 },
    ];
    const res = await fetch(`${snapfn.url}/fn/sqlite`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rows) });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    const json = JSON.parse(text) as { sqlite: string; totals: unknown };
    assert.match(json.sqlite, /^3\.\d+\.\d+$/);
    assert.deepEqual(json.totals, [
      { item: 'cake', quantity: 1, cents: 400 },
      { item: 'tea', quantity: 5, cents: 1250 },
    ]);
    // A fresh sandbox per invocation: the /tmp database starts empty again.
    const again = await fetch(`${snapfn.url}/fn/sqlite`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rows.slice(1, 2)) });
    assert.deepEqual(((await again.json()) as { totals: unknown }).totals, [{ item: 'cake', quantity: 1, cents: 400 }]);
  });

  it('fails the deploy of an addon that needs a library the sandbox does not have, naming both', async () => {
    const dir = path.join(work, 'broken-addon');
    const release = path.join(dir, 'node_modules/broken/build/Release');
    await fs.mkdir(release, { recursive: true });
    await fs.writeFile(path.join(work, 'stub.c'), 'int snapfn_stub(void) { return 1; }\n');
    // The library exists only at link time, here: neither the upload nor the rootfs will have it.
    await execa('cc', ['-shared', '-fPIC', '-o', path.join(work, 'libsnapfn-absent.so.1'), path.join(work, 'stub.c'), '-Wl,-soname,libsnapfn-absent.so.1']);
    await execa('cc', ['-shared', '-fPIC', '-o', path.join(release, 'broken.node'), path.join(work, 'stub.c'), `-L${work}`, '-Wl,--no-as-needed', '-l:libsnapfn-absent.so.1']);
    await fs.writeFile(path.join(dir, 'node_modules/broken/package.json'), JSON.stringify({ name: 'broken', main: 'index.js' }));
    await fs.writeFile(path.join(dir, 'node_modules/broken/index.js'), "module.exports = require('./build/Release/broken.node');\n");
    await fs.writeFile(path.join(dir, 'index.js'), "const addon = require('broken');\nexports.handler = async () => addon;\n");
    const r = await fn(['deploy', dir]);
    assert.equal(r.exitCode, 1, r.stdout);
    assert.equal(
      r.stderr.trim().split('\n').at(-1),
      "fn: deploy of broken-addon failed: native_library_missing: node_modules/broken/build/Release/broken.node needs libsnapfn-absent.so.1, which neither the function directory nor the sandbox's root filesystem has",
    );
    assert.doesNotMatch(`${r.stdout}\n${r.stderr}`, /booting/, 'failed before any sandbox booted');
    assert.equal((await fetch(`${snapfn.url}/fn/broken-addon`)).status, 404);
  });
});
