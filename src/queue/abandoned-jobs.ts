import type { Queue } from 'bullmq';
import type { InvocationJobData, InvocationJobResult } from './job-data.ts';
import type { RedisHealth } from './redis-health.ts';

/** How long after a reconnect an abandoned job Redis has never heard of is still expected to land. */
const UNLANDED_AFTER_MS = 30_000;
/** Bounded: the oldest go first. */
const MAX_ENTRIES = 10_000;

export interface AbandonedJobsDeps {
  health: RedisHealth;
  bullQueue(functionName: string): Queue<InvocationJobData, InvocationJobResult>;
  /** One bounded step against Redis (InvocationQueue's): fails fast while Redis is away. */
  redisCall<T>(what: string, fn: () => Promise<T>): Promise<T>;
}

/**
 * Jobs whose caller this node answered `queue_unavailable` while Redis was
 * away or hung: a sync caller whose wait lost Redis, or an enqueue answered
 * 503 whose add may still land (ioredis resends what was in flight at the
 * reconnect). Such a job must never run: this node's workers refuse it
 * (`has`) and, once Redis is back, it is withdrawn if it has not started.
 * An entry stays until the job has ended: a worker that has taken it but
 * not yet asked `has` must still hear "abandoned". One Redis has not heard
 * of yet is looked for again for a while after the reconnect.
 */
export class AbandonedJobs {
  readonly #deps: AbandonedJobsDeps;
  readonly #entries = new Map<string, { functionName: string; unknownSince?: number }>();
  readonly #offHealth: () => void;
  #again: NodeJS.Timeout | undefined;
  #withdrawing = false;
  #closed = false;

  constructor(deps: AbandonedJobsDeps) {
    this.#deps = deps;
    this.#offHealth = deps.health.onChange(() => void this.#withdraw());
  }

  has(invocationId: string): boolean {
    return this.#entries.has(invocationId);
  }

  add(invocationId: string, functionName: string): void {
    if (this.#entries.size >= MAX_ENTRIES) this.#entries.delete(this.#entries.keys().next().value!);
    this.#entries.set(invocationId, { functionName });
    // Redis may never have looked away (it was only slow): no reconnect will start the pass.
    if (this.#deps.health.available && !this.#withdrawing) this.#passIn(1000);
  }

  /** An enqueue of this id succeeded (a retry with its Idempotency-Key): its new caller waits for it, so it may run. */
  forget(invocationId: string): void {
    this.#entries.delete(invocationId);
  }

  close(): void {
    this.#closed = true;
    this.#offHealth();
    clearTimeout(this.#again);
  }

  #passIn(ms: number): void {
    clearTimeout(this.#again);
    this.#again = setTimeout(() => void this.#withdraw(), ms);
    this.#again.unref();
  }

  /**
   * Redis is back: remove the abandoned jobs that have not started; a
   * running one is kept until it has ended. One Redis has not heard of yet
   * is looked at again until it lands (and is removed) or expires.
   */
  async #withdraw(): Promise<void> {
    if (!this.#deps.health.available) {
      // Gone again: the next reconnect starts the clock anew.
      for (const entry of this.#entries.values()) delete entry.unknownSince;
      return;
    }
    if (this.#withdrawing || this.#closed) return;
    this.#withdrawing = true;
    clearTimeout(this.#again);
    let pending = false;
    try {
      for (const [id, entry] of [...this.#entries]) {
        if (this.#closed || !this.#deps.health.available) break;
        const settled = await this.#deps.redisCall(`withdrawing invocation ${id}`, async () => {
          const queue = this.#deps.bullQueue(entry.functionName);
          const state = await queue.getJobState(id);
          // Still abandoned: a retry with its Idempotency-Key may have claimed it meanwhile.
          if ((state === 'waiting' || state === 'delayed' || state === 'prioritized') && this.#entries.has(id)) {
            // 0, not an error, when a worker locked it in between: then it is active, and kept as such.
            return (await queue.remove(id)) === 1;
          }
          if (state === 'completed' || state === 'failed') return true;
          // Active: a worker took it and may not have asked has() yet; forgetting it now would let
          // that worker run it. Kept until it has ended (refused here, or run by another node).
          if (state !== 'unknown') return false;
          // What was in flight is resent at the reconnect: unknown for this long, it never reached Redis.
          entry.unknownSince ??= Date.now();
          return Date.now() - entry.unknownSince > UNLANDED_AFTER_MS;
        }).catch(() => false);
        if (settled) this.#entries.delete(id);
        else pending = true;
      }
    } finally {
      this.#withdrawing = false;
    }
    if (pending && !this.#closed) this.#passIn(1000);
  }
}
