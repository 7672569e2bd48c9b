import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InvalidInputError } from '../src/errors.ts';
import { writeFileAtomic } from '../src/registry/atomic-file.ts';
import { FunctionStore } from '../src/registry/function-store.ts';
import { InvocationLog } from '../src/registry/invocation-log.ts';
import { KeyedMutex } from '../src/registry/keyed-mutex.ts';
import { FunctionConfig } from '../src/schemas/function-config.ts';
import type { InvocationLogEntry } from '../src/schemas/api.ts';

/** A one-file function directory, as a deploy would hand the store. */
async function moduleDir(code: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-source-'));
  await fs.writeFile(path.join(dir, 'handler.mjs'), code);
  return dir;
}

const HASH = 'a'.repeat(64);

function entry(i: number, text = ''): InvocationLogEntry {
  return { id: `id-${i}`, time: new Date().toISOString(), version: 1, method: 'GET', path: '/fn/x', status: 200, durationMs: 1, ok: true, logs: text ? [{ stream: 'stdout', text, t: 0 }] : [], logsTruncated: false };
}

describe('FunctionStore', () => {
  let home: string;
  let store: FunctionStore;
  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-store-'));
    store = await FunctionStore.open(home);
  });
  after(async () => {
    await store.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  const draft = (secrets: Record<string, string> = {}) => ({
    templateId: 'tpl-1',
    source: 'deploy' as const,
    config: FunctionConfig.parse({}),
    env: { A: '1' },
    secrets,
    bundleHash: HASH,
    fingerprint: 'fp',
  });

  it('numbers versions 1, 2, ... and keeps the function inactive until setActive', async () => {
    const source = await moduleDir('export default 1');
    const v1 = await store.lock('fn', () => store.addVersion('fn', draft(), source));
    const v2 = await store.lock('fn', () => store.addVersion('fn', draft({ S: 'secret-value' }), undefined));
    assert.deepEqual([v1.version, v2.version], [1, 2]);
    assert.equal((await store.get('fn'))?.active, null);
    assert.equal(await store.serving('fn'), undefined);
    await store.setActive('fn', 2);
    const serving = await store.serving('fn');
    assert.equal(serving?.version.version, 2);
    assert.deepEqual(serving?.deployment.env, { A: '1', S: 'secret-value' });
    assert.deepEqual(serving?.secretValues, ['secret-value']);
    assert.deepEqual(v2.secretNames, ['S']);
  });

  it('never puts secret values in version records', async () => {
    const raw = await fs.readFile(path.join(home, 'functions', 'fn', 'versions', '2.json'), 'utf8');
    assert.ok(!raw.includes('secret-value'));
  });

  it('refuses names that are not function names before touching the disk', async () => {
    for (const name of ['../escape', 'UPPER', '', 'a/b']) {
      await assert.rejects(store.get(name), InvalidInputError, name);
    }
  });

  it('refuses to activate a version that does not exist', async () => {
    await assert.rejects(store.setActive('fn', 7), /no version 7/);
  });

  it('lists only real functions', async () => {
    await fs.mkdir(path.join(home, 'functions', 'stray-dir'));
    assert.deepEqual((await store.list()).map((f) => f.name), ['fn']);
  });

  it('removes everything of a function', async () => {
    assert.equal(await store.remove('fn'), true);
    assert.equal(await store.get('fn'), undefined);
    assert.equal(await store.serving('fn'), undefined);
    assert.equal(await store.remove('fn'), false);
  });
});

describe('InvocationLog', () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-log-'));
    await fs.mkdir(path.join(dir, 'f'));
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));

  it('stays bounded: rotates one generation at maxBytes', async () => {
    const log = new InvocationLog((name) => path.join(dir, name), { maxBytes: 4096 });
    for (let i = 0; i < 200; i++) await log.append('f', entry(i, 'x'.repeat(100)));
    const sizes = await Promise.all((await fs.readdir(path.join(dir, 'f'))).map(async (n) => (await fs.stat(path.join(dir, 'f', n))).size));
    assert.ok(sizes.length <= 2);
    assert.ok(sizes.every((s) => s <= 4096), String(sizes));
    const tail = await log.tail('f', 5);
    assert.deepEqual(tail.map((e) => e.id), ['id-195', 'id-196', 'id-197', 'id-198', 'id-199']);
  });

  it('shrinks one huge entry instead of blowing the bound', async () => {
    const log = new InvocationLog((name) => path.join(dir, name), { maxBytes: 8192 });
    await log.append('f', { ...entry(1000), logs: Array.from({ length: 50 }, (_, i) => ({ stream: 'stdout' as const, text: 'y'.repeat(500), t: i })) });
    const last = (await log.tail('f', 1))[0]!;
    assert.equal(last.logsTruncated, true);
    assert.ok(last.logs.length < 50);
  });

  it('skips a torn line', async () => {
    const log = new InvocationLog((name) => path.join(dir, name));
    await fs.mkdir(path.join(dir, 'torn'));
    await log.append('torn', entry(1));
    await fs.appendFile(path.join(dir, 'torn', 'invocations.jsonl'), '{"id":"half');
    await fs.appendFile(path.join(dir, 'torn', 'invocations.jsonl'), '\n');
    await log.append('torn', entry(2));
    assert.deepEqual((await log.tail('torn', 10)).map((e) => e.id), ['id-1', 'id-2']);
  });

  it('follows: the tail first, then live entries, until aborted', async () => {
    const log = new InvocationLog((name) => path.join(dir, name));
    await fs.mkdir(path.join(dir, 'live'));
    await log.append('live', entry(1));
    const abort = new AbortController();
    const seen: string[] = [];
    const done = (async () => {
      for await (const e of log.follow('live', { limit: 10, signal: abort.signal })) {
        seen.push(e.id);
        if (seen.length === 3) abort.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 10));
    await log.append('live', entry(2));
    await log.append('live', entry(3));
    await done;
    assert.deepEqual(seen, ['id-1', 'id-2', 'id-3']);
  });

  it('drops entries of a function whose directory is gone', async () => {
    const log = new InvocationLog((name) => path.join(dir, name));
    await log.append('gone', entry(1));
    await assert.rejects(fs.access(path.join(dir, 'gone')));
  });
});

describe('writeFileAtomic and KeyedMutex', () => {
  it('writes with the requested mode and leaves no temp file', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-atomic-'));
    try {
      const file = path.join(dir, 'secrets.json');
      await writeFileAtomic(file, '{"a":1}', { mode: 0o600 });
      await writeFileAtomic(file, '{"a":2}', { mode: 0o600 });
      assert.equal(await fs.readFile(file, 'utf8'), '{"a":2}');
      assert.equal((await fs.stat(file)).mode & 0o777, 0o600);
      assert.deepEqual(await fs.readdir(dir), ['secrets.json']);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('runs work for one key strictly in order, even after a failure', async () => {
    const mutex = new KeyedMutex();
    const order: string[] = [];
    const slow = mutex.run('k', async () => {
      await new Promise((r) => setTimeout(r, 20));
      order.push('first');
      throw new Error('first failed');
    });
    const fast = mutex.run('k', async () => {
      order.push('second');
    });
    await assert.rejects(slow);
    await fast;
    assert.deepEqual(order, ['first', 'second']);
  });
});
