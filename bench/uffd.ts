// UFFD page server benchmark (issue 8): how long it takes to touch every page
// of a 64 MiB and a 256 MiB guest memory image
//   - on demand through the page server (one UFFDIO_COPY per fault), with the
//     server unpinned, pinned to the faulting thread's CPU, pinned to the other
//     CPU (sleeping or busy-polling), and copying 16-page blocks per fault;
//   - with the whole image as the working set (prefetch right after the
//     hand-off, faults served in between);
//   - through a MAP_PRIVATE mapping of the same file with a warm page cache
//     (what Firecracker's File memory backend does).
// The faulting side is native/uffd/uffd-peer (one thread, sequential order),
// which also checks every byte against the file after the timed part.
//
//   npx tsx bench/uffd.ts [--quick] [--json]
// bench/run.ts calls benchUffd().
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UffdPageServer, type UffdPageServerOptions } from '../src/sandbox/uffd/index.ts';
import { runPeer, type PeerOptions } from '../src/sandbox/uffd/uffd-peer.ts';
import { summarize } from './stats.ts';

const MiB = 1024 * 1024;
const PAGE = 4096;

interface Config {
  name: string;
  server?: Partial<UffdPageServerOptions> & { prefetch?: boolean };
  peer?: Partial<PeerOptions>;
  private?: boolean;
  /** Slow on small VMs (seconds per run): full runs only, 64 MiB only, once. */
  slow?: boolean;
}

const CONFIGS: Config[] = [
  { name: 'on_demand' },
  { name: 'on_demand_pinned_same_cpu', server: { cpu: 0 }, peer: { cpu: 0 } },
  { name: 'on_demand_pinned_other_cpu', server: { cpu: 1 }, peer: { cpu: 0 }, slow: true },
  { name: 'on_demand_busy_poll_other_cpu', server: { cpu: 1, busyPoll: true }, peer: { cpu: 0 }, slow: true },
  { name: 'on_demand_block16', server: { blockPages: 16 } },
  { name: 'prefetch', server: { prefetch: true } },
  { name: 'prefetch_pinned_same_cpu', server: { prefetch: true, cpu: 0 }, peer: { cpu: 0 } },
  { name: 'private_mapping', private: true },
];

interface Sample {
  touchMs: number;
  pagesPerS: number;
  /** Faults the server resolved (0 for the private mapping: the kernel did them). */
  serverFaults: number;
  prefetchMs?: number;
}

async function writeMemoryFile(file: string, bytes: number): Promise<void> {
  const handle = await fs.open(file, 'w');
  try {
    for (let off = 0; off < bytes; off += MiB) await handle.write(crypto.randomBytes(MiB));
  } finally {
    await handle.close();
  }
}

async function measure(cfg: Config, bytes: number, memoryFile: string, workingSet: string, dir: string): Promise<Sample> {
  const peerOptions: PeerOptions = { memoryFile, regions: [bytes], timeoutMs: 180_000, ...cfg.peer };
  if (cfg.private) {
    const run = await runPeer({ ...peerOptions, mode: 'private' });
    if (run.exitCode !== 0 || !run.report) throw new Error(`${cfg.name}: peer failed: ${run.stderr}`);
    return { touchMs: run.report.touch_ms, pagesPerS: run.report.pages_per_s, serverFaults: 0 };
  }
  const { prefetch, ...serverOptions } = cfg.server ?? {};
  const socketPath = path.join(dir, `${cfg.name}.sock`);
  const server = await UffdPageServer.start({ socketPath, memoryFile, acceptTimeoutMs: 10_000, ...serverOptions, ...(prefetch ? { workingSet } : {}) });
  try {
    const run = await runPeer({ ...peerOptions, socketPath });
    if (run.exitCode !== 0 || !run.report) throw new Error(`${cfg.name}: peer failed: ${run.stderr}`);
    const exit = await server.exited;
    const prefetched = prefetch ? await server.prefetched(0).catch(() => undefined) : undefined;
    return {
      touchMs: run.report.touch_ms,
      pagesPerS: run.report.pages_per_s,
      serverFaults: exit.stats?.faults ?? NaN,
      ...(prefetched ? { prefetchMs: prefetched.ms } : {}),
    };
  } finally {
    await server.close();
  }
}

