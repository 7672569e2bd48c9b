import type { InvocationOutcome } from '../schemas/invocation.ts';
import type { Sandbox, Template } from '../sandbox/driver.ts';
import type { Deployment } from './types.ts';

/** The serving state of one active function on this node. */
export interface ActiveFunction {
  deployment: Deployment;
  template: Template;
  /** Pre-restored, never-used sandboxes. */
  pool: Sandbox[];
  /** Paused keepWarm sandboxes, used before (taken from the end: most recently used first). */
  idle: Sandbox[];
  filling: number;
  fillFailures: number;
  /** Invocations running in a sandbox of this function. */
  busy: number;
  /** performance.now() of the last invocation start or end. */
  lastActive: number;
  /**
   * Sandboxes serving invocations right now, with how many each runs. With
   * config.concurrency > 1 a new invocation joins one that has a free slot;
   * `open` turns false once one of them ended unsound.
   */
  serving: Map<Sandbox, { running: number; open: boolean }>;
  /** Trims idle back to maxIdle once the function is quiet. */
  trimTimer?: NodeJS.Timeout | undefined;
}

export function activeFunction(deployment: Deployment, template: Template): ActiveFunction {
  return { deployment, template, pool: [], idle: [], serving: new Map(), filling: 0, fillFailures: 0, busy: 0, lastActive: 0 };
}

/** Outcomes after which the sandbox is still sound: the handler failed, not the sandbox. */
const SANDBOX_SURVIVES = new Set(['handler_error', 'invalid_response']);

/**
 * May this sandbox serve another invocation? A timeout or crash may leave a
 * sandbox that still answers `dead: false` for a moment; the outcome says
 * it must not serve anyone else.
 */
export function isSound(sandbox: Sandbox, outcome: InvocationOutcome): boolean {
  return !sandbox.dead && (outcome.ok || SANDBOX_SURVIVES.has(outcome.error.code));
}
