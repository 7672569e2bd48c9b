import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { ManifestEntry } from '../src/schemas/api.ts';
import { connEnv, GatewayFixture, HELLO, textFiles } from './helpers/gateway-fixture.ts';

const sha256 = (data: Buffer | string) => crypto.createHash('sha256').update(data).digest('hex');

/** A manifest entry for `text` at `path`, its blob put first (unless `put: false`). */
async function entry(f: GatewayFixture, path: string, text: string, options: { put?: boolean; executable?: boolean } = {}): Promise<ManifestEntry> {
  if (options.put !== false) assert.equal((await f.putBlob(text)).status, 200);
  return { path, sha256: sha256(text), size: Buffer.byteLength(text), ...(options.executable ? { executable: true } : {}) };
}

async function incomingLeftovers(f: GatewayFixture): Promise<string[]> {
  return (await fs.readdir(f.store.blobs.root).catch(() => [])).filter((name) => name.startsWith('.incoming'));
}

describe('blob routes', () => {
  let f: GatewayFixture;
  before(async () => {
    f = await GatewayFixture.create({ maxDeployBytes: 4096 });
  });
  after(() => f.close());

  it('PUT stores the bytes under their sha256; POST /v1/blobs/missing names the ones it lacks, once each', async () => {
    const put = await f.putBlob('hello blob');
    assert.equal(put.status, 200);
    assert.deepEqual(put.json, { sha256: sha256('hello blob'), size: 10 });
    assert.equal(await fs.readFile(f.store.blobs.path(put.sha256), 'utf8'), 'hello blob');
    assert.equal((await f.putBlob('hello blob')).status, 200, 'a second upload of the same bytes is fine');

    const other = sha256('not uploaded');
    const res = await f.api('POST', '/v1/blobs/missing', { blobs: [put.sha256, other, other] });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { missing: [other] });
  });

  it('stores an empty blob', async () => {
    const put = await f.putBlob('');
    assert.deepEqual([put.status, put.json.size], [200, 0]);
  });

  it('400s bytes that do not hash to the name (hash_mismatch), keeping nothing', async () => {
    const claimed = sha256('what the client promised');
    const put = await f.putBlob('something else', { as: claimed });
    assert.equal(put.status, 400);
    assert.equal(put.json.error.code, 'hash_mismatch');
    assert.equal(await f.store.blobs.has(claimed), false);
    assert.equal(await f.store.blobs.has(sha256('something else')), false);
    assert.deepEqual(await incomingLeftovers(f), []);
  });

  it('400s a name that is not a sha256, and a missing-request that is not a list of them', async () => {
    const put = await f.putBlob('x', { as: 'ABC' });
    assert.deepEqual([put.status, put.json.error.code], [400, 'invalid_input']);
    for (const body of [{ blobs: ['nothex'] }, { blobs: 'x' }, {}, { blobs: [], extra: 1 }]) {
      const res = await f.api('POST', '/v1/blobs/missing', body);
      assert.deepEqual([res.status, res.json.error.code], [400, 'invalid_input'], JSON.stringify(body));
    }
  });

  it('413s a blob over SNAPFN_MAX_DEPLOY_BYTES, from Content-Length and while streaming one without it', async () => {
    const big = crypto.randomBytes(5000);
    const declared = await f.request(`/v1/blobs/${sha256(big)}`, { method: 'PUT', headers: { 'content-length': String(big.length) }, body: big });
    assert.equal(declared.status, 413);
    assert.equal(((await declared.json()) as { error: { code: string } }).error.code, 'payload_too_large');

    // Chunks of a body of unknown length: refused once past the limit, never stored.
    const chunked = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 5; i++) controller.enqueue(big.subarray(i * 1000, (i + 1) * 1000));
        controller.close();
      },
    });
    const streamed = await f.request(`/v1/blobs/${sha256(big)}`, { method: 'PUT', body: chunked, duplex: 'half' } as RequestInit);
    assert.equal(streamed.status, 413);
    assert.equal(await f.store.blobs.has(sha256(big)), false);
    assert.deepEqual(await incomingLeftovers(f), []);
  });

  it('is documented in /v1/openapi.json', async () => {
    const { json } = await f.api('GET', '/v1/openapi.json');
    assert.ok(json.paths['/v1/blobs/missing'].post);
    assert.ok(json.paths['/v1/blobs/{sha256}'].put);
    assert.ok(json.components.schemas.BlobsMissingRequest);
    assert.ok(json.components.schemas.DeployRequest.properties.manifest);
  });
});

