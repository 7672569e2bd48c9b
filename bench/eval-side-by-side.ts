// The eval rows of two builds of snapfn in one run: the current tree and the
// same tree with the eval runtime of a baseline commit (runtime/eval,
// src/eval and src/schemas/eval.ts taken from it, everything else shared), so
// what differs between the two columns is the eval code and nothing else.
//
// Each build runs as its own gateway (`node --import tsx src/main.ts` in its
// own scratch home, default eval pool). Each gets one evaluation a second,
// the two half a second apart, so both see the same machine (and each the
// other's pool refills). Per language and build: HTTP
// p50/p99, pool hits, and where a pool hit's time goes (the result's
// timings: the round trip into the sandbox, up to the runtime's start, the
// run, and from the result to the end of the process).
//
// node --import tsx bench/eval-side-by-side.ts [--baseline <rev>] [--n 20] [--languages javascript,python,bash]
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort, type GatewayProcess } from '../test/support/gateway-process.ts';
import { evalSnippet, pacer, type EvalLanguage } from './eval.ts';
import { GatewayClient } from './gateway-client.ts';
import { progress, summarize } from './stats.ts';
import type { LogsResponse } from '../src/schemas/api.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const INTERVAL_MS = 1000;
/** What the baseline takes from its commit: the eval runtime and its host side. */
const EVAL_PATHS = ['runtime/eval', 'src/eval', 'src/schemas/eval.ts'];

interface Sample {
  httpMs: number;
  source: string | undefined;
  handlerMs?: number;
  startMs?: number;
  runMs?: number;
  exitMs?: number;
}

