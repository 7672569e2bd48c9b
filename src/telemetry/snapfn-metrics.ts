import type { InvocationOutcome } from '../schemas/invocation.ts';
import type { OrchestratorStats, PhaseTimings } from '../orchestrator/types.ts';
import { MetricsRegistry } from './metrics.ts';

/** One function's queue as /metrics shows it. */
export interface QueueDepth {
  /** Not running yet: waiting, delayed (retry backoff), prioritized, paused. */
  queued: number;
  /** Taken by a worker (of any node sharing the Redis) and not finished. */
  active: number;
}

/** Reads every served function's queue (one Redis round trip per function), at scrape time. */
export type QueueDepthSource = () => Promise<Record<string, QueueDepth>>;

export interface MetricsSources {
  engineStats: () => OrchestratorStats;
  driver: { name: string; platform: string };
  /** Queue depth per function, when a queue is attached (see also attachQueue). */
  queueDepth?: QueueDepthSource;
  networkSlots?: () => { free: number; inUse: number; misses: number };
}

/**
 * One invocation as recordInvocation/recordRejected saw it, for in-process
 * listeners (the console's time series). `outcome`: 'ok' or the error code;
 * `timings` absent when no sandbox ran it.
 */
export interface ObservedInvocation {
  fn: string;
  outcome: string;
  totalMs: number;
  timings?: PhaseTimings;
  /** It went through the queue (totalMs includes the wait there). */
  queued: boolean;
}

/** A scrape must answer even when Redis does not: the queue gauges are left out then. */
const QUEUE_READ_TIMEOUT_MS = 1000;

/** The metrics /metrics serves: invocations, phase latencies, pools, sandboxes, queue, builds. */
export class SnapfnMetrics {
  readonly registry = new MetricsRegistry();
  readonly #invocations = this.registry.counter('snapfn_invocations_total', 'Invocations by function and outcome (ok or the error code).');
  readonly #phases = this.registry.histogram('snapfn_invocation_phase_seconds', 'Latency of each invocation phase: queue (waiting for a sandbox place), restore, handler, total.');
  readonly #sources = this.registry.counter('snapfn_sandbox_source_total', 'How invocations got their sandbox: pool, keep-warm or restore.');
  readonly #collectErrors = this.registry.counter('snapfn_metrics_collect_errors_total', 'Scrapes that could not read a source (e.g. the queue depth from Redis).');
  #queueDepth: QueueDepthSource | undefined;
  /** What the latest scrape read (nothing after a failed read: a stale depth would mislead). */
  #depth: Record<string, QueueDepth> = {};
  readonly #listeners = new Set<(observed: ObservedInvocation) => void>();