describe('blob routes: auth', () => {
  const KEY = 'blob-test-key-0123456789';
  let f: GatewayFixture;
  before(async () => {
    f = await GatewayFixture.create({ apiKey: KEY });
  });
  after(() => f.close());

  it('need the operator key like every /v1 route', async () => {
    const blob = sha256('secret stuff');
    assert.equal((await f.putBlob('secret stuff')).status, 401);
    assert.equal((await f.putBlob('secret stuff', { key: 'wrong-key-wrong-key' })).status, 401);
    assert.equal((await f.api('POST', '/v1/blobs/missing', { blobs: [blob] })).status, 401);
    assert.equal(await f.store.blobs.has(blob), false);
    assert.equal((await f.putBlob('secret stuff', { key: KEY })).status, 200);
    assert.deepEqual((await f.api('POST', '/v1/blobs/missing', { blobs: [blob] }, { key: KEY })).json, { missing: [] });
  });
});

describe('blob routes: no key configured', () => {
  let f: GatewayFixture;
  before(async () => {
    f = await GatewayFixture.create();
  });
  after(() => f.close());

  it('answer loopback clients only', async () => {
    const remote = connEnv('203.0.113.9');
    assert.equal((await f.putBlob('x', { env: remote })).status, 403);
    assert.equal((await f.api('POST', '/v1/blobs/missing', { blobs: [] }, { env: remote })).status, 403);
  });
});

