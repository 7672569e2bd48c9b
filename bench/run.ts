// npm run bench [-- --quick] [-- --json]
//
// Every scenario runs in this one process, one after another, against the
// same function, so the ratios compare like with like on a noisy machine.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { createEngine } from '../src/orchestrator/index.ts';
import type { Deployment } from '../src/orchestrator/types.ts';
import { FunctionConfig } from '../src/schemas/function-config.ts';
import type { WireRequest } from '../src/schemas/invocation.ts';
import { sandboxMemory } from './memory.ts';
import { progress, summarize, timed, type LatencySummary } from './stats.ts';

const { values: flags } = parseArgs({ options: { quick: { type: 'boolean' }, json: { type: 'boolean' } } });
const N = flags.quick ? 10 : 30;
const HERE = path.dirname(fileURLToPath(import.meta.url));
const BUNDLE = path.join(HERE, '..', 'test', 'fixtures', 'hello.mjs');
const REQUEST: WireRequest = { method: 'GET', url: 'http://localhost/fn/hello?name=bench', headers: [] };

function check(outcome: { ok: boolean }): void {
  if (!outcome.ok) throw new Error(`bench invocation failed: ${JSON.stringify(outcome)}`);
}

async function sample(label: string, n: number, once: () => Promise<void>, between?: () => Promise<void>): Promise<LatencySummary> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    if (between) await between();
    const [ms] = await timed(once);
    samples.push(ms);
    if ((i + 1) % Math.max(1, Math.floor(n / 5)) === 0) progress(`${label}: ${i + 1}/${n}`);
  }
  return summarize(samples);
}

async function main(): Promise<void> {
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-bench-'));
  const engine = await createEngine({ home, maxSandboxes: 6, poolSize: 0, maxWaitMs: 120_000 });
  const scenarios: Record<string, Record<string, unknown>> = {};
  const memory: Record<string, number> = {};
  try {
    progress('building the template of test/fixtures/hello.mjs');
    const [buildMs, template] = await timed(() => engine.buildTemplate({ functionName: 'hello', bundleFile: BUNDLE, network: 'none' }, (step) => progress(`template: ${step}`)));
    const config = FunctionConfig.parse({});
    const deployment = (name: string, extra: Partial<FunctionConfig> = {}): Deployment => ({ name, version: 1, templateId: template.id, config: { ...config, ...extra }, env: {} });
    const source = { functionName: 'hello', bundleFile: BUNDLE, network: 'none' as const };

    progress('(a) node floor: a fresh plain node process per request, no sandbox');
    scenarios.node_floor = { ...(await sample('node floor', N, async () => {
      const { stdout } = await execa(process.execPath, [path.join(HERE, 'node-floor.mjs'), BUNDLE]);
      if (!stdout.includes('bench')) throw new Error('node floor produced no result');
    })) };

    progress('(b) cold boot: boot the sandbox from scratch (no snapshot), invoke, destroy');
    scenarios.cold_boot = { ...(await sample('cold boot', N, async () => {
      const sandbox = await engine.driver.coldBoot(source, { memoryMb: config.memoryMb, network: 'none' });
      check(await sandbox.invoke(REQUEST, { timeoutMs: 10_000, env: {}, invocationId: 'cold' }));
      void sandbox.destroy();
    })) };

    progress('(c) restore per request, warm pool off');
    const restoreFn = deployment('restore');
    await engine.activate(restoreFn);
    scenarios.restore = { ...(await sample('restore', N, async () => check((await engine.invoke(restoreFn, REQUEST, { invocationId: 'r' })).outcome))) };
    await engine.deactivate('restore');

    progress('(d) pool hit: a pre-restored sandbox is waiting');
    const poolFn = deployment('pool', { poolSize: 1 });
    await engine.activate(poolFn);
    const waitForPool = async () => {
      for (let i = 0; i < 600 && (engine.stats().pooled.pool ?? 0) < 1; i++) await new Promise((r) => setTimeout(r, 10));
    };
    let hits = 0;
    scenarios.pool_hit = { ...(await sample('pool hit', N, async () => {
      const { outcome, timings } = await engine.invoke(poolFn, REQUEST, { invocationId: 'p' });
      check(outcome);
      if (timings.source === 'pool') hits++;
    }, waitForPool)), hits };
    await waitForPool();
    for (const id of engine.pooledSandboxIds().slice(0, 1)) Object.assign(memory, await sandboxMemory(id));
    await engine.deactivate('pool');

    progress('(e) keepWarm reuse: unpause, invoke, re-pause');
    const warmFn = deployment('warm', { keepWarm: true });
    await engine.activate(warmFn);
    check((await engine.invoke(warmFn, REQUEST, { invocationId: 'w0' })).outcome);
    scenarios.keep_warm = { ...(await sample('keep warm', N, async () => check((await engine.invoke(warmFn, REQUEST, { invocationId: 'w' })).outcome), () => new Promise((r) => setTimeout(r, 50)))) };
    await engine.deactivate('warm');

    progress('(f) fresh sandboxes sustained: restores per second with the pool refilling');
    const sustainedFn = deployment('sustained', { poolSize: 2 });
    await engine.activate(sustainedFn);
    const total = flags.quick ? 20 : 50;
    const [sustainedMs] = await timed(() => Promise.all(Array.from({ length: total }, (_, i) => engine.invoke(sustainedFn, REQUEST, { invocationId: `s${i}` }).then((r) => check(r.outcome)))));
    scenarios.fresh_sustained = { rps: Math.round((total / (sustainedMs / 1000)) * 100) / 100, n: total };
    await engine.deactivate('sustained');

    const p50 = (k: string) => Number(scenarios[k]?.p50_ms);
    const ratios = {
      cold_boot_over_restore: Math.round((p50('cold_boot') / p50('restore')) * 100) / 100,
      restore_over_pool_hit: Math.round((p50('restore') / p50('pool_hit')) * 100) / 100,
      restore_over_node_floor: Math.round((p50('restore') / p50('node_floor')) * 100) / 100,
    };
    const result = { date: new Date().toISOString(), quick: !!flags.quick, driver: engine.driver.name, template: { id: template.id, build_ms: Math.round(buildMs), image_bytes: template.imageBytes }, scenarios, ratios, memory: { idle_sandbox_mb: memory.pssMb ?? null, idle_sandbox_rss_mb: memory.rssMb ?? null } };
    await writeResults(result);
    printTable(result.scenarios, ratios);
    if (flags.json) process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await engine.close();
    await fs.rm(home, { recursive: true, force: true });
  }
}

