import os from 'node:os';
import type { Redis } from 'ioredis';
import { QueueLog } from './gateway/queue-log.ts';
import { Callbacks } from './invocation/callbacks/callbacks.ts';
import { CallbackSender } from './invocation/callbacks/callback-sender.ts';
import { loadCallbackSettings, type CallbackDeliveryBounds, type CallbackSettings } from './invocation/callbacks/callback-settings.ts';
import { TopicSubscriptions } from './invocation/topics/topic-subscriptions.ts';
import type { InvocationEngine } from './orchestrator/types.ts';
import { DeploymentRegistry } from './queue/deployment-registry.ts';
import { FunctionQueues } from './queue/function-queues.ts';
import { InvocationQueue, type Backoff } from './queue/invocation-queue.ts';
import { InvocationWorkers } from './queue/invocation-worker.ts';
import { connectRedis, cutConnections } from './queue/redis-connection.ts';
import { ResultStream } from './queue/result-stream.ts';
import { Schedules } from './queue/schedules.ts';
import type { FunctionStore } from './registry/function-store.ts';
import type { SecretsKey } from './secrets/envelope.ts';
import type { SnapfnMetrics } from './telemetry/snapfn-metrics.ts';

export interface QueueLayerOptions {
  redisUrl: string;
  /**
   * A Redis other nodes share (REDIS_URL): deployments are published for
   * worker-only nodes and their results are read back into the log. A
   * node's private Redis has neither.
   */
  shared: boolean;
  engine: InvocationEngine;
  store: FunctionStore;
  maxQueuedPerFunction: number;
  /** Seals what goes to Redis (secrets of published deployments, responses of queued invocations); see src/secrets/at-rest.ts. */
  secretsKey?: SecretsKey | undefined;
  metrics?: SnapfnMetrics | undefined;
  log?: (message: string) => void;
  /** Where callbacks may go and how they are signed; default: from SNAPFN_CALLBACK_SECRET and SNAPFN_CALLBACK_ALLOW. */
  callbacks?: CallbackSettings;
  /** Tests shorten retries and stall detection. */
  tuning?: { attempts?: number; backoff?: Backoff; lockDurationMs?: number; stalledIntervalMs?: number; callbacks?: Partial<CallbackDeliveryBounds> };
}

export interface QueueLayer {
  readonly functions: FunctionQueues;
  /**
   * Stops reading results, then the workers (running jobs finish), then the
   * producer side. Redis stays the caller's. Bounded whatever Redis does:
   * running jobs end within their timeout, Redis gets a few seconds more.
   */
  close(): Promise<void>;
  /** Ends every Redis connection now (a forced shutdown): a close() in progress then finishes at once. */
  cut(): void;
}

/**
 * The queue layer of a gateway node: producer, schedules, this node's
 * workers (taking jobs into the same engine as the direct path, with one
 * sandbox kept for it) and, on a shared Redis, the deployment registry and
 * the results of worker-only nodes. See docs/queue.md.
 */
export function openQueueLayer(options: QueueLayerOptions): QueueLayer {
  const { redisUrl, engine, store, tuning = {} } = options;
  const log = throttled(options.log ?? ((m) => console.error(m)));
  const queueLog = new QueueLog({ store, metrics: options.metrics, log });
  const queue = new InvocationQueue({
    redisUrl,
    maxQueued: options.maxQueuedPerFunction,
    ...(options.secretsKey ? { secretsKey: options.secretsKey } : {}),
    ...(tuning.attempts ? { attempts: tuning.attempts } : {}),
    ...(tuning.backoff ? { backoff: tuning.backoff } : {}),
    onError: (err) => log(`snapfn queue: ${err.message}`),
  });
  const callbackSettings = options.callbacks ?? loadCallbackSettings(process.env, tuning.callbacks);
  // Gateway nodes send the callbacks any node queued: they hold the allow-list and the secret.
  const callbackSender = new CallbackSender({
    redis: queue.redis,
    settings: callbackSettings,
    secretValuesOf: (name, version) => store.secretValuesOf(name, version),
    connect: (name) => connectRedis(redisUrl, { name }),
    onError: (err) => log(`snapfn callbacks: ${err.message}`),
  });
  const workers = new InvocationWorkers({
    redisUrl,
    engine,
    // One sandbox stays for direct invocations, so a deep async backlog does
    // not push every synchronous request into the queue behind it. A node
    // with a single sandbox cannot spare one: the queue would never run.
    reserveForDirect: Math.min(1, engine.stats().maxSandboxes - 1),
    resolveDeployment: (name, version) => store.resolveDeployment(name, version),
    isAbandoned: (id) => queue.isAbandoned(id),
    ...(options.secretsKey ? { secretsKey: options.secretsKey } : {}),
    onResult: queueLog.onResult,
    onAttemptFailed: queueLog.onAttemptFailed,
    ...(tuning.callbacks ? { callbackBounds: tuning.callbacks } : {}),
    ...(tuning.lockDurationMs ? { lockDurationMs: tuning.lockDurationMs } : {}),
    ...(tuning.stalledIntervalMs ? { stalledIntervalMs: tuning.stalledIntervalMs } : {}),
    onError: (err) => log(`snapfn worker: ${err.message}`),
  });
  const functions = new FunctionQueues({
    queue,
    schedules: new Schedules(queue),
    workers,
    callbacks: new Callbacks(callbackSettings),
    subscriptions: new TopicSubscriptions(queue.redis),
    ...(options.shared ? { registry: new DeploymentRegistry(queue.redis, options.secretsKey) } : {}),
  });
  const results = options.shared ? readResults(redisUrl, queueLog, log, options.secretsKey) : undefined;
  options.metrics?.attachQueue(() => functions.depth());
  let closing: Promise<void> | undefined;
  return {
    functions,
    close: () =>
      (closing ??= (async () => {
        options.metrics?.attachQueue(undefined);
        await results?.close();
        await Promise.race([callbackSender.close(), new Promise((r) => setTimeout(r, 2000))]);
        await functions.close();
      })()),
    cut: () => {
      results?.cut();
      callbackSender.cut();
      functions.cut();
    },
  };
}

/** Appends what worker-only nodes ran (they have no invocation log) until closed. */
function readResults(redisUrl: string, queueLog: QueueLog, log: (message: string) => void, secretsKey: SecretsKey | undefined): { close(): Promise<void>; cut(): void } {
  // Its own connection: XREADGROUP BLOCK holds it.
  const redis: Redis = connectRedis(redisUrl, { name: 'snapfn-results' });
  redis.on('error', () => {}); // the queue's connection reports Redis trouble already
  const abort = new AbortController();
  const stream = new ResultStream(redis, { secretsKey });
  const loop = (async () => {
    while (!abort.signal.aborted) {
      try {
        await stream.consume('gateway', os.hostname(), queueLog.onResult, abort.signal);
      } catch (err) {
        if (abort.signal.aborted) break;
        log(`snapfn gateway: reading worker results: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  })();
  return {
    async close() {
      abort.abort();
      // Cuts the blocking read short instead of waiting out its BLOCK timeout
      // (or forever: while Redis is down the read waits for it to come back).
      cutConnections(redis);
      await loop;
    },
    cut: () => cutConnections(redis),
  };
}

/** Connection errors repeat every second while Redis is down: say each one once per 10 s. */
function throttled(log: (message: string) => void): (message: string) => void {
  const last = new Map<string, number>();
  return (message) => {
    const now = Date.now();
    if (now - (last.get(message) ?? 0) < 10_000) return;
    if (last.size > 100) last.clear();
    last.set(message, now);
    log(message);
  };
}