  constructor(sources: MetricsSources) {
    const r = this.registry;
    r.gauge('snapfn_live_sandboxes', 'Sandboxes alive on this node.', () => [[{}, sources.engineStats().liveSandboxes]]);
    r.gauge('snapfn_busy_sandboxes', 'Sandboxes running a handler right now.', () => [[{}, sources.engineStats().busySandboxes]]);
    r.gauge('snapfn_max_sandboxes', 'Node-wide cap on live sandboxes.', () => [[{}, sources.engineStats().maxSandboxes]]);
    r.gauge('snapfn_pool_sandboxes', 'Pre-restored sandboxes waiting in the warm pool, per function.', () =>
      Object.entries(sources.engineStats().pooled).map(([fn, n]) => [{ function: fn }, n]),
    );
    r.gauge('snapfn_pool_target_sandboxes', 'Pre-restored sandboxes the warm pool is heading for, per function: its fixed size, or what its recent arrivals and restore time need.', () =>
      Object.entries(sources.engineStats().poolTargets ?? {}).map(([fn, n]) => [{ function: fn }, n]),
    );
    r.gauge('snapfn_pool_hits_total', 'Invocations served by a pre-restored sandbox.', () => [[{}, sources.engineStats().poolHits]]);
    r.gauge('snapfn_pool_misses_total', 'Invocations that found the pool empty.', () => [[{}, sources.engineStats().poolMisses]]);
    r.gauge('snapfn_restores_total', 'Sandboxes restored for an invocation (pool fills not counted).', () => [[{}, sources.engineStats().restores]]);
    r.gauge('snapfn_keep_warm_reuses_total', 'Invocations served by a sandbox used before (unpaused or handed on).', () => [[{}, sources.engineStats().keepWarmReuses]]);
    r.gauge('snapfn_handoffs_total', 'keepWarm sandboxes handed straight from one invocation to a waiting one.', () => [[{}, sources.engineStats().handoffs]]);
    r.gauge('snapfn_template_builds_total', 'Template builds on this node.', () => [[{}, sources.engineStats().templateBuilds]]);
    r.gauge('snapfn_driver_info', 'The sandbox driver in use and its platform (ptrace, kvm, tcg).', () => [[{ driver: sources.driver.name, platform: sources.driver.platform }, 1]]);
    if (sources.networkSlots) {
      const slots = sources.networkSlots;
      r.gauge('snapfn_network_slots', 'Network slots by state.', () => {
        const s = slots();
        return [
          [{ state: 'free' }, s.free],
          [{ state: 'in_use' }, s.inUse],
        ];
      });
    }
    this.#queueDepth = sources.queueDepth;
    // Read from Redis once per scrape, not per request: the invoke path stays free of it.
    r.collect(async () => {
      const read = this.#queueDepth;
      if (!read) {
        this.#depth = {};
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      try {
        this.#depth = await Promise.race([
          read(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error('timed out')), QUEUE_READ_TIMEOUT_MS);
          }),
        ]);
      } catch {
        this.#depth = {};
        this.#collectErrors.inc({ source: 'queue' });
      } finally {
        clearTimeout(timer);
      }
    });
    r.gauge('snapfn_queue_depth', 'Invocations queued per function and not running yet (waiting, delayed, prioritized, paused). With a shared Redis: the whole queue, not this node\'s part.', () =>
      Object.entries(this.#depth).map(([fn, d]) => [{ function: fn }, d.queued]),
    );
    r.gauge('snapfn_queue_active', 'Queued invocations running now, per function (on any node of a shared Redis).', () => Object.entries(this.#depth).map(([fn, d]) => [{ function: fn }, d.active]));
  }

  /** The queue layer attaches its depth when it opens and detaches (undefined) when it closes. */
  attachQueue(source: QueueDepthSource | undefined): void {
    this.#queueDepth = source;
  }

  /** Calls `listener` with every invocation recorded from now on; returns its unsubscribe. */
  onInvocation(listener: (observed: ObservedInvocation) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  recordInvocation(fn: string, outcome: InvocationOutcome, timings: PhaseTimings | undefined, totalMs: number, options: { queued?: boolean } = {}): void {
    const code = outcome.ok ? 'ok' : outcome.error.code;
    this.#invocations.inc({ function: fn, outcome: code });
    this.#notify({ fn, outcome: code, totalMs, ...(timings ? { timings } : {}), queued: options.queued ?? false });
    if (timings) {
      this.#phases.observe({ phase: 'queue' }, timings.acquireMs / 1000);
      if (timings.source === 'restore') this.#phases.observe({ phase: 'restore' }, timings.restoreMs / 1000);
      this.#phases.observe({ phase: 'handler' }, timings.handlerMs / 1000);
      this.#sources.inc({ source: timings.source });
    }
    this.#phases.observe({ phase: 'total' }, totalMs / 1000);
  }

  /** An invocation the engine refused (over capacity, shutting down) or that failed before a sandbox. */
  recordRejected(fn: string, code: string, totalMs: number): void {
    this.#invocations.inc({ function: fn, outcome: code });
    this.#phases.observe({ phase: 'total' }, totalMs / 1000);
    this.#notify({ fn, outcome: code, totalMs, queued: false });
  }

  #notify(observed: ObservedInvocation): void {
    for (const listener of this.#listeners) {
      // A listener's bug must not fail the invocation that is being recorded.
      try {
        listener(observed);
      } catch {}
    }
  }

  render(): Promise<string> {
    return this.registry.render();
  }
}
