import type { PhaseTimings } from '../orchestrator/types.ts';
import type { InvocationLogEntry } from '../schemas/api.ts';

/** The engine's phase timings as the invocation log keeps them (0.1 ms is all a reader can use). */
export function loggedTimings(timings: PhaseTimings): NonNullable<InvocationLogEntry['timings']> {
  return { acquireMs: round(timings.acquireMs), restoreMs: round(timings.restoreMs), handlerMs: round(timings.handlerMs), source: timings.source };
}

/** Decoded size of a base64 body, without decoding it. */
export function base64Bytes(base64: string): number {
  const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
  return Math.max(0, Math.floor((base64.length * 3) / 4) - padding);
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
