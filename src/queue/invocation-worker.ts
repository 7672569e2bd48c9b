import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { InvocationEngine } from '../orchestrator/types.ts';
import type { SecretsKey } from '../secrets/envelope.ts';
import { CallbackOutbox } from '../invocation/callbacks/callback-outbox.ts';
import type { CallbackDeliveryBounds } from '../invocation/callbacks/callback-settings.ts';
import { ConcurrencyGovernor } from './concurrency-governor.ts';
import { DEFAULT_WORKER_ID, processInvocationJob, type InvocationAttemptFailedEvent, type InvocationResultEvent, type ResolveDeployment } from './invocation-processor.ts';
import { KEY_PREFIX, queueName, type InvocationJobData, type InvocationJobResult } from './job-data.ts';
import { closeConnections, connectRedis, cutConnections } from './redis-connection.ts';
import { endRetriesOnceCut } from './worker-retries.ts';

export type { InvocationAttemptFailedEvent, InvocationResultEvent, ResolveDeployment } from './invocation-processor.ts';

export interface InvocationWorkersOptions {
  redisUrl: string;
  engine: InvocationEngine;
  /** The function store's job (gateway) or the Redis deployment registry's (worker-only node). */
  resolveDeployment: ResolveDeployment;
  onResult?: (event: InvocationResultEvent) => void | Promise<void>;
  /** Attempts that failed without an outcome (see InvocationAttemptFailedEvent). */
  onAttemptFailed?: (event: InvocationAttemptFailedEvent) => void | Promise<void>;
  /** Sandboxes the queue leaves to the direct HTTP path (gateway nodes: >= 1; worker-only nodes: 0). */
  reserveForDirect?: number;
  /**
   * A job whose worker died is retried after its lock expires and a stalled
   * check notices: up to lockDuration + stalledInterval. The lock is renewed
   * every lockDuration/2 while the job runs, so long handlers are fine.
   */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  /** Worker deaths a job survives before it is dead-lettered. */
  maxStalledCount?: number;
  workerId?: string;
  /** Sync jobs this node's gateway already answered (InvocationQueue.isAbandoned): failed without running. */
  isAbandoned?: (invocationId: string) => boolean;
  /** Seals the responses Redis keeps (see ProcessorDeps.secretsKey). */
  secretsKey?: SecretsKey;
  /**
   * close(): once no job has been inside the engine for this long, what the
   * close still waits for is Redis (results, locks, BullMQ's own closes):
   * with Redis gone that never comes, so the connections are cut.
   */
  closeRedisGraceMs?: number;
  /** Attempts and backoff of the callbacks this node queues when an invocation with a callback URL ends. */
  callbackBounds?: Partial<CallbackDeliveryBounds>;
  onError?: (err: Error) => void;
}

interface FunctionWorker {
  worker: Worker<InvocationJobData, InvocationJobResult>;
  processed: number;
}

/**
 * The consumer side on one node: a BullMQ Worker per function queue this
 * node serves, whose concurrency follows the node's free sandboxes.
 */
export class InvocationWorkers {
  readonly workerId: string;
  readonly #redis: Redis;
  readonly #options: InvocationWorkersOptions & { onError: (err: Error) => void };
  readonly #workers = new Map<string, FunctionWorker>();
  readonly #governor: ConcurrencyGovernor;
  /** Any node that runs invocations queues their callbacks (worker-only nodes too); gateway nodes send them. */
  readonly #callbacks: CallbackOutbox;
  #closed = false;
  #cut = false;