/** A copy of the working tree (node_modules linked) whose eval code is the baseline commit's. */
async function baselineTree(rev: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-eval-baseline-'));
  execFileSync('tar', ['-C', ROOT, '--exclude=./node_modules', '--exclude=./.git', '--exclude=./test-output', '-cf', path.join(dir, 'tree.tar'), '.']);
  execFileSync('tar', ['-C', dir, '-xf', path.join(dir, 'tree.tar')]);
  await fs.rm(path.join(dir, 'tree.tar'));
  await fs.symlink(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  for (const p of EVAL_PATHS) {
    await fs.rm(path.join(dir, p), { recursive: true, force: true });
    const archive = execFileSync('git', ['-C', ROOT, 'archive', rev, p]);
    await new Promise<void>((resolve, reject) => {
      const tar = spawn('tar', ['-C', dir, '-xf', '-'], { stdio: ['pipe', 'ignore', 'inherit'] });
      tar.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tar exited ${code}`))));
      tar.stdin.end(archive);
    });
  }
  return dir;
}

async function startBuild(tree: string): Promise<{ gateway: GatewayProcess; home: string }> {
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-bench-eval-'));
  const env = { SNAPFN_HOME: home, SNAPFN_EXAMPLES: '0', SNAPFN_API_KEY: '', SNAPFN_EVAL: '1', SNAPFN_POOL_SIZE: '0' };
  // The tree's own copy of the helper starts the tree's own src/main.ts.
  const { spawnGateway } = (await import(path.join(tree, 'test', 'support', 'gateway-process.ts'))) as typeof import('../test/support/gateway-process.ts');
  return { gateway: await spawnGateway(env, await freePort(), 600_000), home };
}

async function evaluate(url: string, language: EvalLanguage): Promise<Sample> {
  const { code, ok } = evalSnippet(language);
  const started = performance.now();
  const res = await fetch(`${url}/v1/eval`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ language, code }) });
  const json: any = await res.json().catch(() => undefined);
  const httpMs = performance.now() - started;
  if (res.status !== 200 || json?.error || !ok(json)) throw new Error(`eval ${language} failed: ${res.status} ${JSON.stringify(json).slice(0, 200)}`);
  const t = json.timings ?? {};
  return { httpMs, source: t.sandbox, handlerMs: t.handlerMs, startMs: t.startMs, runMs: t.runMs, exitMs: t.exitMs };
}

/** functions/hello with a pool of one, invoked once a second: HTTP p50/p99 and, of the pool hits, the handler phase (from the invocation log). */
async function functionFloor(url: string, n: number): Promise<Record<string, number | null>> {
  const client = new GatewayClient(url);
  const name = 'bench-eval-floor';
  progress(`function floor: deploying functions/hello as ${name} (pool of one), ${n} invocations, one a second`);
  await client.deploy(path.join(ROOT, 'functions', 'hello'), name, { poolSize: 1 });
  await client.invoke(name);
  const latencies: number[] = [];
  const slot = pacer(INTERVAL_MS);
  for (let i = 0; i < n; i++) {
    await slot();
    const started = performance.now();
    await client.invoke(name);
    latencies.push(performance.now() - started);
  }
  const logs = (await fetch(`${url}/v1/functions/${name}/logs?limit=1000`).then((r) => r.json())) as LogsResponse;
  const hits = logs.entries.filter((e) => e.timings?.source === 'pool').slice(0, n);
  await client.remove(name);
  const http = summarize(latencies);
  return { n, pool_hits: hits.length, p50_ms: http.p50_ms, p99_ms: http.p99_ms, hit_handler_p50_ms: p50(hits.map((e) => e.timings!.handlerMs)) };
}

const p50 = (values: Array<number | undefined>) => {
  const known = values.filter((v): v is number => typeof v === 'number');
  return known.length ? summarize(known).p50_ms : null;
};

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { baseline: { type: 'string' }, n: { type: 'string' }, languages: { type: 'string' } } });
  const rev = values.baseline ?? 'HEAD';
  const n = Math.max(1, Number(values.n ?? 20));
  const languages = (values.languages ?? 'javascript,python,bash').split(',') as EvalLanguage[];
  const baseRev = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', rev]).toString().trim();
  progress(`baseline: the eval code of ${baseRev}; current: the working tree`);
  const tree = await baselineTree(rev);
  const builds: Array<{ name: string; tree: string; gateway?: GatewayProcess; home?: string }> = [
    { name: `baseline (${baseRev})`, tree },
    { name: 'current', tree: ROOT },
  ];
  try {
    for (const build of builds) {
      progress(`starting ${build.name} (builds its rootfs and three eval templates)`);
      Object.assign(build, await startBuild(build.tree));
    }
    const samples = new Map<string, Sample[]>();
    for (const language of languages) {
      for (const build of builds) await evaluate(build.gateway!.url, language); // unmeasured: pools may still fill
      // Each build gets one a second; the builds take turns, half a second apart.
      const slot = pacer(INTERVAL_MS / builds.length);
      for (let i = 0; i < n; i++) {
        for (const build of builds) {
          await slot();
          const key = `${language}\t${build.name}`;
          samples.set(key, [...(samples.get(key) ?? []), await evaluate(build.gateway!.url, language)]);
        }
        if ((i + 1) % 5 === 0) progress(`${language}: ${i + 1}/${n} per build`);
      }
    }
    // The floor: a plain function's pool hit on the current build, same cadence (the envd round trip every sandbox pays).
    // A failed floor must not cost the eval rows measured above.
    const floor = await functionFloor(builds[1]!.gateway!.url, n).catch((err: Error) => {
      progress(`function floor failed: ${err.message.slice(0, 300)}`);
      return { n: 0 };
    });
    const rows: Record<string, unknown>[] = [];
    for (const [key, list] of samples) {
      const [language, build] = key.split('\t');
      const hits = list.filter((s) => s.source === 'pool');
      const http = summarize(list.map((s) => s.httpMs));
      rows.push({
        language,
        build,
        n: list.length,
        pool_hits: hits.length,
        p50_ms: http.p50_ms,
        p99_ms: http.p99_ms,
        hit_p50_ms: p50(hits.map((s) => s.httpMs)),
        hit_handler_p50_ms: p50(hits.map((s) => s.handlerMs)),
        hit_start_p50_ms: p50(hits.map((s) => s.startMs)),
        hit_run_p50_ms: p50(hits.map((s) => s.runMs)),
        hit_exit_p50_ms: p50(hits.map((s) => s.exitMs)),
      });
    }
    rows.push({ language: 'function (hello)', build: 'current', ...floor });
    const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
    const cell = (v: unknown) => (v === null || v === undefined ? '-' : String(v));
    const columns = ['language', 'build', 'n', 'pool_hits', 'p50_ms', 'p99_ms', 'hit_p50_ms', 'hit_handler_p50_ms', 'hit_start_p50_ms', 'hit_run_p50_ms', 'hit_exit_p50_ms'];
    process.stderr.write(`\nload average at the end: ${load}\n| ${columns.join(' | ')} |\n|${columns.map(() => '---').join('|')}|\n`);
    for (const row of rows) process.stderr.write(`| ${columns.map((c) => cell(row[c])).join(' | ')} |\n`);
    process.stdout.write(JSON.stringify({ baseline: baseRev, load_avg: os.loadavg(), rows }) + '\n');
  } finally {
    for (const build of builds) {
      await build.gateway?.stop(60_000).catch(() => {});
      if (build.home) await fs.rm(build.home, { recursive: true, force: true });
    }
    await fs.rm(tree, { recursive: true, force: true });
  }
}

await main();
