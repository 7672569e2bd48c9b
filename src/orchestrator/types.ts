import type { FunctionConfig } from '../schemas/function-config.ts';
import type { InvocationOutcome, StreamingRequest, WireRequest } from '../schemas/invocation.ts';
import type { ProgressFn, Template, TemplateSource } from '../sandbox/driver.ts';

/** One immutable version of a function, as the orchestrator needs it to run. */
export interface Deployment {
  name: string;
  version: number;
  templateId: string;
  config: FunctionConfig;
  /** Env vars and secrets merged; delivered per invocation, never baked into a template. */
  env: Record<string, string>;
  /** Which names in `env` are secrets: redacted from what the invocation leaves behind, sealed in Redis. */
  secretNames?: string[];
}

export interface PhaseTimings {
  /** Waiting for a free sandbox slot on this node. */
  acquireMs: number;
  /** Restore from template (0 on a pool hit or keepWarm reuse). */
  restoreMs: number;
  handlerMs: number;
  /** How the sandbox was obtained. */
  source: 'pool' | 'keep-warm' | 'restore';
}

export interface InvokeResult {
  outcome: InvocationOutcome;
  timings: PhaseTimings;
}

export interface OrchestratorStats {
  liveSandboxes: number;
  maxSandboxes: number;
  busySandboxes: number;
  pooled: Record<string, number>;
  /** Pre-restored sandboxes each function's pool is heading for (its fixed size, or what its traffic needs). */
  poolTargets?: Record<string, number>;
  poolHits: number;
  poolMisses: number;
  /** Sandboxes restored for an invocation (the expensive path; pool fills are not counted). */
  restores: number;
  /** Invocations served by a sandbox used before (unpaused, or handed on by the previous invocation). */
  keepWarmReuses: number;
  /** Of those, sandboxes handed straight from one invocation to a waiting one (no pause, no restore). */
  handoffs: number;
  templateBuilds: number;
}

/** The gateway's and the queue worker's view of the engine. */
export interface InvocationEngine {
  buildTemplate(source: TemplateSource, onProgress?: ProgressFn): Promise<Template>;
  /** Make `deployment` runnable on this node (loads its template, fills its warm pool). */
  activate(deployment: Deployment): Promise<void>;
  /** Drop pooled and kept-warm sandboxes of a deployment that no longer serves. */
  deactivate(name: string): Promise<void>;
  /**
   * With `stream`, an ok outcome may be a StreamingOutcome (the body still on
   * its way; the sandbox is released once it has all gone out), and the
   * request may carry its body as a stream.
   */
  invoke(deployment: Deployment, request: StreamingRequest, options: { invocationId: string; stream?: boolean }): Promise<InvokeResult>;
  /** Sandboxes that could start an invocation right now; with `name`, the free slots of that function's busy sandboxes (config.concurrency) too. */
  freeCapacity(name?: string): number;
  /**
   * Busy sandboxes of function `name` that go straight to its next waiting
   * invocation when they finish (keepWarm): a queue may start that many more
   * invocations than there are free sandboxes, to wait for them in the engine.
   */
  reusableFor?(name: string): number;
  /** Invocations inside invoke() right now: waiting for a place, restoring or running. */
  inFlight?(): number;
  stats(): OrchestratorStats;
  /** Templates this node runs or restores from right now; the template collector keeps them. */
  templatesInUse?(): Iterable<string>;
  /** Which sandbox driver serves, for /metrics and logs. */
  driverInfo?(): { name: string; platform: string };
  close(): Promise<void>;
}
