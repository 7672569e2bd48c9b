import type { InvocationMode, TriggerKind } from '../schemas/invocation.ts';

/**
 * How one kind of trigger behaves, in one place: the queue, the processor,
 * the status API and the invocation log all read it from here, so a new
 * trigger kind is a row in TRIGGER_POLICIES (plus its adapter), not an edit
 * of every `mode === 'sync'` in the code.
 */
export interface TriggerPolicy {
  /** The caller holds its connection open for the result (and gets the failure in its response). */
  callerWaits: boolean;
  /**
   * A failed outcome is retried with backoff up to the job's attempts.
   * False: one attempt only, because a waiting caller must not have the
   * handler run twice behind its back.
   */
  retries: boolean;
  /** Default attempts when the function says nothing (the queue's default for `'queue'`). */
  defaultAttempts: number | 'queue';
  /** Where a failed last attempt ends: `failed` (its caller got it) or `dead` (the dead letter). */
  failedEnd: 'failed' | 'dead';
  /** May carry a callback URL (POSTed the result when it ends). */
  callbacks: boolean;
}

export const TRIGGER_POLICIES: Readonly<Record<TriggerKind, TriggerPolicy>> = {
  // Direct HTTP never touches the queue; the row says what its caller sees.
  http: { callerWaits: true, retries: false, defaultAttempts: 1, failedEnd: 'failed', callbacks: false },
  // A synchronous HTTP call that had to queue (no free sandbox, or an Idempotency-Key).
  sync: { callerWaits: true, retries: false, defaultAttempts: 1, failedEnd: 'failed', callbacks: false },
  async: { callerWaits: false, retries: true, defaultAttempts: 'queue', failedEnd: 'dead', callbacks: true },
  // The next tick is the retry: one attempt unless the schedule asks for more.
  schedule: { callerWaits: false, retries: true, defaultAttempts: 1, failedEnd: 'dead', callbacks: false },
  topic: { callerWaits: false, retries: true, defaultAttempts: 'queue', failedEnd: 'dead', callbacks: false },
};

export function policyOf(trigger: TriggerKind): TriggerPolicy {
  return TRIGGER_POLICIES[trigger];
}

/** Attempts a job of this mode gets: `requested` (the function's or the caller's), else the policy's default. */
export function attemptsFor(mode: InvocationMode, requested: number | undefined, queueDefault: number): number {
  const policy = TRIGGER_POLICIES[mode];
  if (!policy.retries) return 1;
  const fallback = policy.defaultAttempts === 'queue' ? queueDefault : policy.defaultAttempts;
  return Math.max(1, requested ?? fallback);
}

/** The state one attempt leaves its invocation in (the `queue.state` of its log entry). */
export function attemptState(mode: InvocationMode, ok: boolean, willRetry: boolean): 'completed' | 'failed' | 'retrying' | 'dead' {
  if (ok) return 'completed';
  if (willRetry) return 'retrying';
  return TRIGGER_POLICIES[mode].failedEnd;
}
