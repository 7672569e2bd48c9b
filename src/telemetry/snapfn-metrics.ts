import type { InvocationOutcome } from '../schemas/invocation.ts';
import type { OrchestratorStats, PhaseTimings } from '../orchestrator/types.ts';
import { MetricsRegistry } from './metrics.ts';

export interface MetricsSources {
  engineStats: () => OrchestratorStats;
  driver: { name: string; platform: string };
  /** Queued invocations per function, when a queue is attached. */
  queueDepth?: () => Record<string, number>;
  networkSlots?: () => { free: number; inUse: number; misses: number };
}

/** The metrics /metrics serves: invocations, phase latencies, pools, sandboxes, queue, builds. */
export class SnapfnMetrics {
  readonly registry = new MetricsRegistry();
  readonly #invocations = this.registry.counter('snapfn_invocations_total', 'Invocations by function and outcome (ok or the error code).');
  readonly #phases = this.registry.histogram('snapfn_invocation_phase_seconds', 'Latency of each invocation phase: queue (waiting for a sandbox place), restore, handler, total.');
  readonly #sources = this.registry.counter('snapfn_sandbox_source_total', 'How invocations got their sandbox: pool, keep-warm or restore.');

  constructor(sources: MetricsSources) {
    const r = this.registry;
    r.gauge('snapfn_live_sandboxes', 'Sandboxes alive on this node.', () => [[{}, sources.engineStats().liveSandboxes]]);
    r.gauge('snapfn_busy_sandboxes', 'Sandboxes running a handler right now.', () => [[{}, sources.engineStats().busySandboxes]]);
    r.gauge('snapfn_max_sandboxes', 'Node-wide cap on live sandboxes.', () => [[{}, sources.engineStats().maxSandboxes]]);
    r.gauge('snapfn_pool_sandboxes', 'Pre-restored sandboxes waiting in the warm pool, per function.', () =>
      Object.entries(sources.engineStats().pooled).map(([fn, n]) => [{ function: fn }, n]),
    );
    r.gauge('snapfn_pool_hits_total', 'Invocations served by a pre-restored sandbox.', () => [[{}, sources.engineStats().poolHits]]);
    r.gauge('snapfn_pool_misses_total', 'Invocations that found the pool empty.', () => [[{}, sources.engineStats().poolMisses]]);
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
    if (sources.queueDepth) {
      const depth = sources.queueDepth;
      r.gauge('snapfn_queue_depth', 'Queued invocations per function.', () => Object.entries(depth()).map(([fn, n]) => [{ function: fn }, n]));
    }
  }

  recordInvocation(fn: string, outcome: InvocationOutcome, timings: PhaseTimings | undefined, totalMs: number): void {
    this.#invocations.inc({ function: fn, outcome: outcome.ok ? 'ok' : outcome.error.code });
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
  }

  render(): string {
    return this.registry.render();
  }
}
