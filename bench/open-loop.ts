// Open-loop load against a fresh-per-request function with the default
// config, the way traffic from many independent users arrives: Poisson
// arrivals at a fixed mean rate (1 rps), each request sent at its time
// whether or not earlier ones have answered, through the gateway. A closed
// loop (the next request only after the last answer) would wait out every
// restore and so never show how often the warm pool was empty.
//
// What it reports: the pool hit rate (engine counters over the run), p50/p99
// of every request, and the pool's target and size at the end. Target: >= 90%
// hits with p50 <= 20 ms.
//
// The gateway must let the pool follow traffic: SNAPFN_POOL_SIZE unset (a set
// one pins every pool at that size, bench/run.ts sets it to 0). Without a
// `gateway` this starts its own, with the default settings, in a scratch home.
//
// Standalone: npx tsx bench/open-loop.ts [--quick] [--seconds 60] [--rps 1] [--seed 1] [--function hello]
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.ts';
import type { OrchestratorStats } from '../src/orchestrator/types.ts';
import type { LogsResponse } from '../src/schemas/api.ts';
import { GatewayClient } from './gateway-client.ts';
import type { Scenario } from './report.ts';
import { progress as defaultProgress, summarize } from './stats.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export interface OpenLoopOptions {
  quick: boolean;
  progress?: (message: string) => void;
  /** Default: 60 s, 20 s with quick. */
  seconds?: number;
  /** Mean arrival rate, requests per second (default 1). */
  rps?: number;
  /** Of the arrival times, so two runs send the same schedule. */
  seed?: number;
  /** Handler directory (default functions/hello). */
  functionDir?: string;
  /** A running gateway whose SNAPFN_POOL_SIZE is unset, and its engine's stats; default: one started here. */
  gateway?: { client: GatewayClient; stats: () => OrchestratorStats };
}

/** mulberry32: small, seedable, good enough for arrival times. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Send times (ms from the start) of a Poisson process: exponential gaps with mean 1000 / rps. */
export function poissonSchedule(rps: number, seconds: number, seed: number): number[] {
  const next = random(seed);
  const times: number[] = [];
  for (let t = -Math.log(1 - next()) * (1000 / rps); t < seconds * 1000; t += -Math.log(1 - next()) * (1000 / rps)) times.push(t);
  return times;
}

const NAME = 'bench-open-loop';

/** `open_loop`: one scenario row (latency summary, pool_hits, pool_misses, hit_rate_pct, failed, pool target/size at the end). */
export async function benchOpenLoop(options: OpenLoopOptions): Promise<Scenario> {
  const progress = options.progress ?? defaultProgress;
  const seconds = options.seconds ?? (options.quick ? 20 : 60);
  const rps = options.rps ?? 1;
  const dir = options.functionDir ?? path.resolve(HERE, '..', 'functions', 'hello');
  let own: { close: () => Promise<void>; home: string } | undefined;
  let gateway = options.gateway;
  if (!gateway) {
    const home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-bench-open-loop-'));
    // The defaults, except what a bench cannot have: a fixed port, an API key, examples and eval templates to build.
    const config = loadConfig({ ...process.env, SNAPFN_HOME: home, PORT: '0', SNAPFN_API_KEY: '', SNAPFN_POOL_SIZE: '', SNAPFN_MAX_SANDBOXES: '', SNAPFN_EXAMPLES: '0', SNAPFN_EVAL: '0' });
    progress(`open loop: starting a gateway with the default pool settings (SNAPFN_HOME=${home})`);
    const { startSnapfn } = await import('../src/snapfn.ts');
    const snapfn = await startSnapfn({ config, examplesDir: false, eval: false, log: () => {} });
    own = { close: () => snapfn.close(), home };
    gateway = { client: new GatewayClient(snapfn.url), stats: () => snapfn.engine.stats() };
  }
  const { client, stats } = gateway;
  try {
    progress(`open loop: deploying ${path.basename(dir)} as ${NAME} with the default config`);
    // minWarm 0 spelled out: the example handlers carry minWarm 1 in their own config, the default is 0.
    await client.deploy(dir, NAME, { minWarm: 0 });
    const schedule = poissonSchedule(rps, seconds, options.seed ?? 1);
    progress(`open loop: ${schedule.length} Poisson arrivals at ${rps} rps over ${seconds} s`);
    const before = stats();
    const latencies: number[] = [];
    let failed = 0;
    const started = performance.now();
    await Promise.all(
      schedule.map(async (at) => {
        const wait = at - (performance.now() - started);
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        const sent = performance.now();
        try {
          await client.invoke(NAME);
          latencies.push(performance.now() - sent);
        } catch {
          failed++;
        }
      }),
    );
    const after = stats();
    const hits = after.poolHits - before.poolHits;
    const misses = after.poolMisses - before.poolMisses;
    const summary = summarize(latencies);
    progress(`open loop: ${hits}/${hits + misses} pool hits, p50 ${summary.p50_ms} ms, p99 ${summary.p99_ms} ms`);
    // Where a pool hit's time goes, from the invocation log: on the node in all, and in the handler phase.
    const logs = (await fetch(`${client.baseUrl}/v1/functions/${NAME}/logs?limit=1000`).then((r) => r.json())) as LogsResponse;
    const pooled = logs.entries.filter((e) => e.timings?.source === 'pool');
    await client.remove(NAME);
    return {
      ...summary,
      rps,
      seconds,
      failed,
      pool_hits: hits,
      pool_misses: misses,
      hit_rate_pct: Math.round((hits / Math.max(1, hits + misses)) * 1000) / 10,
      pool_target_end: after.poolTargets?.[NAME] ?? -1,
      pool_size_end: after.pooled[NAME] ?? 0,
      pool_hit_node_p50_ms: summarize(pooled.map((e) => e.durationMs)).p50_ms,
      pool_hit_handler_p50_ms: summarize(pooled.map((e) => e.timings!.handlerMs)).p50_ms,
      // The machine is shared: a pool hit's latency and the restore time move with it.
      load_avg_1m: Math.round(os.loadavg()[0]! * 100) / 100,
    };
  } finally {
    if (own) {
      await own.close();
      await fs.rm(own.home, { recursive: true, force: true });
    }
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, seconds: { type: 'string' }, rps: { type: 'string' }, seed: { type: 'string' }, function: { type: 'string' } } });
  const result = await benchOpenLoop({
    quick: !!values.quick,
    ...(values.seconds ? { seconds: Number(values.seconds) } : {}),
    ...(values.rps ? { rps: Number(values.rps) } : {}),
    ...(values.seed ? { seed: Number(values.seed) } : {}),
    ...(values.function ? { functionDir: path.resolve(HERE, '..', 'functions', values.function) } : {}),
  });
  const pass = result.hit_rate_pct! >= 90 && result.p50_ms! <= 20;
  process.stderr.write(
    `\n| scenario | n | p50 ms | p99 ms | pool hits | target (>= 90% hits, p50 <= 20 ms) |\n|---|---|---|---|---|---|\n` +
      `| open_loop (${result.rps} rps Poisson, ${result.seconds} s) | ${result.n} | ${result.p50_ms} | ${result.p99_ms} | ${result.pool_hits}/${result.pool_hits! + result.pool_misses!} (${result.hit_rate_pct}%) | ${pass ? 'met' : 'missed'} |\n\n`,
  );
  process.stdout.write(JSON.stringify({ open_loop: result }) + '\n');
}
