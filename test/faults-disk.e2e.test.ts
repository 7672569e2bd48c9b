// Faults: SNAPFN_HOME on a small tmpfs that fills up during a deploy (issue
// 20, item 6). A real gateway (src/main.ts, real gVisor engine) whose home is
// a tmpfs mounted here; v1 deploys and serves; the tmpfs is filled to the
// last MiB and v2 is deployed with the fn CLI and with the API: both fail
// with insufficient_storage (CLI: exit 1 and one line; API: 507, or the
// deploy stream's error event with that code), v1 keeps serving throughout,
// and nothing partial is left (temp files, truncated records, half
// templates): once the filler is gone the same deploy succeeds and serves.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { textFiles } from './helpers/gateway-fixture.ts';
import { freePort, spawnGateway, type GatewayProcess } from './support/gateway-process.ts';
import { leftovers } from './support/leaks.ts';
import { startTestRedis, type TestRedis } from './support/redis.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FN_BIN = path.join(ROOT, 'wrangler-free-deploy/bin/fn.js');
const TMPFS_MB = 640;

const handler = (version: string) => `export default async function () { return { version: ${JSON.stringify(version)} }; }\n`;

async function freeBytes(dir: string): Promise<number> {
  const stat = await fs.statfs(dir);
  return stat.bavail * stat.bsize;
}

/** Files a failed step must not leave behind: temp files of atomic writes, blob uploads in flight. */
async function partialFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string) => {
    for (const entry of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const full = path.join(d, entry.name);
      // A template build's staging directory is .tmp-<id>-<pid>-<hex>.
      if (entry.isDirectory() && entry.name.startsWith('.tmp-')) found.push(`${path.relative(dir, full)}/`);
      else if (entry.isDirectory()) await walk(full);
      else if (/\.tmp-\d+-[0-9a-f]+$|^\.incoming-/.test(entry.name)) found.push(path.relative(dir, full));
    }
  };
  await walk(dir);
  return found;
}