function summarise(samples: Sample[], pages: number): Record<string, unknown> {
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const touch = summarize(samples.map((s) => s.touchMs));
  const faultsPerS = samples.map((s) => (s.serverFaults / s.touchMs) * 1000);
  const prefetch = samples.flatMap((s) => (s.prefetchMs === undefined ? [] : [s.prefetchMs]));
  return {
    n: touch.n,
    touch_p50_ms: touch.p50_ms,
    touch_max_ms: touch.max_ms,
    pages_per_s: Math.round(median(samples.map((s) => s.pagesPerS))),
    server_faults: median(samples.map((s) => s.serverFaults)),
    // Meaningless when prefetch left only a handful of faults.
    ...(median(samples.map((s) => s.serverFaults)) >= pages / 100 ? { faults_per_s: Math.round(median(faultsPerS)) } : {}),
    ...(prefetch.length ? { prefetch_all_ms: Math.round(median(prefetch) * 10) / 10 } : {}),
  };
}

export async function benchUffd(opts: { quick: boolean; progress: (msg: string) => void }): Promise<Record<string, unknown>> {
  const reps = opts.quick ? 1 : 3;
  const cpus = os.cpus().length;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-bench-uffd-'));
  // Other work on the machine moves these numbers a lot (2 vCPUs): say how busy it was.
  const result: Record<string, unknown> = { reps, cpus, kernel: os.release(), loadavg_1m_before: Math.round(os.loadavg()[0]! * 100) / 100 };
  try {
    const memoryFile = path.join(dir, 'memory');
    opts.progress('uffd: writing a 256 MiB memory file (random bytes; it stays in the page cache)');
    await writeMemoryFile(memoryFile, 256 * MiB);
    for (const sizeMiB of [64, 256]) {
      const bytes = sizeMiB * MiB;
      const workingSet = path.join(dir, `ws-${sizeMiB}.json`);
      await fs.writeFile(workingSet, JSON.stringify({ offsets: Array.from({ length: bytes / PAGE }, (_, i) => i * PAGE) }));
      const rows: Record<string, unknown> = {};
      for (const cfg of CONFIGS) {
        if (cfg.slow && (opts.quick || sizeMiB !== 64)) continue;
        if ((cfg.server?.cpu ?? 0) >= cpus) continue;
        const samples: Sample[] = [];
        for (let i = 0; i < (cfg.slow ? 1 : reps); i++) samples.push(await measure(cfg, bytes, memoryFile, workingSet, dir));
        rows[cfg.name] = summarise(samples, bytes / PAGE);
        opts.progress(`uffd ${sizeMiB} MiB ${cfg.name}: ${JSON.stringify(rows[cfg.name])}`);
      }
      result[`${sizeMiB}MiB`] = rows;
    }
    result.loadavg_1m_after = Math.round(os.loadavg()[0]! * 100) / 100;
    return result;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

function table(result: Record<string, unknown>): string {
  const out = ['| size | config | touch p50 ms | pages/s | server faults | faults/s | prefetch all ms |', '|---|---|---|---|---|---|---|'];
  for (const [size, rows] of Object.entries(result)) {
    if (!size.endsWith('MiB')) continue;
    for (const [name, r] of Object.entries(rows as Record<string, Record<string, unknown>>)) {
      out.push(`| ${size} | ${name} | ${r.touch_p50_ms} | ${r.pages_per_s} | ${r.server_faults} | ${r.faults_per_s ?? ''} | ${r.prefetch_all_ms ?? ''} |`);
    }
  }
  out.push('', `load average (1 min) before/after: ${result.loadavg_1m_before} / ${result.loadavg_1m_after}`);
  return out.join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, json: { type: 'boolean' } } });
  const progress = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
  const result = await benchUffd({ quick: !!values.quick, progress });
  process.stderr.write(`\n${table(result)}\n\n`);
  if (values.json) process.stdout.write(JSON.stringify(result) + '\n');
}