function table(scenarios: Record<string, Record<string, unknown>>, ratios: Record<string, number>): string {
  const rows = ['| scenario | n | p50 ms | p99 ms | mean ms | other |', '|---|---|---|---|---|---|'];
  for (const [name, s] of Object.entries(scenarios)) {
    const other = Object.entries(s).filter(([k]) => !['n', 'p50_ms', 'p99_ms', 'mean_ms', 'min_ms', 'max_ms'].includes(k)).map(([k, v]) => `${k}=${v}`).join(' ');
    rows.push(`| ${name} | ${s.n ?? ''} | ${s.p50_ms ?? ''} | ${s.p99_ms ?? ''} | ${s.mean_ms ?? ''} | ${other} |`);
  }
  rows.push('', '| ratio | value |', '|---|---|', ...Object.entries(ratios).map(([k, v]) => `| ${k} | ${v} |`));
  return rows.join('\n');
}

function printTable(scenarios: Record<string, Record<string, unknown>>, ratios: Record<string, number>): void {
  process.stderr.write('\n' + table(scenarios, ratios) + '\n\n');
}

async function writeResults(result: { date: string; scenarios: Record<string, Record<string, unknown>> } & Record<string, unknown>): Promise<void> {
  const dir = path.join(HERE, 'results');
  await fs.mkdir(dir, { recursive: true });
  const stamp = result.date.replace(/[:.]/g, '-');
  await fs.writeFile(path.join(dir, `bench-${stamp}.json`), JSON.stringify(result, null, 2));
  await fs.writeFile(path.join(dir, 'latest.json'), JSON.stringify(result, null, 2));
  const md = `# snapfn bench ${result.date}\n\n${table(result.scenarios, result.ratios as Record<string, number>)}\n\nmemory: ${JSON.stringify(result.memory)}\n`;
  await fs.writeFile(path.join(dir, 'latest.md'), md);
  progress(`results written to bench/results/latest.{json,md}`);
}

await main();