  constructor(options: InvocationWorkersOptions) {
    this.#options = { ...options, onError: options.onError ?? ((err) => console.error(`snapfn worker: ${err.message}`)) };
    this.workerId = options.workerId ?? DEFAULT_WORKER_ID;
    this.#redis = connectRedis(options.redisUrl, { name: 'snapfn-worker' });
    this.#redis.on('error', (err: Error) => this.#options.onError(err));
    this.#callbacks = new CallbackOutbox(this.#redis, options.callbackBounds);
    this.#governor = new ConcurrencyGovernor({
      engine: options.engine,
      reserve: options.reserveForDirect ?? 0,
      apply: (name, concurrency) => this.#apply(name, concurrency),
    });
  }

  /** Function queues this node currently serves. */
  functions(): string[] {
    return [...this.#workers.keys()];
  }

  stats(): Record<string, { concurrency: number; paused: boolean; processed: number }> {
    const out: Record<string, { concurrency: number; paused: boolean; processed: number }> = {};
    for (const [name, fw] of this.#workers) out[name] = { concurrency: fw.worker.concurrency, paused: fw.worker.isPaused(), processed: fw.processed };
    return out;
  }

  /** Start taking jobs of a function (idempotent). */
  start(functionName: string): void {
    if (this.#closed || this.#workers.has(functionName)) return;
    const fw: FunctionWorker = {
      worker: new Worker<InvocationJobData, InvocationJobResult>(
        queueName(functionName),
        async (job) => {
          this.#governor.jobStarted(functionName);
          try {
            return await processInvocationJob(job, {
              engine: this.#countedEngine,
              resolveDeployment: this.#options.resolveDeployment,
              ...(this.#options.onResult ? { onResult: this.#options.onResult } : {}),
              ...(this.#options.onAttemptFailed ? { onAttemptFailed: this.#options.onAttemptFailed } : {}),
              onError: this.#options.onError,
              workerId: this.workerId,
              ...(this.#options.isAbandoned ? { isAbandoned: this.#options.isAbandoned } : {}),
              ...(this.#options.secretsKey ? { secretsKey: this.#options.secretsKey } : {}),
              onSettled: (settled) => this.#callbacks.enqueue(settled),
            });
          } finally {
            fw.processed++;
            this.#governor.jobFinished(functionName);
          }
        },
        {
          connection: this.#redis,
          prefix: KEY_PREFIX,
          // Starts small; the governor raises it as soon as the function has work.
          concurrency: 1,
          lockDuration: this.#options.lockDurationMs ?? 10_000,
          stalledInterval: this.#options.stalledIntervalMs ?? 10_000,
          maxStalledCount: this.#options.maxStalledCount ?? 2,
          // BullMQ waits this long after a failed fetch (Redis down); its 15 s default stalls recovery.
          runRetryDelay: 1000,
        },
      ),
      processed: 0,
    };
    fw.worker.on('error', (err) => this.#options.onError(err));
    endRetriesOnceCut(fw.worker, () => this.#cut);
    this.#workers.set(functionName, fw);
    this.#governor.register(functionName);
  }

  /** Resolves once every started worker is connected and fetching (tests, readiness probes). */
  async ready(): Promise<void> {
    await Promise.all([...this.#workers.values()].map((fw) => fw.worker.waitUntilReady()));
  }

  /** Stop taking jobs of a function; waits for its running jobs. */
  async stop(functionName: string): Promise<void> {
    const fw = this.#workers.get(functionName);
    if (!fw) return;
    this.#workers.delete(functionName);
    this.#governor.unregister(functionName);
    await fw.worker.close();
  }

  /** Serve exactly these functions. */
  async sync(functionNames: Iterable<string>): Promise<void> {
    const want = new Set(functionNames);
    await Promise.all(this.functions().filter((name) => !want.has(name)).map((name) => this.stop(name)));
    for (const name of want) this.start(name);
  }

  /**
   * Stops fetching, waits for running jobs (a job cut off here would be
   * retried elsewhere after its lock expires), closes the connection.
   * `force` does not wait: for a node that must go now.
   *
   * Running jobs end within their function's timeout in the engine, Redis
   * or not. What comes after (the result, the lock, BullMQ's connection
   * closes) waits for Redis; if nothing has been in the engine for
   * `closeRedisGraceMs` (3 s) and the close is still not done, Redis is not
   * coming: the connections are cut and the close ends. A job whose result
   * did not reach Redis is run again after its lock expires (at least once).
   */
  async close(options: { force?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#governor.close();
    let done = false;
    const closing = Promise.allSettled([...this.#workers.values()].map((fw) => fw.worker.close(options.force))).finally(() => (done = true));
    const graceMs = this.#options.closeRedisGraceMs ?? 3000;
    let idleSince = Date.now();
    let reachableAt = Date.now();
    while (!done) {
      await Promise.race([closing, new Promise((r) => setTimeout(r, 100))]);
      const now = Date.now();
      if (this.#redis.status === 'ready') reachableAt = now;
      if (this.#governor.inEngine > 0) idleSince = now;
      // Known to be gone for a second: no point in waiting out the rest of the grace.
      else if (!done && (now - idleSince > graceMs || now - reachableAt > 1000)) {
        this.#options.onError(new Error(`closing the workers: Redis did not take the last results within ${graceMs} ms; cutting its connections`));
        this.cut();
        await Promise.race([closing, new Promise((r) => setTimeout(r, 1000))]);
        break;
      }
    }
    this.#workers.clear();
    await Promise.race([this.#callbacks.close(), new Promise((r) => setTimeout(r, 1000))]);
    await closeConnections(this.#redis);
  }

  /** Ends every connection now, BullMQ's blocking ones included (a forced shutdown): whatever waits on Redis fails. */
  cut(): void {
    this.#cut = true;
    cutConnections(this.#redis);
  }

  /** The engine as the processor sees it: every call counted in and out for the governor. */
  readonly #countedEngine: Pick<InvocationEngine, 'invoke'> = {
    invoke: async (deployment, request, options) => {
      this.#governor.enterEngine();
      try {
        return await this.#options.engine.invoke(deployment, request, options);
      } finally {
        this.#governor.exitEngine();
      }
    },
  };

  #apply(name: string, concurrency: number): void {
    const worker = this.#workers.get(name)?.worker;
    if (!worker || this.#closed || worker.closing) return;
    if (concurrency <= 0) {
      // Not waiting for running jobs: pausing only stops new fetches.
      void worker.pause(true).catch((err: Error) => this.#options.onError(err));
      return;
    }
    worker.concurrency = concurrency;
    if (worker.isPaused()) worker.resume();
  }
}