describe('faults: SNAPFN_HOME fills up during a deploy (real gateway, real engine, tmpfs)', { timeout: 8 * 60_000 }, () => {
  let home: string;
  let redis: TestRedis;
  let gateway: GatewayProcess | undefined;
  let mounted = false;
  let srcDir: string;
  const filler = () => path.join(home, 'filler');

  const url = (route: string) => `${gateway!.url}${route}`;
  const served = async () => {
    const res = await fetch(url('/fn/disk'), { signal: AbortSignal.timeout(60_000) });
    return { status: res.status, body: (await res.json()) as { version?: string } };
  };
  const fnDeploy = (dir: string) => execa(process.execPath, [FN_BIN, 'deploy', dir, '--name', 'disk'], { env: { FN_URL: gateway!.url, FN_API_KEY: '' }, reject: false, timeout: 180_000 });

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-faults-disk-'));
    await execa('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_MB}m,mode=0700`, 'tmpfs', home]);
    mounted = true;
    srcDir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-faults-disk-src-'));
    // Redis outside the tmpfs: the fault under test is the home's, not the queue's.
    redis = await startTestRedis('faults-disk');
    gateway = await spawnGateway(
      { SNAPFN_HOME: home, REDIS_URL: redis.redis.url, SNAPFN_SECRETS_KEY: '', SNAPFN_MAX_SANDBOXES: '2', SNAPFN_POOL_SIZE: '0', SNAPFN_EXAMPLES: '0', SNAPFN_EVAL: '0', SNAPFN_API_KEY: '', SNAPFN_GC_KEEP_VERSIONS: '10' },
      await freePort(),
      120_000,
    );
  });

  after(async () => {
    const pid = gateway?.pid;
    await gateway?.stop();
    await redis?.close();
    // The tmpfs itself is ours; anything mounted under it is not.
    const left = (pid ? await leftovers(home, pid) : []).filter((l) => !l.includes(` ${home} rw`));
    if (mounted) await execa('umount', [home], { reject: false });
    await fs.rm(home, { recursive: true, force: true });
    await fs.rm(srcDir, { recursive: true, force: true });
    assert.deepEqual(left, [], 'sandboxes, namespaces, veths or mounts left behind');
  });

  test('a deploy that runs out of space fails clearly, v1 keeps serving, and the same deploy works once there is room', async (t) => {
    await fs.writeFile(path.join(srcDir, 'index.mjs'), handler('v1'));
    const first = await fnDeploy(srcDir);
    assert.equal(first.exitCode, 0, first.stderr);
    assert.deepEqual((await served()).body, { version: 'v1' });
    const afterV1 = await freeBytes(home);

    // v2 differs in code and carries a 4 MiB asset: its upload, source and template all need room.
    await fs.writeFile(path.join(srcDir, 'index.mjs'), handler('v2'));
    await fs.writeFile(path.join(srcDir, 'asset.bin'), Buffer.alloc(4 * 1024 * 1024, 7));
    const room = await freeBytes(home);
    // Room for the upload (4 MiB), not for the template the build then checkpoints.
    await execa('fallocate', ['-l', String(room - 8 * 1024 * 1024), filler()]);
    t.diagnostic(`tmpfs ${TMPFS_MB} MiB: ${Math.round(afterV1 / 2 ** 20)} MiB free after v1, filled to ${Math.round((await freeBytes(home)) / 2 ** 20)} MiB free`);

    // The CLI: exit 1, one line that says what happened. v1 is invoked all along.
    let polling = true;
    const during: string[] = [];
    const poller = (async () => {
      while (polling) {
        const r = await served().catch((err: Error) => ({ status: 0, body: { version: err.message } }));
        during.push(`${r.status} ${r.body.version}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })();
    const cli = await fnDeploy(srcDir);
    polling = false;
    await poller;
    assert.ok(during.length > 0 && during.every((d) => d === '200 v1'), `v1 served during the failing deploy: ${[...new Set(during)].join(', ')}`);
    assert.equal(cli.exitCode, 1, `${cli.stdout}\n${cli.stderr}`);
    // Progress lines, then the error: one line, the last.
    const errors = cli.stderr.trim().split('\n').filter((l) => l.startsWith('fn: '));
    assert.equal(errors.length, 1, cli.stderr);
    assert.equal(errors[0], cli.stderr.trim().split('\n').at(-1));
    assert.match(errors[0]!, /^fn: .*insufficient_storage.*out of disk space/, cli.stderr);
    t.diagnostic(`fn deploy: exit ${cli.exitCode}, ${errors[0]}; ${during.length} invocations of v1 meanwhile, all 200`);
    assert.deepEqual((await served()).body, { version: 'v1' }, 'v1 serves after the failed deploy');

    // The API with inline files: 507 before the build, or the stream's error event after it started.
    const res = await fetch(url('/v1/functions'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'disk', files: textFiles({ 'index.mjs': handler('v2-api'), 'big.txt': 'x'.repeat(3 * 1024 * 1024) }) }),
      signal: AbortSignal.timeout(180_000),
    });
    const text = await res.text();
    if (res.status === 507) assert.equal(JSON.parse(text).error.code, 'insufficient_storage', text);
    else {
      assert.equal(res.status, 200, text);
      const last = JSON.parse(text.trim().split('\n').at(-1)!);
      assert.equal(last.type, 'error', text);
      assert.equal(last.error.code, 'insufficient_storage', text);
    }
    t.diagnostic(`API deploy: HTTP ${res.status}, ${text.trim().split('\n').at(-1)!.slice(0, 200)}`);
    assert.deepEqual((await served()).body, { version: 'v1' });
    const versions = (await (await fetch(url('/v1/functions/disk/versions'))).json()) as { versions: Array<{ version: number }> };
    assert.deepEqual(versions.versions.map((v) => v.version), [1], 'no version was added');
    assert.deepEqual(await partialFiles(home), [], 'nothing partial is left');

    // A blob upload that does not fit at all: 507 insufficient_storage, and no half blob stays.
    await execa('fallocate', ['-l', String((await freeBytes(home)) - 1024 * 1024), `${filler()}-2`]);
    const blob = Buffer.alloc(4 * 1024 * 1024, 9);
    const put = await fetch(url(`/v1/blobs/${crypto.createHash('sha256').update(blob).digest('hex')}`), { method: 'PUT', body: blob, signal: AbortSignal.timeout(60_000) });
    const putText = await put.text();
    assert.equal(put.status, 507, putText);
    assert.equal(JSON.parse(putText).error.code, 'insufficient_storage', putText);
    t.diagnostic(`blob upload: HTTP ${put.status} ${putText.slice(0, 160)}`);
    assert.deepEqual(await partialFiles(home), []);
    await fs.rm(`${filler()}-2`);

    // Room again: the very same deploy now works.
    await fs.rm(filler());
    const retry = await fnDeploy(srcDir);
    assert.equal(retry.exitCode, 0, `${retry.stdout}\n${retry.stderr}`);
    assert.deepEqual((await served()).body, { version: 'v2' });
    assert.deepEqual(await partialFiles(home), []);
  });
});
