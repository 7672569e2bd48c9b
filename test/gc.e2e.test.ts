import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { VersionList } from '../src/schemas/api.ts';
import { GcReport } from '../src/schemas/gc.ts';
import type { RunningSnapfn } from '../src/snapfn.ts';
import { runCli } from './helpers/cli-harness.ts';

/*
 * Template GC through the real engine (gVisor): five changed deploys, a
 * collection keeping one rollback version, the active version still
 * serving, and a rollback to a collected version rebuilding its template
 * from the stored bundle.
 */

const handler = (label: string) => `export default async () => ({ label: ${JSON.stringify(label)} });\n`;

describe('e2e: template garbage collection', { timeout: 20 * 60_000 }, () => {
  let home: string;
  let work: string;
  let snapfn: RunningSnapfn;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-gc-e2e-home-'));
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-gc-e2e-work-'));
    const { startSnapfn } = await import('../src/snapfn.ts');
    const config = loadConfig({ ...process.env, SNAPFN_HOME: home, PORT: '0', SNAPFN_API_KEY: '', SNAPFN_POOL_SIZE: '0', SNAPFN_MAX_SANDBOXES: '2', SNAPFN_GC_KEEP_VERSIONS: '1', SNAPFN_EXAMPLES: '0' });
    snapfn = await startSnapfn({ config, hostname: '127.0.0.1', queue: false, examplesDir: false, log: () => {} });
    env = { FN_URL: snapfn.url, FN_API_KEY: '' };
  });

  after(async () => {
    await snapfn?.close();
    await fs.rm(work, { recursive: true, force: true });
    await fs.rm(home, { recursive: true, force: true });
  });

  const templateDirs = async () => (await fs.readdir(path.join(home, 'templates'))).filter((e) => /^[0-9a-f]{24}$/.test(e)).sort();
  const versions = async () => VersionList.parse(await (await fetch(`${snapfn.url}/v1/functions/gcfn/versions`)).json()).versions;
  const invoke = async () => {
    const res = await fetch(`${snapfn.url}/fn/gcfn`);
    assert.equal(res.status, 200, await res.clone().text());
    return ((await res.json()) as { label: string }).label;
  };

  it('deploys 5 versions, collects all but the active and one rollback version, rebuilds on rollback', async () => {
    for (let v = 1; v <= 5; v++) {
      const dir = path.join(work, `v${v}`);
      await fs.mkdir(dir, { recursive: true });
      await fs.writeFile(path.join(dir, 'index.js'), handler(`v${v}`));
      const run = await runCli(['deploy', dir, '--name', 'gcfn'], { env });
      assert.equal(run.code, 0, run.stderr);
    }
    const all = await versions();
    assert.equal(all.length, 5);
    const templateOf = (v: number) => all.find((x) => x.version === v)!.templateId;
    assert.equal(new Set(all.map((v) => v.templateId)).size, 5, 'each changed bundle has its own template');

    // The background collection after each deploy did most of it (the last one may still be under way); then one on demand.
    const report = GcReport.parse(await (await fetch(`${snapfn.url}/v1/admin/gc`, { method: 'POST' })).json());
    assert.ok(report.removed.every((r) => [1, 2, 3].map(templateOf).includes(r.id)), JSON.stringify(report.removed));
    assert.deepEqual(await templateDirs(), [templateOf(4), templateOf(5)].sort());
    assert.deepEqual(Object.fromEntries(report.kept.map((k) => [k.id, k.reason])), { [templateOf(5)]: 'active:gcfn@v5', [templateOf(4)]: 'kept:gcfn@v4' });
    assert.deepEqual(await fs.readdir(path.join(home, 'templates', '.trash')), []);

    assert.equal(await invoke(), 'v5');

    // v2's template is gone: the rollback rebuilds it from the stored bundle (same content, same id, no new version).
    const rolled = await runCli(['rollback', 'gcfn', '2'], { env });
    assert.equal(rolled.code, 0, rolled.stderr);
    assert.equal(await invoke(), 'v2');
    assert.ok((await templateDirs()).includes(templateOf(2)));
    assert.equal((await versions()).length, 5);
    assert.equal((await versions()).find((v) => v.active)?.version, 2);

    // Now v2 is active and v5 the newest other version: v4 goes, v2 and v5 stay.
    const dry = await runCli(['gc', '--dry-run', '--json'], { env });
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(GcReport.parse(JSON.parse(dry.stdout)).removed.map((r) => r.id), [templateOf(4)]);
    const real = await runCli(['gc'], { env });
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, /removed 1 template\(s\)/);
    assert.deepEqual(await templateDirs(), [templateOf(2), templateOf(5)].sort());
    assert.equal(await invoke(), 'v2');
  });
});
