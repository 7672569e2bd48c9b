import { GvisorDriver } from '../sandbox/gvisor/gvisor-driver.ts';
import type { SandboxDriver } from '../sandbox/driver.ts';
import { detectHardwareKvm } from '../sandbox/qemu/accel.ts';
import { Orchestrator } from './orchestrator.ts';

export type { Deployment, InvocationEngine, InvokeResult, OrchestratorStats, PhaseTimings } from './types.ts';
export { Orchestrator } from './orchestrator.ts';

export interface EngineOptions {
  home: string;
  maxSandboxes: number;
  /** SNAPFN_POOL_SIZE: a fixed pool per function; undefined: pools follow traffic. */
  poolSize?: number | undefined;
  maxWaitMs?: number;
  /** SNAPFN_MAX_RESPONSE_BYTES. */
  maxResponseBytes?: number;
  /** SNAPFN_MAX_BODY_BYTES: gVisor sandboxes' memory limits leave room for a body this large. */
  maxBodyBytes?: number;
  /** SNAPFN_PAUSE_AFTER_MS. */
  pauseAfterMs?: number;
  /** Default: SNAPFN_DRIVER, else 'gvisor'. */
  driver?: DriverChoice;
}

export type DriverChoice = 'gvisor' | 'qemu' | 'firecracker' | 'auto';

/**
 * Which driver a node runs: SNAPFN_DRIVER=gvisor|qemu|auto. `auto` takes QEMU
 * only where hardware KVM exists (under TCG a microVM is correct but several
 * times slower than gVisor), else gVisor.
 */
export function resolveDriver(choice: string | undefined): { driver: 'gvisor' | 'qemu' | 'firecracker'; reason: string } {
  const c = choice ?? 'gvisor';
  if (c === 'gvisor' || c === 'qemu') return { driver: c, reason: `SNAPFN_DRIVER=${c}` };
  if (c === 'firecracker') return { driver: 'firecracker', reason: 'SNAPFN_DRIVER=firecracker' };
  if (c !== 'auto') throw new Error(`SNAPFN_DRIVER must be gvisor, qemu, firecracker or auto, not '${c}'`);
  const kvm = detectHardwareKvm();
  return { driver: kvm.kvm ? 'qemu' : 'gvisor', reason: `auto: ${kvm.reason}` };
}

/** The engine of one node: a sandbox driver behind an Orchestrator. */
export async function createEngine(options: EngineOptions): Promise<Orchestrator<SandboxDriver>> {
  const { driver: which, reason } = resolveDriver(options.driver ?? process.env.SNAPFN_DRIVER);
  let driver: SandboxDriver | undefined;
  let why = reason;
  // Firecracker when asked for, or under `auto` where the host can run it (binary + hardware KVM).
  if (which === 'firecracker' || (options.driver ?? process.env.SNAPFN_DRIVER) === 'auto') {
    const { firecrackerDriverIfSupported } = await import('../sandbox/firecracker/select-driver.ts');
    const fc = await firecrackerDriverIfSupported({ home: options.home, networkSlots: options.maxSandboxes + 2 });
    if (fc.driver) driver = fc.driver;
    else if (which === 'firecracker') throw new Error(`SNAPFN_DRIVER=firecracker, but ${fc.reason}`);
    else why = `${reason}; firecracker: ${fc.reason}`;
  }
  if (!driver && which === 'qemu') {
    // Loaded lazily: a gVisor node never touches the QEMU code.
    const { QemuDriver } = await import('../sandbox/qemu/qemu-driver.ts');
    driver = await QemuDriver.create({ home: options.home });
  } else if (!driver) {
    // Network slots: one per sandbox the node may run, plus two for template builds.
    driver = await GvisorDriver.create({ home: options.home, networkSlots: options.maxSandboxes + 2, ...(options.maxBodyBytes ? { maxBodyBytes: options.maxBodyBytes } : {}) });
  }
  // Silent on the default, so the log of an unconfigured node is unchanged.
  if (options.driver ?? process.env.SNAPFN_DRIVER) process.stderr.write(`snapfn: sandbox driver ${driver.name} (platform ${driver.platform}; ${why})\n`);
  return new Orchestrator({ driver, maxSandboxes: options.maxSandboxes, poolSize: options.poolSize, ...(options.maxWaitMs ? { maxWaitMs: options.maxWaitMs } : {}), ...(options.maxResponseBytes ? { maxResponseBytes: options.maxResponseBytes } : {}), ...(options.pauseAfterMs !== undefined ? { pauseAfterMs: options.pauseAfterMs } : {}) });
}
