// Other sandbox drivers side by side with the main run's (issue 7):
// SNAPFN_BENCH_DRIVERS=gvisor,qemu names them; the main run already is the
// gVisor column, so only the others are measured here. Engine level: the
// same bundle, a template build, a restore per request, and keepWarm reuse,
// each driver in its own engine and home; then restore and keepWarm again
// through a gateway on that driver (bench/drivers-http.ts).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { prepareSource } from '../src/deploy/prepare-source.ts';

type FunctionSource = { sourceDir: string; sourceHash: string };
import { createEngine } from '../src/orchestrator/index.ts';
import type { Deployment } from '../src/orchestrator/types.ts';
import { FunctionConfig, type FunctionConfigInput } from '../src/schemas/function-config.ts';
import type { WireRequest } from '../src/schemas/invocation.ts';
import type { Sandbox } from '../src/sandbox/driver.ts';
import { benchDriverHttp, type DriverHttpBench } from './drivers-http.ts';
import { driversTable } from './report.ts';
import { progress, summarize, timed, type LatencySummary } from './stats.ts';

export interface DriverBench {
  platform: string;
  /** The first build on a fresh home: includes the driver's one-off preparation (QEMU: the guest image). */
  template_build_ms: number;
  /** Another build of the same bundle with network 'egress' (QEMU: boots with the NIC), nothing left to prepare. */
  template_build_egress_ms: number;
  image_bytes: number;
  /** The first request after the build: a restore, nothing cached yet. */
  first_request_ms: number;
  /** Restore + one invocation + destroy, per request. */
  restore: LatencySummary;
  /** Restore phase alone and handler phase alone, as the engine timed them (p50). */
  restore_phase_p50_ms: number;
  handler_phase_p50_ms: number;
  /** Unpause + invocation + re-pause on one kept sandbox. */
  keep_warm: LatencySummary;
  /** Boot without a snapshot + one invocation (engine level, like `restore`). */
  cold_boot: LatencySummary;
  /** cold_boot p50 over restore p50. */
  cold_boot_over_restore: number;
  /** The same scenarios through a gateway on this driver (bench/drivers-http.ts); absent when the function is not an example. */
  http?: DriverHttpBench;
}

/** Drivers this module can add a column for. */
const EXTRA = ['qemu'] as const;
type ExtraDriver = (typeof EXTRA)[number];

