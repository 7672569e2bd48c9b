import { UnrecoverableError } from 'bullmq';
import { SnapfnError } from '../errors.ts';
import type { HandlerFailure } from '../schemas/invocation.ts';

/**
 * An async or scheduled invocation whose outcome was a failure. Thrown from
 * the job processor so BullMQ retries it (or dead-letters it after the last
 * attempt). The message is `<code>: <message>` because BullMQ keeps only the
 * message (`failedReason`); `parseFailedReason` turns it back into a failure.
 */
export class InvocationFailedError extends SnapfnError {
  readonly failure: HandlerFailure;
  constructor(failure: HandlerFailure) {
    super(failure.code, 502, `${failure.code}: ${failure.message}`);
    this.failure = failure;
  }
}

/** Outcome failures, and the engine's own refusals (see EngineRefusedError). */
const FAILURE_CODES = new Set<string>(['handler_error', 'timeout', 'sandbox_crashed', 'out_of_memory', 'restore_failed', 'invalid_response', 'over_capacity', 'shutting_down', 'queue_timeout']);

/** The `{ code, message }` of a BullMQ failedReason (ours or any other thrown error). */
export function parseFailedReason(reason: string | undefined): { code: string; message: string } | undefined {
  if (!reason) return undefined;
  const m = /^([a-z_]+): ([\s\S]*)$/.exec(reason);
  if (m && FAILURE_CODES.has(m[1]!)) return { code: m[1]!, message: m[2]! };
  // Stalled too often, deployment gone, Redis trouble mid-job...
  return { code: 'queue_error', message: reason };
}

/**
 * The engine refused an attempt (no sandbox within its max wait, shutting
 * down). Thrown from the processor in place of the engine's own error so
 * that BullMQ's failedReason keeps the code: a waiting caller then gets a
 * 429 / 503 like on the direct path, not a generic queue error.
 */
export class EngineRefusedError extends Error {
  override readonly name = 'EngineRefusedError';
  constructor(err: SnapfnError) {
    super(`${err.code}: ${err.message}`, { cause: err });
  }
}

/** A synchronous caller waited for its queued invocation longer than it was willing to. */
export class QueueWaitTimeoutError extends SnapfnError {
  readonly invocationId: string;
  constructor(invocationId: string, waitedMs: number, state: 'withdrawn' | 'running') {
    const message =
      state === 'withdrawn'
        ? `the invocation waited ${waitedMs} ms in the queue without starting and was withdrawn`
        : `the invocation did not finish within ${waitedMs} ms; it keeps running, poll its status`;
    // Withdrawn: nothing ran, retrying is safe (503). Running: the outcome is unknown yet (504).
    super(state === 'withdrawn' ? 'queue_timeout' : 'result_timeout', state === 'withdrawn' ? 503 : 504, message, { details: { invocationId, state } });
    this.invocationId = invocationId;
  }
}

/** Redis did not answer in time: the invocation may or may not have been queued. */
export class QueueUnavailableError extends SnapfnError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('queue_unavailable', 503, message, options);
  }
}

/**
 * A sync job whose caller has already been answered: its wait ran out, or
 * it was told `queue_unavailable` while Redis was away. Running it now would
 * serve nobody and could run the handler twice (the caller retries), so the
 * worker fails it without running it, and without retries.
 */
export class CallerGoneError extends UnrecoverableError {
  constructor(invocationId: string, why: 'expired' | 'abandoned') {
    super(
      why === 'expired'
        ? `queue_timeout: ${invocationId} was not started before its caller's wait ran out; not run`
        : `queue_timeout: ${invocationId}'s caller was answered while Redis was unavailable; not run`,
    );
  }
}

/** The node's own redis-server did not come up. */
export class RedisStartError extends Error {
  override readonly name = 'RedisStartError';
}

/** What a BullMQ retry meets once the workers' close has cut their Redis connections (see worker-retries.ts). */
export class ConnectionsCutError extends Error {
  override readonly name = 'ConnectionsCutError';
  constructor() {
    super('the workers are closed and their Redis connections cut; not retried');
  }
}
