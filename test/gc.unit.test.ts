import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createGateway } from '../src/gateway/app.ts';
import { retainedTemplates } from '../src/gc/retention.ts';
import { TemplateCollector } from '../src/gc/template-collector.ts';
import { FunctionStore, type NewVersion } from '../src/registry/function-store.ts';
import { FunctionConfig } from '../src/schemas/function-config.ts';
import { GcReport } from '../src/schemas/gc.ts';
import { TemplateGate } from '../src/sandbox/template/template-gate.ts';
import { TemplateStore } from '../src/sandbox/template/template-store.ts';
import { runCli } from './helpers/cli-harness.ts';
import { FakeEngine } from './helpers/fake-engine.ts';

/** A one-file function directory, as a deploy would hand the store. */
async function moduleDir(code: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-source-'));
  await fs.writeFile(path.join(dir, 'handler.mjs'), code);
  return dir;
}

const id = (n: number) => n.toString(16).padStart(24, '0');

describe('retention rule', () => {
  const fn = (name: string, active: number | null, templates: number[]) => ({ name, active, versions: templates.map((t, i) => ({ version: i + 1, templateId: id(t) })) });

  it('keeps the active version and the N newest other versions', () => {
    const live = retainedTemplates([fn('a', 5, [1, 2, 3, 4, 5])], 2);
    assert.deepEqual([...live.keys()].sort(), [id(3), id(4), id(5)]);
    assert.equal(live.get(id(5)), 'active:a@v5');
    assert.equal(live.get(id(4)), 'kept:a@v4');
  });

  it('keeps an old active version (after a rollback) besides the newest ones', () => {
    const live = retainedTemplates([fn('a', 1, [1, 2, 3, 4, 5])], 2);
    assert.deepEqual([...live.keys()].sort(), [id(1), id(4), id(5)]);
  });

  it('counts versions, not templates: env-only versions share their template', () => {
    const live = retainedTemplates([fn('a', 5, [1, 2, 3, 3, 3])], 3);
    assert.deepEqual([...live.keys()].sort(), [id(2), id(3)]);
  });

  it('keepVersions 0 keeps only active templates; a function without an active version keeps only its newest', () => {
    assert.deepEqual([...retainedTemplates([fn('a', 2, [1, 2, 3])], 0).keys()], [id(2)]);
    assert.deepEqual([...retainedTemplates([fn('b', null, [1, 2])], 1).keys()], [id(2)]);
    assert.throws(() => retainedTemplates([], -1), RangeError);
  });

  it('a template shared by two functions lives while either keeps it', () => {
    const live = retainedTemplates([fn('a', 2, [1, 2]), fn('b', 1, [1])], 0);
    assert.deepEqual([...live.keys()].sort(), [id(1), id(2)]);
  });
});

describe('TemplateGate', () => {
  it('the exclusive side waits for shared holders; shared never queues behind a waiting exclusive', async () => {
    const gate = new TemplateGate();
    const order: string[] = [];
    let releaseBuild!: () => void;
    const build = gate.shared(() => new Promise<void>((r) => (releaseBuild = r)).then(() => void order.push('build done')));
    const gc = gate.exclusive(async () => void order.push('gc'));
    await new Promise((r) => setImmediate(r));
    assert.equal(gate.state.waitingExclusive, 1);
    // An activation meanwhile is not stuck behind the waiting collector.
    await gate.shared(async () => void order.push('activate'));
    releaseBuild();
    await Promise.all([build, gc]);
    assert.deepEqual(order, ['activate', 'build done', 'gc']);
  });

  it('shared requests wait while the exclusive side is held', async () => {
    const gate = new TemplateGate();
    const order: string[] = [];
    let releaseGc!: () => void;
    const gc = gate.exclusive(() => new Promise<void>((r) => (releaseGc = r)).then(() => void order.push('gc')));
    const use = gate.shared(async () => void order.push('use'));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, []);
    releaseGc();
    await Promise.all([gc, use]);
    assert.deepEqual(order, ['gc', 'use']);
    assert.deepEqual(gate.state, { shared: 0, exclusive: false, waitingExclusive: 0 });
  });
});