describe('deploy by manifest', () => {
  let f: GatewayFixture;
  before(async () => {
    f = await GatewayFixture.create({ maxDeployBytes: 4096 });
  });
  after(() => f.close());

  it('deploys from blobs, with node_modules and the executable bit kept', async () => {
    const manifest = [
      await entry(f, 'index.js', "import greet from 'greeter';\nexport default () => greet('blobs');\n"),
      await entry(f, 'node_modules/greeter/package.json', JSON.stringify({ name: 'greeter', main: 'lib.js' })),
      await entry(f, 'node_modules/greeter/lib.js', "module.exports = (who) => 'hi ' + who;\n"),
      await entry(f, 'bin/tool', '#!/bin/sh\necho tool\n', { executable: true }),
    ];
    const fn = await f.deployOk({ name: 'byblobs', manifest });
    assert.equal(await (await f.request('/fn/byblobs')).json(), 'hi blobs');
    const kept = await f.store.sources.manifest(fn.active!.bundleHash);
    assert.deepEqual(kept?.find((e) => e.path === 'bin/tool')?.executable, true);
    assert.equal(kept?.find((e) => e.path === 'index.js')?.executable, undefined);
  });

  it('gives the same source hash whether the files come inline or by manifest', async () => {
    const inline = await f.deployOk({ name: 'inline', files: { 'index.js': HELLO, 'data.txt': 'asset' } });
    const linked = await f.deployOk({ name: 'linked', manifest: [await entry(f, 'index.js', HELLO), await entry(f, 'data.txt', 'asset')] });
    assert.equal(linked.active!.bundleHash, inline.active!.bundleHash);
    assert.equal(linked.active!.templateId, inline.active!.templateId);
  });

  it('takes files and manifest together', async () => {
    const fn = await f.deployOk({ name: 'mixed', files: { 'index.js': "import t from './text.js';\nexport default () => t;\n" }, manifest: [await entry(f, 'text.js', "export default 'mixed';\n")] });
    assert.equal(fn.activeVersion, 1);
    assert.equal(await (await f.request('/fn/mixed')).json(), 'mixed');
  });

  it('400s a manifest naming blobs the server lacks (missing_blobs), listing them', async () => {
    const manifest = [await entry(f, 'index.js', HELLO)];
    for (let i = 0; i < 7; i++) manifest.push(await entry(f, `lib/${i}.js`, `export const n = ${i};\n`, { put: false }));
    const reply = await f.deploy({ name: 'partial', manifest });
    assert.equal(reply.status, 400);
    const error = (reply.json as { error: { code: string; message: string; details: { missing: string[] } } }).error;
    assert.equal(error.code, 'missing_blobs');
    assert.equal(error.details.missing.length, 7);
    assert.match(error.message, /^the manifest names 7 blob\(s\) the server does not have: [0-9a-f]{64}, [0-9a-f]{64}, [0-9a-f]{64}, [0-9a-f]{64}, [0-9a-f]{64} and 2 more /);
    assert.equal((await f.api('GET', '/v1/functions/partial')).status, 404);
  });

  it('413s a manifest over SNAPFN_MAX_DEPLOY_BYTES before looking for its blobs', async () => {
    const reply = await f.deploy({ name: 'huge', manifest: [await entry(f, 'index.js', HELLO), { path: 'big.bin', sha256: sha256('never sent'), size: 5000 }] });
    assert.equal(reply.status, 413);
    assert.equal((reply.json as { error: { code: string } }).error.code, 'payload_too_large');
    // Inline and linked bytes count together.
    const together = await f.deploy({ name: 'huge', files: { 'a.txt': 'a'.repeat(3000) }, manifest: [await entry(f, 'index.js', HELLO), await entry(f, 'b.txt', 'b'.repeat(1000))] });
    assert.equal(together.status, 413);
  });

  it('400s a size that is not the blob\'s, a path in both forms, and paths that leave the directory', async () => {
    const wrongSize = await f.deploy({ name: 'liar', manifest: [{ ...(await entry(f, 'index.js', HELLO)), size: 3 }] });
    assert.equal(wrongSize.status, 400);
    assert.match((wrongSize.json as { error: { message: string } }).error.message, /says 3 bytes, but blob [0-9a-f]{64} has \d+/);
    const both = await f.deploy({ name: 'both', files: { 'index.js': HELLO }, manifest: [await entry(f, 'index.js', HELLO)] });
    assert.equal(both.status, 400);
    assert.match((both.json as { error: { message: string } }).error.message, /a path is both in files and in manifest/);
    for (const path of ['../evil.js', '/etc/passwd', 'a/./b']) {
      const reply = await f.deploy({ name: 'paths', manifest: [await entry(f, 'index.js', HELLO), { ...(await entry(f, 'x', 'x')), path }] });
      assert.equal(reply.status, 400, path);
    }
    const neither = await f.api('POST', '/v1/functions', { name: 'neither' });
    assert.match(neither.json.error.message, /give files, manifest or both/);
  });

  it('skips .git entries of a manifest', async () => {
    const reply = await f.deploy({ name: 'gitdir', manifest: [await entry(f, 'index.js', "import x from './.git/x.js';\nexport default () => x;\n"), await entry(f, '.git/x.js', 'export default 1;\n')] });
    assert.equal(reply.status, 400);
    assert.match((reply.json as { error: { message: string } }).error.message, /Could not resolve "\.\/\.git\/x\.js"/);
  });

  it('never writes into a stored blob while preparing (a transpiled entry lands where an uploaded file was)', async () => {
    const stale = "export default () => 'stale';\n";
    const manifest = [await entry(f, 'index.ts', "export default (): string => 'fresh';\n"), await entry(f, '.snapfn.index.mjs', stale)];
    await f.deployOk({ name: 'shadowed', manifest });
    assert.equal(await (await f.request('/fn/shadowed')).json(), 'fresh');
    assert.equal(sha256(await fs.readFile(f.store.blobs.path(sha256(stale)))), sha256(stale));
  });

  it('still takes inline files alone (small clients)', async () => {
    const res = await f.request('/v1/functions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'plain', files: textFiles({ 'index.js': HELLO }) }) });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /"type":"result"/);
  });
});
