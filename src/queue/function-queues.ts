import type { Callbacks } from '../invocation/callbacks/callbacks.ts';
import { TopicPublisher } from '../invocation/topics/topic-publisher.ts';
import type { TopicSubscriptions } from '../invocation/topics/topic-subscriptions.ts';
import type { Deployment } from '../orchestrator/types.ts';
import type { QueueDepth } from '../telemetry/snapfn-metrics.ts';
import { withDeadline } from './deadline.ts';
import type { DeploymentRegistry } from './deployment-registry.ts';
import type { InvocationQueue } from './invocation-queue.ts';
import type { InvocationWorkers } from './invocation-worker.ts';
import type { Schedules } from './schedules.ts';

export interface FunctionQueuesOptions {
  queue: InvocationQueue;
  schedules: Schedules;
  workers: InvocationWorkers;
  /**
   * Where worker-only nodes find deployments. Only with a shared Redis: the
   * records carry env vars and secrets, and no other node can reach a
   * node's private Redis anyway.
   */
  registry?: DeploymentRegistry;
  /** Bound on each Redis step of serve/forget (default 5 s). */
  timeoutMs?: number;
  /** Where async callbacks may go (SNAPFN_CALLBACK_ALLOW), checked when an invocation is accepted. */
  callbacks: Callbacks;
  subscriptions: TopicSubscriptions;
}

/**
 * A node's functions as the queue layer sees them: which queues it serves,
 * their limits and schedules, and (with a shared Redis) the published
 * deployments. The function store is the truth; this mirrors it into Redis
 * whenever a version becomes active or a function goes away.
 */
export class FunctionQueues {
  readonly queue: InvocationQueue;
  readonly schedules: Schedules;
  readonly workers: InvocationWorkers;
  readonly registry: DeploymentRegistry | undefined;
  readonly callbacks: Callbacks;
  readonly subscriptions: TopicSubscriptions;
  readonly topics: TopicPublisher;
  readonly #timeoutMs: number;
  /** Functions served since start (serve) and not forgotten: whose depth /metrics shows. */
  readonly #served = new Set<string>();
  #closed = false;

  constructor(options: FunctionQueuesOptions) {
    this.queue = options.queue;
    this.schedules = options.schedules;
    this.workers = options.workers;
    this.registry = options.registry;
    this.callbacks = options.callbacks;
    this.subscriptions = options.subscriptions;
    this.topics = new TopicPublisher(options.queue, options.subscriptions);
    this.#timeoutMs = options.timeoutMs ?? 5000;
  }

  /**
   * `deployment` is (about to be) the active version: publish it, apply its
   * limits and schedule, take its queued invocations. Idempotent, so deploy,
   * rollback, env and schedule changes and start-up re-activation all call it.
   */
  async serve(deployment: Deployment): Promise<void> {
    const { name, config } = deployment;
    try {
      await withDeadline(`serving the queue of ${name}`, this.#timeoutMs, async () => {
        await this.registry?.publish(deployment);
        await this.queue.configure(name, { ...(config.maxQueued !== undefined ? { maxQueued: config.maxQueued } : {}), ...(config.maxConcurrency !== undefined ? { maxConcurrency: config.maxConcurrency } : {}) });
        await this.schedules.apply(name, config.schedule);
        await this.subscriptions.apply(name, config.topics ?? []);
      });
    } finally {
      // Even when Redis is away (a start-up while it is down): the worker
      // connects by itself once it is back and runs what was queued. The
      // limits and the schedule Redis already has are the last ones applied.
      this.workers.start(name);
      this.#served.add(name);
    }
  }

  /** Each served function's queue, read from Redis (for /metrics, at scrape time). */
  async depth(): Promise<Record<string, QueueDepth>> {
    const names = [...this.#served];
    const counts = await Promise.all(names.map((name) => this.queue.counts(name)));
    return Object.fromEntries(
      names.map((name, i) => {
        const c = counts[i]!;
        return [name, { queued: (c.waiting ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0) + (c.paused ?? 0), active: c.active ?? 0 }];
      }),
    );
  }

  /** The function was deleted: no more schedule ticks or queued runs; running ones finish first. */
  async forget(name: string): Promise<void> {
    this.#served.delete(name);
    await withDeadline(`removing the queue of ${name}`, this.#timeoutMs, async () => {
      await this.subscriptions.apply(name, []);
      await this.queue.removeFunction(name);
    });
    await this.workers.stop(name);
    await withDeadline(`unpublishing ${name}`, this.#timeoutMs, async () => this.registry?.unpublish(name));
  }

  /** Stops taking jobs (waits for running ones), then closes the producer side. Redis stays the caller's. */
  async close(options: { force?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.workers.close(options);
    await this.queue.close();
  }

  /** Ends every Redis connection now (a forced shutdown); a close() in progress then finishes at once. */
  cut(): void {
    this.workers.cut();
    this.queue.cut();
  }
}
