// npm run bench [-- --quick] [-- --json]
//
// Every scenario runs in this one process, one after another, against the
// same function, so the ratios compare like with like on a noisy machine.
// Scenarios that have an HTTP path go through the real gateway.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { loadConfig } from '../src/config.ts';
import type { Orchestrator } from '../src/orchestrator/orchestrator.ts';
import type { Sandbox } from '../src/sandbox/driver.ts';
import type { GvisorDriver } from '../src/sandbox/gvisor/gvisor-driver.ts';
import { startSnapfn } from '../src/snapfn.ts';
import { FUNCTION_META_PATH, hashSourceDir, type FunctionMeta } from '../src/sandbox/template/function-source.ts';
import { GatewayClient } from './gateway-client.ts';
import { sandboxMemory } from './memory.ts';
import { writeResults, table, type BenchResult, type Scenario } from './report.ts';
import { progress, summarize, timed } from './stats.ts';
import { benchUffd } from './uffd.ts';
import { benchDrivers } from './drivers.ts';
import { benchEval } from './eval.ts';
import { benchPeers, cannon, loadTableLines, type LoadTable } from './load.ts';
import { benchOpenLoop } from './open-loop.ts';
import { benchStreaming } from './streaming.ts';

const { values: flags } = parseArgs({ options: { quick: { type: 'boolean' }, json: { type: 'boolean' }, function: { type: 'string' } } });
const quick = !!flags.quick;
const N = quick ? 15 : 40;
const HERE = path.dirname(fileURLToPath(import.meta.url));
const FUNCTION_DIR = path.resolve(HERE, '..', 'functions', flags.function ?? 'hello');

async function sample(label: string, n: number, once: () => Promise<unknown>, before?: () => Promise<void>): Promise<Scenario> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    if (before) await before();
    const [ms] = await timed(once);
    samples.push(ms);
    if ((i + 1) % Math.max(1, Math.floor(n / 4)) === 0) progress(`${label}: ${i + 1}/${n}`);
  }
  return { ...summarize(samples) };
}

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
}