describe('TemplateCollector (real registry, fake templates)', () => {
  let home: string;
  let store: FunctionStore;
  let templates: TemplateStore;
  const inUse = new Set<string>();

  const draft = (templateId: string): NewVersion => ({ templateId, source: 'deploy', config: FunctionConfig.parse({}), env: {}, secrets: {}, bundleHash: 'b'.repeat(64), fingerprint: templateId });
  const fakeTemplate = async (templateId: string, bytes = 4096) => {
    await templates.getOrBuild(templateId, async (tmp) => {
      await fs.writeFile(path.join(tmp, 'image.bin'), Buffer.alloc(bytes, 1));
      return { driver: 'fake', handlerConfig: {}, buildMs: 1, imageBytes: bytes };
    });
  };
  const collector = (options: Partial<ConstructorParameters<typeof TemplateCollector>[0]> = {}) =>
    new TemplateCollector({ templates, registry: store, inUse: () => inUse, keepVersions: 1, minAgeMs: 0, ...options });

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-gc-unit-'));
    store = await FunctionStore.open(home);
    templates = new TemplateStore(path.join(home, 'templates'));
    for (let v = 1; v <= 5; v++) {
      await fakeTemplate(id(v));
      await store.lock('f', async () => {
        const version = await store.addVersion('f', draft(id(v)), await moduleDir('export default () => 1'));
        await store.setActive('f', version.version);
      });
    }
    await fakeTemplate(id(100)); // an eval template
    await fakeTemplate(id(101)); // a running sandbox's
    await fakeTemplate(id(102)); // published to worker nodes
    await fs.mkdir(path.join(templates.root, `.tmp-${id(103)}-1-abcd`)); // someone's build in progress
  });

  after(async () => {
    await store.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  it('a dry run reports and removes nothing; a real run removes what no source needs', async () => {
    inUse.add(id(101));
    const gc = collector({ evalTemplates: () => [id(100)], published: async () => [id(102)] });
    const dry = await gc.collect({ dryRun: true });
    assert.deepEqual(dry.removed.map((r) => r.id), [id(1), id(2), id(3)]);
    assert.ok(dry.bytesFreed >= 3 * 4096, String(dry.bytesFreed));
    assert.equal((await templates.list()).length, 8);
    const report = GcReport.parse(await gc.collect());
    assert.deepEqual(report.removed.map((r) => r.id), [id(1), id(2), id(3)]);
    assert.deepEqual(
      Object.fromEntries(report.kept.map((k) => [k.id, k.reason])),
      { [id(4)]: 'kept:f@v4', [id(5)]: 'active:f@v5', [id(100)]: 'eval', [id(101)]: 'in-use', [id(102)]: 'published' },
    );
    assert.deepEqual((await templates.list()).map((t) => t.id), [id(4), id(5), id(100), id(101), id(102)]);
    // The build directory and nothing in the trash.
    assert.deepEqual((await fs.readdir(templates.root)).filter((e) => e.startsWith('.')).sort(), ['.tmp-' + id(103) + '-1-abcd', '.trash']);
    assert.deepEqual(await fs.readdir(path.join(templates.root, '.trash')), []);
    await gc.close();
  });

  it('keeps templates younger than minAgeMs (shared store) and honours a keepVersions override', async () => {
    inUse.clear();
    const young = await collector({ minAgeMs: 60_000 }).collect({ dryRun: true, keepVersions: 0 });
    assert.deepEqual(young.removed, []);
    const gc = collector();
    const report = await gc.collect({ keepVersions: 0 });
    assert.deepEqual(report.removed.map((r) => r.id), [id(4), id(100), id(101), id(102)]);
    assert.deepEqual((await templates.list()).map((t) => t.id), [id(5)]);
    await gc.close();
  });

  it('never removes a template while a build holds the gate; schedule() never throws and close() waits', async () => {
    const gate = new TemplateGate();
    let releaseBuild!: () => void;
    const building = gate.shared(() => new Promise<void>((r) => (releaseBuild = r)));
    const gc = collector({ gate, keepVersions: 0, registry: { list: async () => [], versions: async () => [] } });
    const run = gc.collect();
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual((await templates.list()).map((t) => t.id), [id(5)], 'still there while the build runs');
    releaseBuild();
    await building;
    assert.deepEqual((await run).removed.map((r) => r.id), [id(5)]);
    const failing = collector({ registry: { list: async () => Promise.reject(new Error('disk on fire')), versions: async () => [] }, log: (l) => logs.push(l) });
    const logs: string[] = [];
    failing.schedule('test');
    for (let i = 0; i < 100 && logs.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await failing.close();
    assert.match(logs.join('\n'), /gc \(test\) failed: disk on fire/);
    await assert.rejects(failing.collect(), { code: 'shutting_down' });
    await gc.close();
  });
});

describe('POST /v1/admin/gc and fn gc', () => {
  let home: string;
  let store: FunctionStore;
  let engine: FakeEngine;
  let gc: TemplateCollector;

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-gc-api-'));
    store = await FunctionStore.open(home);
    engine = await FakeEngine.create();
    gc = new TemplateCollector({ templates: new TemplateStore(path.join(home, 'templates')), registry: store, keepVersions: 3, minAgeMs: 0 });
  });

  after(async () => {
    await gc.close();
    await store.close();
    await engine.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  const app = () => createGateway({ engine, store, gc, config: { apiKey: 'gc-test-key-123', maxBodyBytes: 4096, maxDeployBytes: 1 << 20 } });
  const post = (body: string | undefined, key = 'gc-test-key-123') =>
    app().request('/v1/admin/gc', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body }) });

  it('answers a report; rejects bad input with 400 JSON errors and a wrong key with 401', async () => {
    const ok = await post(undefined);
    assert.equal(ok.status, 200);
    assert.deepEqual({ ...GcReport.parse(await ok.json()), durationMs: 0 }, { dryRun: false, keepVersions: 3, removed: [], kept: [], bytesFreed: 0, durationMs: 0 });
    for (const body of ['{"keepVersions":-1}', '{"dryRun":"yes"}', '{"bogus":1}', 'not json', '{"keepVersions":1.5}']) {
      const res = await post(body);
      assert.equal(res.status, 400, body);
      const json = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(json.error.code, 'invalid_input', body);
      assert.ok(json.error.message.length > 0);
    }
    const unauthorized = await post('{}', 'wrong-key-xxxxxxxx');
    assert.equal(unauthorized.status, 401);
    assert.equal(((await unauthorized.json()) as { error: { code: string } }).error.code.length > 0, true);
  });

  it('fn gc validates its flags with the same schema: exit 2, one line', async () => {
    for (const argv of [['gc', '--keep', 'many'], ['gc', '--keep', '100000'], ['gc', 'extra'], ['gc', '--bogus']]) {
      const run = await runCli(argv, { env: { FN_URL: 'http://127.0.0.1:9' } });
      assert.equal(run.code, 2, argv.join(' '));
      assert.equal(run.stderr.split('\n').filter(Boolean).length, 1, run.stderr);
      assert.match(run.stderr, /^fn: /);
    }
  });

  it('fn gc prints the report; gateway errors exit 1 with one line', async () => {
    const { startGateway } = await import('../src/gateway/server.ts');
    const gateway = await startGateway({ engine, store, gc, config: { apiKey: 'gc-test-key-123', maxBodyBytes: 4096, maxDeployBytes: 1 << 20 }, port: 0, hostname: '127.0.0.1' });
    try {
      const env = { FN_URL: gateway.url, FN_API_KEY: 'gc-test-key-123' };
      const dry = await runCli(['gc', '--dry-run', '--keep', '0'], { env });
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /would remove 0 template\(s\)/);
      const json = await runCli(['gc', '--json'], { env });
      assert.equal(GcReport.parse(JSON.parse(json.stdout)).dryRun, false);
      const denied = await runCli(['gc'], { env: { ...env, FN_API_KEY: 'wrong-key-xxxxxxxx' } });
      assert.equal(denied.code, 1);
      assert.match(denied.stderr, /^fn: unauthorized|^fn: \w+: /);
      assert.equal(denied.stderr.split('\n').filter(Boolean).length, 1);
    } finally {
      await gateway.close({ graceMs: 100 });
    }
  });
});