/** The drivers SNAPFN_BENCH_DRIVERS asks for beyond the main run; empty when it is unset. */
export function requestedDrivers(env: NodeJS.ProcessEnv = process.env): ExtraDriver[] {
  const names = (env.SNAPFN_BENCH_DRIVERS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = names.filter((n) => n !== 'gvisor' && !(EXTRA as readonly string[]).includes(n));
  if (unknown.length) throw new Error(`SNAPFN_BENCH_DRIVERS: unknown driver(s) ${unknown.join(', ')} (known: gvisor, ${EXTRA.join(', ')})`);
  return EXTRA.filter((d) => names.includes(d));
}

// Checked when bench/run.ts imports this module, so a typo fails before the
// main run's many minutes rather than at its end.
requestedDrivers();

const REQUEST: WireRequest = { method: 'GET', url: 'http://localhost/fn/bench', headers: [['accept', 'application/json']] };

/**
 * Returns undefined when no extra driver is requested, so the caller adds
 * nothing to the result and the default run is unchanged.
 */
export async function benchDrivers(options: { quick: boolean; source: FunctionSource; functionName: string; progress: (m: string) => void }): Promise<Record<string, DriverBench> | undefined> {
  const drivers = requestedDrivers();
  if (drivers.length === 0) return undefined;
  const out: Record<string, DriverBench> = {};
  for (const driver of drivers) {
    const engineLevel = await benchOne(driver, options);
    // After the engine-level run has closed its engine: one driver's sandboxes at a time.
    const http = await benchDriverHttp(driver, { n: options.quick ? 8 : 20, functionName: options.functionName, progress: options.progress });
    out[driver] = { ...engineLevel, ...(http ? { http } : {}) };
  }
  return out;
}

async function benchOne(driver: ExtraDriver, o: { quick: boolean; source: FunctionSource; functionName: string; progress: (m: string) => void }): Promise<DriverBench> {
  // Fewer samples than the main run: under TCG a restore is ~1 s.
  const n = o.quick ? 8 : 20;
  const home = await fs.mkdtemp(path.join(os.tmpdir(), `snapfn-bench-${driver}-`));
  const engine = await createEngine({ home, maxSandboxes: 2, poolSize: 0, driver });
  try {
    o.progress(`${driver}: template build (${engine.driverInfo().platform})`);
    const [buildMs, template] = await timed(() => engine.buildTemplate({ functionName: o.functionName, ...o.source, network: 'none' }));
    const [egressBuildMs] = await timed(() => engine.buildTemplate({ functionName: o.functionName, ...o.source, network: 'egress' }));
    const deploy = async (name: string, config: FunctionConfigInput): Promise<Deployment> => {
      const d: Deployment = { name, version: 1, templateId: template.id, config: FunctionConfig.parse({ ...((template.handlerConfig ?? {}) as FunctionConfigInput), ...config, poolSize: 0 }), env: {} };
      await engine.activate(d);
      return d;
    };
    const invoke = async (d: Deployment, i: number) => {
      const r = await engine.invoke(d, REQUEST, { invocationId: `${driver}-${d.name}-${i}` });
      if (!r.outcome.ok) throw new Error(`${driver} ${d.name}: ${r.outcome.error.code}: ${r.outcome.error.message}`);
      return r.timings;
    };

    const fresh = await deploy('bench-restore', {});
    const [firstMs] = await timed(() => invoke(fresh, -1));
    o.progress(`${driver}: restore per request x${n}`);
    const restore: number[] = [];
    const phases: { restore: number[]; handler: number[] } = { restore: [], handler: [] };
    for (let i = 0; i < n; i++) {
      const [ms, t] = await timed(() => invoke(fresh, i));
      restore.push(ms);
      phases.restore.push(t.restoreMs);
      phases.handler.push(t.handlerMs);
    }
    await engine.deactivate('bench-restore');

    // A guest boot is seconds under TCG: fewer samples than the restores.
    const colds = Math.max(3, Math.floor(n / 2));
    o.progress(`${driver}: cold boot (no snapshot) x${colds}`);
    const cold: number[] = [];
    for (let i = 0; i < colds; i++) {
      let sandbox: Sandbox | undefined;
      const [ms] = await timed(async () => {
        sandbox = await engine.driver.coldBoot({ functionName: o.functionName, ...o.source, network: 'none' }, { memoryMb: 256, network: 'none' });
        const outcome = await sandbox.invoke(REQUEST, { timeoutMs: 30_000, env: {}, invocationId: `${driver}-cold-${i}` });
        if (!outcome.ok) throw new Error(`${driver} cold boot: ${outcome.error.code}: ${outcome.error.message}`);
      });
      await sandbox?.destroy();
      cold.push(ms);
    }

    o.progress(`${driver}: keepWarm reuse x${n}`);
    const warm = await deploy('bench-warm', { keepWarm: true });
    await invoke(warm, -1);
    const keepWarm: number[] = [];
    for (let i = 0; i < n; i++) {
      // The re-pause happens after the response: let it land, as the main run does.
      await new Promise((r) => setTimeout(r, 100));
      const [ms, t] = await timed(() => invoke(warm, i));
      if (t.source !== 'keep-warm') throw new Error(`${driver} keepWarm: expected a kept sandbox, got ${t.source}`);
      keepWarm.push(ms);
    }
    await engine.deactivate('bench-warm');

    return {
      platform: engine.driverInfo().platform,
      template_build_ms: Math.round(buildMs),
      template_build_egress_ms: Math.round(egressBuildMs),
      image_bytes: template.imageBytes,
      first_request_ms: Math.round(firstMs),
      restore: summarize(restore),
      restore_phase_p50_ms: summarize(phases.restore).p50_ms,
      handler_phase_p50_ms: summarize(phases.handler).p50_ms,
      keep_warm: summarize(keepWarm),
      cold_boot: summarize(cold),
      cold_boot_over_restore: Math.round((summarize(cold).p50_ms / summarize(restore).p50_ms) * 100) / 100,
    };
  } finally {
    await engine.close();
    await fs.rm(home, { recursive: true, force: true });
  }
}

// Standalone, without the main run (its gVisor scenarios take many minutes):
//   SNAPFN_BENCH_DRIVERS=qemu npx tsx bench/drivers.ts [--quick] [--function hello]
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, function: { type: 'string' } } });
  const name = values.function ?? 'hello';
  const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'functions', name);
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-bench-bundle-'));
  try {
    const sourceDir = path.join(tmp, 'src');
    await execa('cp', ['-a', dir, sourceDir]);
    const prepared = await prepareSource(sourceDir);
    const drivers = await benchDrivers({ quick: !!values.quick, source: { sourceDir, sourceHash: prepared.hash }, functionName: name, progress });
    if (!drivers) throw new Error('set SNAPFN_BENCH_DRIVERS (e.g. qemu)');
    process.stderr.write(driversTable(drivers).join('\n') + '\n');
    process.stdout.write(JSON.stringify({ function: name, drivers }) + '\n');
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}