async function main(): Promise<void> {
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-bench-'));
  const config = loadConfig({ ...process.env, SNAPFN_HOME: home, PORT: '0', SNAPFN_MAX_SANDBOXES: '10', SNAPFN_POOL_SIZE: '0', SNAPFN_API_KEY: '' });
  progress(`starting a gateway (SNAPFN_HOME=${home})`);
  const snapfn = await startSnapfn({ config, examplesDir: false, eval: true, log: (line) => progress(line.trim()) });
  const engine = snapfn.engine as Orchestrator<GvisorDriver>;
  const client = new GatewayClient(snapfn.url);
  const scenarios: Record<string, Scenario> = {};
  let memory: { idle_sandbox_mb: number | null; idle_sandbox_rss_mb: number | null } = { idle_sandbox_mb: null, idle_sandbox_rss_mb: null };
  const fnName = path.basename(FUNCTION_DIR);
  try {
    progress(`deploying ${fnName} (template build)`);
    const [buildMs] = await timed(() => client.deploy(FUNCTION_DIR, 'bench-restore', { poolSize: 0 }));
    const serving = await snapfn.store.serving('bench-restore');
    const template = (await engine.driver.loadTemplate(serving!.deployment.templateId))!;
    const sourceDir = path.join(template.dir, 'bundle');
    const fnSource = { sourceDir, sourceHash: await hashSourceDir(sourceDir) };
    const source = { functionName: fnName, ...fnSource, network: 'none' as const };
    const entryFile = path.join(sourceDir, (JSON.parse(await fs.readFile(path.join(sourceDir, FUNCTION_META_PATH), 'utf8')) as FunctionMeta).entry);

    progress('(a) node floor: a fresh plain `node` process runs the same bundle, no sandbox');
    scenarios.node_floor = await sample('node floor', N, () => execa(process.execPath, [path.join(HERE, 'node-floor.mjs'), entryFile]));

    // Cold boot has no HTTP path, so it is compared with a restore at the
    // same (engine) level, sample by sample in turn: both see the same load.
    progress('(b) cold boot (no snapshot) and a restore from the template, each + one request, alternating (engine level)');
    const request = { method: 'GET', url: 'http://localhost/fn/bench', headers: [] as Array<[string, string]> };
    const once = async (start: () => Promise<Sandbox>): Promise<number> => {
      let sandbox: Sandbox | undefined;
      const [ms] = await timed(async () => {
        sandbox = await start();
        const outcome = await sandbox.invoke(request, { timeoutMs: 10_000, env: {}, invocationId: 'bench' });
        if (!outcome.ok) throw new Error(`invocation failed: ${outcome.error.message}`);
      });
      await sandbox?.destroy();
      return ms;
    };
    const cold: number[] = [];
    const restored: number[] = [];
    for (let i = 0; i < N; i++) {
      cold.push(await once(() => engine.driver.coldBoot(source, { memoryMb: 256, network: 'none' })));
      restored.push(await once(() => engine.driver.resume(template, { memoryMb: 256, network: 'none' })));
      if ((i + 1) % Math.max(1, Math.floor(N / 4)) === 0) progress(`cold boot / restore: ${i + 1}/${N}`);
    }
    scenarios.cold_boot = { ...summarize(cold) };
    scenarios.restore_engine = { ...summarize(restored) };

    progress('(c) restore from the template per request, warm pool off (HTTP)');
    scenarios.restore = await sample('restore', N, () => client.invoke('bench-restore'));

    progress('(d) pool hit: a fresh pre-restored sandbox is waiting (HTTP)');
    await client.deploy(FUNCTION_DIR, 'bench-pool', { poolSize: 1 });
    const pooled = () => (engine.stats().pooled['bench-pool'] ?? 0) >= 1;
    const hitsBefore = engine.stats().poolHits;
    scenarios.pool_hit = await sample('pool hit', N, () => client.invoke('bench-pool'), () => until(pooled, 30_000));
    scenarios.pool_hit.hits = engine.stats().poolHits - hitsBefore;
    await until(pooled, 30_000);
    const [idleId] = engine.pooledSandboxIds();
    if (idleId) {
      const m = await sandboxMemory(idleId);
      memory = { idle_sandbox_mb: m.pssMb, idle_sandbox_rss_mb: m.rssMb };
    }
    await client.remove('bench-pool');

    progress('(e) keepWarm reuse: requests 100 ms apart find the sandbox running (it is frozen only after SNAPFN_PAUSE_AFTER_MS idle) (HTTP)');
    await client.deploy(FUNCTION_DIR, 'bench-warm', { keepWarm: true, poolSize: 0 });
    await client.invoke('bench-warm');
    scenarios.keep_warm = await sample('keep warm', N, () => client.invoke('bench-warm'), () => new Promise((r) => setTimeout(r, 100)));

    progress('fresh sandboxes sustained: concurrent requests, each in a new sandbox, pool refilling (HTTP)');
    await client.deploy(FUNCTION_DIR, 'bench-fresh', { poolSize: 2 });
    const fresh = quick ? 24 : 60;
    // Sustained, not a burst: a fixed number of clients, each sending its next request when the last returns.
    const clients = 4;
    let sent = 0;
    let freshFailed = 0;
    const [freshMs] = await timed(() =>
      Promise.all(
        Array.from({ length: clients }, async () => {
          while (sent < fresh) {
            sent++;
            await client.invoke('bench-fresh').catch(() => freshFailed++);
          }
        }),
      ),
    );
    scenarios.fresh_sustained = { n: fresh, clients, failed: freshFailed, rps: Math.round(((fresh - freshFailed) / (freshMs / 1000)) * 100) / 100 };
    await client.remove('bench-fresh');

    const burst = quick ? 200 : 1000;
    progress(`(f) burst: ${burst} concurrent requests against a keepWarm function, beyond capacity (HTTP)`);
    const latencies: number[] = [];
    let failed = 0;
    const [burstMs] = await timed(() =>
      Promise.all(
        Array.from({ length: burst }, async () => {
          const [ms, ok] = await timed(() => client.invoke('bench-warm').then(() => true, () => false));
          if (ok) latencies.push(ms);
          else failed++;
        }),
      ),
    );
    scenarios.burst = { ...summarize(latencies), n: burst, failed, rps: Math.round((latencies.length / (burstMs / 1000)) * 100) / 100 };

    progress('(g) eval: POST /v1/eval per language (javascript and python `1+1`, bash `echo 2`), one a second, default warm pool');
    const evals = await benchEval(client, N, progress);
    if (evals) Object.assign(scenarios, evals);
    else progress('  /v1/eval is not available on this gateway: skipped');

    // Closed loop, the way a user's load generator applies it: the peers and
    // snapfn's paths in turn, same handler, same machine, same run.
    const loadSeconds = quick ? 3 : 8;
    progress(`(h) load: autocannon c=1 and c=8, ${loadSeconds} s per row: plain node, workerd, snapfn keepWarm, concurrency 8, fresh`);
    const load: LoadTable = await benchPeers(loadSeconds, [1, 8]);
    await client.deploy(FUNCTION_DIR, 'bench-conc', { keepWarm: true, concurrency: 8, poolSize: 0 });
    await client.invoke('bench-conc');
    await client.deploy(FUNCTION_DIR, 'bench-fresh-load', { poolSize: 2 });
    for (const [label, name] of [
      ['snapfn keepWarm', 'bench-warm'],
      ['snapfn keepWarm, concurrency 8', 'bench-conc'],
      ['snapfn fresh sandbox per request (pool 2)', 'bench-fresh-load'],
    ] as const) {
      load[label] = {};
      for (const c of [1, 8]) {
        progress(`load: ${label}, c=${c}`);
        load[label]![`c${c}`] = await cannon(`${snapfn.url}/fn/${name}?name=bench`, c, loadSeconds);
      }
    }
    await client.remove('bench-fresh-load');
    await client.remove('bench-conc');
    const workerd = load['workerd (same handler as a Workers module)'];
    const warm = load['snapfn keepWarm'];
    const conc = load['snapfn keepWarm, concurrency 8'];

    progress('(i) streaming: 30 MiB through the gateway next to a plain node server; time to first byte of a streamed response');
    Object.assign(scenarios, await benchStreaming(client, snapfn.url, quick ? 3 : 8, progress));

    progress('uffd: touching a working set through the page server, with prefetch, and through a private mapping');
    const uffd = await benchUffd({ quick, progress });

    const p50 = (k: string) => Number(scenarios[k]?.p50_ms);
    const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
    const result: BenchResult = {
      date: new Date().toISOString(),
      quick,
      function: fnName,
      driver: `${engine.driver.name}/${engine.driver.platform}`,
      template: { id: template.id, build_ms: Math.round(buildMs), image_bytes: template.imageBytes },
      scenarios,
      ratios: {
        cold_boot_over_restore: ratio(p50('cold_boot'), p50('restore_engine')),
        cold_boot_over_restore_http: ratio(p50('cold_boot'), p50('restore')),
        restore_over_pool_hit: ratio(p50('restore'), p50('pool_hit')),
        restore_over_keep_warm: ratio(p50('restore'), p50('keep_warm')),
        restore_over_node_floor: ratio(p50('restore'), p50('node_floor')),
        pool_hit_over_node_floor: ratio(p50('pool_hit'), p50('node_floor')),
      },
      memory,
      uffd,
      load,
      load_ratios: {
        keep_warm_c1_rps_over_workerd: ratio(warm?.c1?.rps ?? NaN, workerd?.c1?.rps ?? NaN),
        keep_warm_c8_rps_over_workerd: ratio(warm?.c8?.rps ?? NaN, workerd?.c8?.rps ?? NaN),
        concurrency8_c8_rps_over_workerd: ratio(conc?.c8?.rps ?? NaN, workerd?.c8?.rps ?? NaN),
      },
      runsc: (engine.driver as { runscVersion?: string }).runscVersion ?? null,
    };
    progress(`(j) open loop: Poisson arrivals at 1 rps for ${quick ? 20 : 60} s against a fresh function with the default config`);
    result.scenarios.open_loop = await benchOpenLoop({ quick, progress });
    // SNAPFN_BENCH_DRIVERS (bench/drivers.ts): other drivers' columns; nothing when unset.
    const drivers = await benchDrivers({ quick, source: fnSource, functionName: fnName, progress });
    if (drivers) result.drivers = drivers;
    await writeResults(path.join(HERE, 'results'), result);
    process.stderr.write('\n' + table(result) + '\n\n');
    if (flags.json) process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await snapfn.close();
    await fs.rm(home, { recursive: true, force: true });
  }
}

await main();
