import type { InvocationAttemptFailedEvent, InvocationResultEvent } from '../queue/invocation-processor.ts';
import type { FunctionStore } from '../registry/function-store.ts';
import type { InvocationLogEntry, QueuedAttempt } from '../schemas/api.ts';
import type { SnapfnMetrics } from '../telemetry/snapfn-metrics.ts';
import { base64Bytes, loggedTimings } from './log-fields.ts';
import { failureStatus } from './outcome-response.ts';
import { attemptState } from '../invocation/policies.ts';
import { roundMs as round, writeInvocation } from '../invocation/record.ts';

export interface QueueLogDeps {
  store: FunctionStore;
  metrics?: SnapfnMetrics | undefined;
  log?: (message: string) => void;
}

/**
 * Queued attempts in the invocation log, one entry per attempt (so retries
 * and the dead letter show), in the same shape as direct invocations plus
 * `queue`. Secret values are redacted exactly as on the direct path.
 * `durationMs` is the time on the node (sandbox wait, restore, handler);
 * the time spent in the queue is `queue.waitMs`.
 */
export class QueueLog {
  readonly #deps: QueueLogDeps;

  constructor(deps: QueueLogDeps) {
    this.#deps = deps;
  }

  /** An attempt that produced an outcome (InvocationWorkers' onResult, and events from worker-only nodes). */
  readonly onResult = async (event: InvocationResultEvent): Promise<void> => {
    const { outcome, timings, attempt } = event.result;
    const engineMs = timings.acquireMs + timings.restoreMs + timings.handlerMs;
    this.#deps.metrics?.recordInvocation(event.functionName, outcome, timings, timings.queueWaitMs + engineMs, { queued: true });
    const state: QueuedAttempt['state'] = attemptState(event.mode, outcome.ok, event.willRetry);
    await writeInvocation(this.#deps, event.functionName, {
      id: event.invocationId,
      time: new Date().toISOString(),
      version: event.version,
      method: event.request?.method ?? 'GET',
      path: event.request?.path ?? `/fn/${event.functionName}`,
      status: outcome.ok ? outcome.response.status : failureStatus(outcome.error.code),
      durationMs: round(engineMs),
      ok: outcome.ok,
      ...(outcome.ok ? {} : { error: { code: outcome.error.code, message: outcome.error.message, ...(outcome.error.stack ? { stack: outcome.error.stack } : {}) } }),
      logs: outcome.logs,
      logsTruncated: outcome.logsTruncated,
      ...(outcome.ok ? { responseBytes: base64Bytes(outcome.response.bodyBase64) } : {}),
      timings: loggedTimings(timings),
      queue: { mode: event.mode, attempt, maxAttempts: event.maxAttempts ?? attempt, waitMs: round(timings.queueWaitMs), state },
    });
  };

  /** An attempt that ended without an outcome (deployment gone, engine refused it...). */
  readonly onAttemptFailed = async (event: InvocationAttemptFailedEvent): Promise<void> => {
    this.#deps.metrics?.recordRejected(event.functionName, event.error.code, event.queueWaitMs);
    // A job pinned to no version ('active') whose deployment could not be resolved: log it under the active one.
    const version = event.version ?? (await this.#deps.store.serving(event.functionName).catch(() => undefined))?.version.version;
    if (version === undefined) return;
    const state: QueuedAttempt['state'] = attemptState(event.mode, false, event.willRetry);
    await writeInvocation(this.#deps, event.functionName, {
      id: event.invocationId,
      time: new Date().toISOString(),
      version,
      method: event.request.method,
      path: event.request.path,
      status: event.status,
      durationMs: 0,
      ok: false,
      error: event.error,
      logs: [],
      logsTruncated: false,
      queue: { mode: event.mode, attempt: event.attempt, maxAttempts: event.maxAttempts, waitMs: round(event.queueWaitMs), state },
    });
  };
}
