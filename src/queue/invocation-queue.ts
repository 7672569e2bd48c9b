import crypto from 'node:crypto';
import { context, propagation } from '@opentelemetry/api';
import { FlowProducer, Queue, QueueEvents, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { CapacityError, InvalidInputError, NotFoundError, SnapfnError } from '../errors.ts';
import { retryAfterSeconds } from './backlog-estimate.ts';
import { parseFailedReason, QueueUnavailableError, QueueWaitTimeoutError } from './errors.ts';
import { functionOfScheduledRun, idempotentInvocationId, invocationIndexKey, isUsableJobId, schedulerId } from './invocation-ids.ts';
import { invocationStatus } from './invocation-status.ts';
import { attemptsFor } from '../invocation/policies.ts';
import { readCallbackState } from '../invocation/callbacks/callback-outbox.ts';
import { KEY_PREFIX, queueName, type InvocationMode, type InvocationJobData, type InvocationJobResult, type InvocationStatus } from './job-data.ts';
import { closeConnections, connectRedis, cutConnections, settleWithin } from './redis-connection.ts';
import { RedisHealth, type RedisHealthOptions } from './redis-health.ts';
import { AbandonedJobs } from './abandoned-jobs.ts';
import { openResult } from '../secrets/at-rest.ts';
import type { SecretsKey } from '../secrets/envelope.ts';

export interface RetentionPolicy {
  /** Finished jobs are the status API and the idempotency memory: keep them an hour. */
  completedAgeSeconds: number;
  completedCount: number;
  /** Dead letters are kept longer so someone can look at them. */
  failedAgeSeconds: number;
  failedCount: number;
}

export const DEFAULT_RETENTION: RetentionPolicy = {
  completedAgeSeconds: 3600,
  completedCount: 10_000,
  failedAgeSeconds: 7 * 24 * 3600,
  failedCount: 50_000,
};

export interface Backoff {
  type: 'exponential' | 'fixed';
  delayMs: number;
}

export interface InvocationQueueOptions {
  redisUrl: string;
  /** Default cap on waiting + delayed jobs per function (configure() overrides per function). */
  maxQueued?: number;
  /** Attempts of an async invocation (sync: always 1). */
  attempts?: number;
  backoff?: Backoff;
  retention?: Partial<RetentionPolicy>;
  /** How long an enqueue (or any other bounded Redis step) may wait for Redis before the caller gets a 503. */
  enqueueTimeoutMs?: number;
  /**
   * How long Redis may be away before what waits on it (an enqueue, a sync
   * caller waiting for its result) fails with QueueUnavailableError. Short
   * enough that such a caller hears within 5 s of Redis going away (after a
   * PING deadline for a Redis that stopped answering); long enough that a
   * supervised local Redis restarted at once goes unnoticed.
   */
  unavailableGraceMs?: number;
  health?: RedisHealthOptions;
  /** Opens the responses workers sealed (src/secrets/at-rest.ts) when a caller collects them. */
  secretsKey?: SecretsKey;
  /** BullMQ connection errors (they repeat while Redis is down: log, don't throw). */
  onError?: (err: Error) => void;
}

export interface EnqueueOptions {
  idempotencyKey?: string;
  /** Sync jobs: how long the caller will wait for the result; a worker never starts the job after that. */
  waitMs?: number;
  attempts?: number;
  backoff?: Backoff;
}

/** Job data as the caller gives it; the queue fills in ids, timestamps and trace context. */
export type EnqueueData = Omit<InvocationJobData, 'mode' | 'enqueuedAt' | 'trace'> & { mode: 'sync' | 'async'; enqueuedAt?: number };

/** One function's share of a fan-out (a topic message). */
export interface FanOutTarget {
  functionName: string;
  data: Omit<InvocationJobData, 'invocationId' | 'enqueuedAt' | 'trace'>;
  idempotencyKey: string;
  options?: Pick<EnqueueOptions, 'attempts' | 'backoff'>;
}

export interface FunctionQueueLimits {
  maxQueued?: number;
  /** Max running invocations of the function across all nodes (BullMQ global concurrency). */
  maxConcurrency?: number;
}

/**
 * The producer side: one BullMQ queue per function, idempotent enqueue, a
 * per-function backlog cap, status lookups and waiting for a result.
 */
export class InvocationQueue {
  readonly redis: Redis;
  /** Whether Redis is there (this connection's view): /healthz, and what fails fast while it is not. */
  readonly health: RedisHealth;
  readonly retention: RetentionPolicy;
  readonly #queues = new Map<string, Queue<InvocationJobData, InvocationJobResult>>();
  readonly #events = new Map<string, Promise<QueueEvents>>();
  readonly #maxQueued = new Map<string, number>();
  readonly #options: Required<Pick<InvocationQueueOptions, 'maxQueued' | 'attempts' | 'backoff' | 'enqueueTimeoutMs' | 'unavailableGraceMs' | 'onError'>>;
  /** Jobs whose callers were told `queue_unavailable`: never run (see AbandonedJobs). */
  readonly #abandoned: AbandonedJobs;
  readonly #secretsKey: SecretsKey | undefined;
  #flows: FlowProducer | undefined;
  #closed = false;

  constructor(options: InvocationQueueOptions) {
    this.redis = connectRedis(options.redisUrl, { name: 'snapfn-queue' });
    this.retention = { ...DEFAULT_RETENTION, ...options.retention };
    this.#options = {
      maxQueued: options.maxQueued ?? 10_000,
      attempts: options.attempts ?? 3,
      backoff: options.backoff ?? { type: 'exponential', delayMs: 1000 },
      enqueueTimeoutMs: options.enqueueTimeoutMs ?? 5000,
      unavailableGraceMs: options.unavailableGraceMs ?? 1500,
      onError: options.onError ?? ((err) => console.error(`snapfn queue: ${err.message}`)),
    };
    this.#secretsKey = options.secretsKey;
    this.redis.on('error', (err: Error) => this.#options.onError(err));
    this.health = new RedisHealth(this.redis, options.health);
    this.#abandoned = new AbandonedJobs({ health: this.health, bullQueue: (fn) => this.bullQueue(fn), redisCall: (what, fn) => this.#redisCall(what, fn) });
  }

  /** The BullMQ queue of a function (shared with Schedules and tests). */
  bullQueue(functionName: string): Queue<InvocationJobData, InvocationJobResult> {
    if (this.#closed) throw new SnapfnError('shutting_down', 503, 'the queue is closed');
    let queue = this.#queues.get(functionName);
    if (!queue) {
      queue = new Queue<InvocationJobData, InvocationJobResult>(queueName(functionName), { connection: this.redis, prefix: KEY_PREFIX });
      queue.on('error', (err) => this.#options.onError(err));
      // Every sync caller waiting in waitForResult holds a 'closing' listener
      // (BullMQ's waitUntilFinished); their number is bounded by the
      // per-function queue limit, not by Node's default of 10.
      queue.setMaxListeners(0);
      this.#queues.set(functionName, queue);
    }
    return queue;
  }

  async configure(functionName: string, limits: FunctionQueueLimits): Promise<void> {
    if (limits.maxQueued === undefined) this.#maxQueued.delete(functionName);
    else this.#maxQueued.set(functionName, limits.maxQueued);
    const queue = this.bullQueue(functionName);
    await this.#redisCall(`configuring the queue of ${functionName}`, async () => {
      if (limits.maxConcurrency === undefined) await queue.removeGlobalConcurrency();
      else await queue.setGlobalConcurrency(limits.maxConcurrency);
    });
  }

  /**
   * Queues one invocation and returns its id (= the job id). With an
   * idempotency key the id is derived from (function, key): a repeat while
   * the first job is still retained returns the first one's id, unqueued.
   */
  async enqueue(functionName: string, data: EnqueueData, options: EnqueueOptions = {}): Promise<string> {
    if (data.deployment.name !== functionName) throw new InvalidInputError(`job for ${data.deployment.name} enqueued on the queue of ${functionName}`);
    const id = options.idempotencyKey !== undefined ? idempotentInvocationId(functionName, options.idempotencyKey) : (data.invocationId ?? crypto.randomUUID());
    if (!isUsableJobId(id)) throw new InvalidInputError(`unusable invocation id "${id}" (no ':', not all digits, at most 200 chars)`);
    const carrier: Record<string, string> = {};
    propagation.inject(context.active(), carrier);
    const enqueuedAt = data.enqueuedAt ?? Date.now();
    const job: InvocationJobData = {
      ...data,
      invocationId: id,
      enqueuedAt,
      ...(data.mode === 'sync' && options.waitMs !== undefined ? { expiresAt: enqueuedAt + options.waitMs } : {}),
      ...(Object.keys(carrier).length > 0 ? { trace: carrier } : {}),
    };
    const enqueueing = this.#redisCall(`enqueue ${functionName}`, async () => {
      const queue = this.bullQueue(functionName);
      if (options.idempotencyKey !== undefined && (await this.redis.exists(queue.toKey(id))) === 1) {
        // A sync job whose caller went away before it started never ran: its key is free again.
        if (!(await this.#neverRan(queue, id))) return id;
        await queue.remove(id);
      }
      await this.#checkBacklog(functionName, queue);
      // The index first: whenever the job exists, status(id) can find it.
      await this.redis.set(invocationIndexKey(id), functionName, 'EX', this.#indexTtlSeconds());
      // An existing id (a concurrent repeat of the same key) is ignored by BullMQ: same id back.
      const added = await queue.add('invoke', job, { jobId: id, ...this.#jobOptions(data.mode, options) });
      return added.id ?? id;
    });
    return enqueueing.then((landed) => {
      this.#abandoned.forget(landed);
      return landed;
    }, (err: unknown) => {
      // The caller hears 503 (nothing queued) now, but the add may still land: it must not run then.
      // With an Idempotency-Key the caller's retry is the same job, and withdrawing it could race that
      // retry's success; the key already keeps it from running twice.
      if (err instanceof QueueUnavailableError && options.idempotencyKey === undefined) this.#abandoned.add(id, functionName);
      throw err;
    });
  }

  /**
   * One job per target in one MULTI (BullMQ's FlowProducer.addBulk): every
   * function's queue gets its job or none does. Ids come from
   * `idempotencyKey` per function, so publishing the same message again
   * adds nothing for a target that still has it. Refused (429) as a whole
   * when any target's backlog is full.
   */
  async fanOut(targets: FanOutTarget[]): Promise<string[]> {
    if (targets.length === 0) return [];
    const carrier: Record<string, string> = {};
    propagation.inject(context.active(), carrier);
    const enqueuedAt = Date.now();
    const jobs = targets.map((t) => {
      const id = idempotentInvocationId(t.functionName, t.idempotencyKey);
      const data: InvocationJobData = { ...t.data, invocationId: id, enqueuedAt, ...(Object.keys(carrier).length > 0 ? { trace: carrier } : {}) };
      return { id, functionName: t.functionName, data, opts: { jobId: id, ...this.#jobOptions(t.data.mode, t.options ?? {}) } };
    });
    return this.#redisCall(`publishing to ${targets.length} functions`, async () => {
      for (const job of jobs) await this.#checkBacklog(job.functionName, this.bullQueue(job.functionName));
      const index = this.redis.multi();
      for (const job of jobs) index.set(invocationIndexKey(job.id), job.functionName, 'EX', this.#indexTtlSeconds());
      await index.exec();
      this.#flows ??= new FlowProducer({ connection: this.redis, prefix: KEY_PREFIX });
      const added = await this.#flows.addBulk(jobs.map((j) => ({ name: 'invoke', queueName: queueName(j.functionName), data: j.data, opts: j.opts })));
      return added.map((node, i) => node.job.id ?? jobs[i]!.id);
    });
  }

  /** Which function an invocation belongs to, or undefined if Redis has never heard of it (or forgot). */
  async functionOf(invocationId: string): Promise<string | undefined> {
    const scheduled = functionOfScheduledRun(invocationId);
    if (scheduled) return scheduled;
    return (await this.#redisCall(`looking up invocation ${invocationId}`, () => this.redis.get(invocationIndexKey(invocationId)))) ?? undefined;
  }

  async status(invocationId: string, functionName?: string): Promise<InvocationStatus> {
    const fn = functionName ?? (await this.functionOf(invocationId));
    if (!fn) throw new NotFoundError(`no invocation ${invocationId} (unknown, or past its retention)`);
    const queue = this.bullQueue(fn);
    const [state, job] = await this.#redisCall(`reading invocation ${invocationId}`, async () => [await queue.getJobState(invocationId), await queue.getJob(invocationId)] as const);
    if (!job || state === 'unknown') throw new NotFoundError(`no invocation ${invocationId} of ${fn} (unknown, or past its retention)`);
    const callback = job.data.callbackUrl === undefined ? undefined : await this.#redisCall(`reading the callback of ${invocationId}`, () => readCallbackState(this.redis, invocationId));
    const status = { ...invocationStatus(fn, job, state), ...(callback ? { callback } : {}) };
    return status.result ? { ...status, result: this.#open(invocationId, status.result) } : status;
  }

  /** A job whose caller this gateway answered `queue_unavailable`: not to be started (see AbandonedJobs). */
  isAbandoned(invocationId: string): boolean {
    return this.#abandoned.has(invocationId);
  }

  /**
   * For a sync invocation that had to queue: resolves with its result, or
   * throws QueueWaitTimeoutError after `maxWaitMs`. A job that has not
   * started by then is withdrawn, so a caller who gave up never runs it.
   * If Redis goes away meanwhile (for longer than the grace), throws
   * QueueUnavailableError at once rather than waiting out `maxWaitMs` on a
   * connection that cannot deliver anything; the job is then abandoned.
   */
  async waitForResult(invocationId: string, maxWaitMs: number, functionName?: string): Promise<InvocationJobResult> {
    const fn = functionName ?? (await this.functionOf(invocationId));
    if (!fn) throw new NotFoundError(`no invocation ${invocationId}`);
    const started = Date.now();
    const watch = this.health.watch(`waiting for invocation ${invocationId}`, this.#options.unavailableGraceMs);
    const waiting = this.#waitForResult(fn, invocationId, maxWaitMs, started);
    // The loser of the race must not become an unhandled rejection.
    waiting.catch(() => {});
    try {
      return this.#open(invocationId, await Promise.race([waiting, watch.lost]));
    } catch (err) {
      if (err instanceof QueueUnavailableError) this.#abandoned.add(invocationId, fn);
      throw err;
    } finally {
      watch.cancel();
    }
  }

  async #waitForResult(fn: string, invocationId: string, maxWaitMs: number, started: number): Promise<InvocationJobResult> {
    const queue = this.bullQueue(fn);
    const events = await this.#queueEvents(fn);
    const job = await queue.getJob(invocationId);
    if (!job) throw new NotFoundError(`no invocation ${invocationId} of ${fn}`);
    try {
      return await job.waitUntilFinished(events, Math.max(1, maxWaitMs - (Date.now() - started)));
    } catch (err) {
      if (this.#closed) throw new SnapfnError('shutting_down', 503, 'the queue closed while waiting for the invocation');
      // Failed, timed out, or finished right at the deadline: Redis knows which.
      const state = await queue.getJobState(invocationId);
      if (state === 'completed') return (await queue.getJob(invocationId))!.returnvalue;
      if (state === 'failed') {
        const reason = (await queue.getJob(invocationId))?.failedReason ?? (err as Error).message;
        // The engine's refusals answer like on the direct path.
        const parsed = parseFailedReason(reason);
        if (parsed?.code === 'over_capacity') throw new CapacityError(`the queued invocation found no free sandbox: ${parsed.message}`, 5);
        if (parsed?.code === 'shutting_down') throw new SnapfnError('shutting_down', 503, parsed.message);
        // A worker took it just after the deadline and did not run it (CallerGoneError).
        if (parsed?.code === 'queue_timeout') throw new QueueWaitTimeoutError(invocationId, Date.now() - started, 'withdrawn');
        throw new SnapfnError('queue_error', 502, `the invocation failed in the queue: ${reason}`);
      }
      if (state === 'waiting' || state === 'delayed' || state === 'prioritized') {
        // remove() refuses a job a worker has just locked: then it is running.
        const removed = await job.remove().then(
          () => true,
          () => false,
        );
        if (removed) throw new QueueWaitTimeoutError(invocationId, Date.now() - started, 'withdrawn');
      }
      throw new QueueWaitTimeoutError(invocationId, Date.now() - started, 'running');
    }
  }

  async counts(functionName: string): Promise<Record<string, number>> {
    return this.bullQueue(functionName).getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed', 'paused');
  }

  /** The function is gone: stop its schedule, drop what has not started. Finished jobs stay for status(). */
  async removeFunction(functionName: string): Promise<void> {
    const queue = this.bullQueue(functionName);
    await this.#redisCall(`removing the queue of ${functionName}`, async () => {
      await queue.removeJobScheduler(schedulerId(functionName));
      await queue.drain(true);
      await queue.removeGlobalConcurrency();
    });
    this.#maxQueued.delete(functionName);
  }

  /**
   * Closes the event listeners, the queues and the connection. Bounded:
   * with Redis gone, BullMQ's closes wait on it forever, so after 2 s the
   * connections are cut (pending commands fail) instead.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const reachable = this.health.available;
    this.#abandoned.close();
    this.health.close();
    const closing = (async () => {
      const events = await Promise.allSettled([...this.#events.values()]);
      await Promise.allSettled(events.map((e) => (e.status === 'fulfilled' ? e.value.close() : undefined)));
      await Promise.allSettled([...this.#queues.values()].map((q) => q.close()));
      await this.#flows?.close();
    })();
    await settleWithin(closing, reachable ? 2000 : 100, () => cutConnections(this.redis));
    this.#queues.clear();
    this.#events.clear();
    await closeConnections(this.redis);
  }

  /** Ends every connection now (a forced shutdown): whatever waits on Redis fails. close() still ends the rest. */
  cut(): void {
    cutConnections(this.redis);
  }

  /** A sealed response that does not open is an error for its caller, never another body. */
  #open(invocationId: string, result: InvocationJobResult): InvocationJobResult {
    try {
      return openResult(this.#secretsKey, invocationId, result);
    } catch (err) {
      throw new SnapfnError('sealed_result', 500, `the result of ${invocationId} could not be opened: ${(err as Error).message}`);
    }
  }

  #jobOptions(mode: InvocationMode, options: EnqueueOptions): JobsOptions {
    const r = this.retention;
    const backoff = options.backoff ?? this.#options.backoff;
    return {
      // A sync caller gets the failure in its response; retrying behind its back would run the handler twice (policies.ts).
      attempts: attemptsFor(mode, options.attempts, this.#options.attempts),
      backoff: { type: backoff.type, delay: backoff.delayMs },
      removeOnComplete: { age: r.completedAgeSeconds, count: r.completedCount },
      removeOnFail: { age: r.failedAgeSeconds, count: r.failedCount },
    };
  }

  #indexTtlSeconds(): number {
    // Outlive the job in any state; queued jobs have no retention, a day of backlog is plenty.
    return Math.max(this.retention.completedAgeSeconds, this.retention.failedAgeSeconds, 24 * 3600);
  }

  async #checkBacklog(functionName: string, queue: Queue<InvocationJobData, InvocationJobResult>): Promise<void> {
    const limit = this.#maxQueued.get(functionName) ?? this.#options.maxQueued;
    const counts = await queue.getJobCounts('waiting', 'prioritized', 'delayed', 'paused');
    const queued = Object.values(counts).reduce((a, b) => a + b, 0);
    if (queued < limit) return;
    // The completed set is scored by finish time: its head is the recent drain rate.
    const recent = await this.redis.zrevrange(queue.keys.completed!, 0, 49, 'WITHSCORES');
    const times = recent.filter((_, i) => i % 2 === 1).map(Number);
    throw new CapacityError(`${queued} invocations of ${functionName} are already queued (limit ${limit})`, retryAfterSeconds(queued, times));
  }

  #queueEvents(functionName: string): Promise<QueueEvents> {
    let events = this.#events.get(functionName);
    if (!events) {
      const e = new QueueEvents(queueName(functionName), { connection: this.redis, prefix: KEY_PREFIX });
      e.on('error', (err) => this.#options.onError(err));
      events = e.waitUntilReady().then(() => e);
      this.#events.set(functionName, events);
      events.catch(() => this.#events.delete(functionName));
    }
    return events;
  }

  /**
   * One bounded step against Redis: refused at once (after the grace) while
   * Redis is known to be away, and given up when it goes away meanwhile or
   * does not answer within `enqueueTimeoutMs`. The step itself is not
   * cancelled: it may still land once Redis is back (see docs/queue.md).
   */
  async #redisCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const { enqueueTimeoutMs, unavailableGraceMs } = this.#options;
    const deadline = Date.now() + enqueueTimeoutMs;
    if (!(await this.health.whenAvailable(Math.min(unavailableGraceMs, enqueueTimeoutMs)))) throw this.health.unavailableError(what);
    const watch = this.health.watch(what, unavailableGraceMs);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new QueueUnavailableError(`${what}: Redis did not answer within ${enqueueTimeoutMs} ms`)), Math.max(0, deadline - Date.now()));
    });
    const running = fn();
    running.catch(() => {});
    try {
      return await Promise.race([running, timeout, watch.lost]);
    } finally {
      clearTimeout(timer);
      watch.cancel();
    }
  }

  async #neverRan(queue: Queue<InvocationJobData, InvocationJobResult>, id: string): Promise<boolean> {
    if ((await queue.getJobState(id)) !== 'failed') return false;
    return parseFailedReason((await queue.getJob(id))?.failedReason)?.code === 'queue_timeout';
  }
}
