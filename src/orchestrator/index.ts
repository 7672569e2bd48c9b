import { GvisorDriver } from '../sandbox/gvisor/gvisor-driver.ts';
import { Orchestrator } from './orchestrator.ts';

export type { Deployment, InvocationEngine, InvokeResult, OrchestratorStats, PhaseTimings } from './types.ts';
export { Orchestrator } from './orchestrator.ts';

export interface EngineOptions {
  home: string;
  maxSandboxes: number;
  poolSize: number;
  maxWaitMs?: number;
}

/** The engine of one node: the gVisor driver (the only one so far) behind an Orchestrator. */
export async function createEngine(options: EngineOptions): Promise<Orchestrator<GvisorDriver>> {
  // Network slots: one per sandbox the node may run, plus two for template builds.
  const driver = await GvisorDriver.create({ home: options.home, networkSlots: options.maxSandboxes + 2 });
  return new Orchestrator({ driver, maxSandboxes: options.maxSandboxes, poolSize: options.poolSize, ...(options.maxWaitMs ? { maxWaitMs: options.maxWaitMs } : {}) });
}
