// Runs the conformance cases (cases.ts) against one sandbox driver: a real
// gateway as `npm start` runs it (startSnapfn with SNAPFN_DRIVER, the
// examples, eval on), functions deployed with the fn CLI, invoked over HTTP.
// One entry file per driver (test/conformance.<driver>.test.ts) picks the
// cases and says why any is left out.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { loadConfig } from '../../src/config.ts';
import type { RunningSnapfn } from '../../src/snapfn.ts';
import { leftovers } from '../support/leaks.ts';
import { CASES, type CaseName, type ConformanceContext } from './cases.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FN_BIN = path.join(ROOT, 'wrangler-free-deploy/bin/fn.js');

export interface ConformanceRun {
  driver: 'gvisor' | 'qemu' | 'firecracker';
  /** Why this driver cannot run here; the suite is then skipped with it. */
  skip?: string | undefined;
  /** The cases to run (default: all). */
  cases?: CaseName[];
  timeoutMs: number;
}

/** Processes and sandbox directories of `driver` a run under `home` left behind (besides what leaks.ts looks for). */
async function driverLeftovers(home: string, driver: string): Promise<string[]> {
  const found: string[] = [];
  const ps = await execa('ps', ['-eo', 'pid=,args='], { reject: false });
  for (const line of String(ps.stdout).split('\n')) if (/qemu-system|firecracker/.test(line) && line.includes(home)) found.push(`process ${line.trim().slice(0, 120)}`);
  for (const entry of await fs.readdir(path.join(home, driver, 'sandboxes')).catch(() => [])) found.push(`sandbox dir ${entry}`);
  return found;
}

export function conformanceSuite(run: ConformanceRun): void {
  const cases = run.cases ? CASES.filter((c) => run.cases!.includes(c.name)) : CASES;
  const left = CASES.filter((c) => !cases.includes(c)).map((c) => c.name);
  if (run.skip) console.log(`# SKIP ${run.driver} conformance: ${run.skip}`);
  else if (left.length > 0) console.log(`# ${run.driver} conformance leaves out: ${left.join(', ')}`);

  describe(`driver conformance: ${run.driver}`, { skip: run.skip ?? false, timeout: run.timeoutMs }, () => {
    let home: string;
    let work: string;
    let snapfn: RunningSnapfn;
    const timings: string[] = [];
    const ctx: ConformanceContext = {
      driver: run.driver,
      get url() {
        return snapfn.url;
      },
      async deploy(name, from, flags = []) {
        let dir = from;
        if (from.endsWith('.mjs')) {
          // One module: a function directory of its own.
          dir = path.join(work, 'functions', name);
          await fs.mkdir(dir, { recursive: true });
          await fs.copyFile(from, path.join(dir, 'index.mjs'));
        }
        const started = performance.now();
        const r = await execa('node', [FN_BIN, 'deploy', dir, '--name', name, ...flags], { env: { ...process.env, FN_URL: snapfn.url, FN_API_KEY: '' }, reject: false, timeout: 5 * 60_000 });
        assert.equal(r.exitCode, 0, `fn deploy ${name}: ${r.stdout}\n${r.stderr}`);
        timings.push(`deploy ${name}: ${Math.round(performance.now() - started)} ms`);
      },
    };

    before(async () => {
      // Under the repository, so that the examples' packages resolve from its node_modules as they do in functions/.
      // test-output/ is not in git: a fresh clone has none yet.
      await fs.mkdir(path.join(ROOT, 'test-output'), { recursive: true });
      work = await fs.mkdtemp(path.join(ROOT, 'test-output', `conformance-${run.driver}-`));
      home = path.join(work, 'home');
      const examples = path.join(work, 'examples');
      // The examples of the three handler shapes, served from start-up as by `npm start`.
      for (const name of ['hello', 'workers-greeter', 'lambda-page']) await fs.cp(path.join(ROOT, 'functions', name), path.join(examples, name), { recursive: true });
      const env = {
        ...process.env,
        SNAPFN_DRIVER: run.driver,
        SNAPFN_HOME: home,
        PORT: '0',
        SNAPFN_API_KEY: '',
        SNAPFN_POOL_SIZE: '0',
        SNAPFN_MAX_SANDBOXES: '4',
        // better-sqlite3 with its sources is ~30 MB.
        SNAPFN_MAX_BUNDLE_BYTES: String(256 * 1024 * 1024),
      };
      // createEngine reads the driver from the environment, as `npm start` does.
      process.env.SNAPFN_DRIVER = run.driver;
      const { startSnapfn } = await import('../../src/snapfn.ts');
      const started = performance.now();
      snapfn = await startSnapfn({ config: loadConfig(env), examplesDir: examples, queue: false, eval: cases.some((c) => c.name === 'eval'), hostname: '127.0.0.1', log: () => {} });
      timings.push(`start-up (examples${cases.some((c) => c.name === 'eval') ? ' and eval templates' : ''}): ${Math.round(performance.now() - started)} ms`);
      assert.deepEqual(snapfn.examples.filter((e) => e.error), [], 'every example deployed');
      assert.equal(snapfn.engine.driverInfo?.().name, run.driver);
    });

    after(async () => {
      await snapfn?.close();
      const found = home ? [...(await leftovers(home)), ...(await driverLeftovers(home, run.driver))] : [];
      if (timings.length > 0) console.log(`# ${run.driver} conformance timings:\n# ${timings.join('\n# ')}`);
      if (work) await fs.rm(work, { recursive: true, force: true });
      assert.deepEqual(found, [], 'sandboxes, processes, namespaces or mounts left behind');
    });

    for (const c of cases) {
      it(`${c.name}: ${c.title}`, async () => {
        const started = performance.now();
        await c.run(ctx);
        timings.push(`${c.name}: ${Math.round(performance.now() - started)} ms`);
      });
    }
  });
}
