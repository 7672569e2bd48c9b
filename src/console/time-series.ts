import type { ObservedInvocation } from '../telemetry/snapfn-metrics.ts';
import { percentile, weightedPercentile, type Weighted } from './percentile.ts';

/** How an invocation got its sandbox, as the latency charts split it; queued ones are their own path whatever sandbox they got. */
export type LatencyPath = 'pool' | 'keep-warm' | 'restore' | 'queued';
export const LATENCY_PATHS: readonly LatencyPath[] = ['pool', 'keep-warm', 'restore', 'queued'];

export interface InvocationSeriesOptions {
  /** How far back the series reaches (one bucket per minute). */
  minutes?: number;
  /** Latencies kept per minute and path; beyond it a uniform sample of them (percentiles stay unbiased). */
  samplesPerMinute?: number;
  /** Functions tracked at once; the one idle longest is dropped first. */
  maxFunctions?: number;
  now?: () => number;
  random?: () => number;
}

export interface Quantiles {
  count: number;
  p50: number;
  p99: number;
}

export interface MinutePoint {
  /** Epoch ms of the minute's start. */
  start: number;
  /** Invocations by outcome: 'ok' or the error code. */
  outcomes: Record<string, number>;
  latency: Partial<Record<LatencyPath, Quantiles>>;
  /** Restore time of the invocations that restored a sandbox. */
  restore?: Quantiles;
}

export interface WindowSummary {
  invocations: number;
  errors: number;
  /** End-to-end latency of the invocations that ran, over the window; undefined without any. */
  latency?: Quantiles;
}

const MINUTE_MS = 60_000;

/** Algorithm R: the first `cap` values, then each new one replaces a random kept one with probability cap/n. */
class Reservoir {
  seen = 0;
  readonly kept: number[] = [];
  constructor(readonly cap: number) {}

  add(value: number, random: () => number): void {
    this.seen++;
    if (this.kept.length < this.cap) this.kept.push(value);
    else {
      const slot = Math.floor(random() * this.seen);
      if (slot < this.cap) this.kept[slot] = value;
    }
  }

  quantiles(): Quantiles | undefined {
    if (this.seen === 0) return undefined;
    return { count: this.seen, p50: percentile(this.kept, 0.5), p99: percentile(this.kept, 0.99) };
  }

  weighted(): Weighted[] {
    const weight = this.seen / this.kept.length;
    return this.kept.map((value) => ({ value, weight }));
  }
}

interface Bucket {
  minute: number;
  outcomes: Map<string, number>;
  latency: Map<LatencyPath, Reservoir>;
  /** Every path together, for the window summaries. */
  total: Reservoir;
  restore: Reservoir;
}

/**
 * Per-function, per-minute invocation counts and latency samples for the
 * console's charts, kept in the gateway's memory and fed by the metrics
 * object (which sees every invocation this gateway answers or whose queued
 * result it logs). Bounded: `minutes` buckets per function, a fixed
 * sample per bucket, `maxFunctions` functions. It starts empty with the
 * process; the invocation log is what survives a restart.
 */
export class InvocationSeries {
  readonly minutesKept: number;
  readonly #samples: number;
  readonly #maxFunctions: number;
  readonly #now: () => number;
  readonly #random: () => number;
  /** Oldest bucket first; Map order doubles as least-recently-recorded order for eviction. */
  readonly #functions = new Map<string, Bucket[]>();

  constructor(options: InvocationSeriesOptions = {}) {
    this.minutesKept = options.minutes ?? 60;
    this.#samples = options.samplesPerMinute ?? 256;
    this.#maxFunctions = options.maxFunctions ?? 1000;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
  }

  readonly record = (observed: ObservedInvocation): void => {
    const minute = Math.floor(this.#now() / MINUTE_MS);
    let buckets = this.#functions.get(observed.fn);
    if (buckets) this.#functions.delete(observed.fn);
    else if (this.#functions.size >= this.#maxFunctions) this.#functions.delete(this.#functions.keys().next().value!);
    buckets ??= [];
    this.#functions.set(observed.fn, buckets);
    let bucket = buckets.at(-1);
    if (bucket?.minute !== minute) {
      bucket = { minute, outcomes: new Map(), latency: new Map(), total: new Reservoir(this.#samples), restore: new Reservoir(this.#samples) };
      buckets.push(bucket);
      while (buckets.length > 0 && buckets[0]!.minute <= minute - this.minutesKept) buckets.shift();
    }
    bucket.outcomes.set(observed.outcome, (bucket.outcomes.get(observed.outcome) ?? 0) + 1);
    const { timings } = observed;
    // Refused before any sandbox: counted, but a latency of nothing would drag the percentiles down.
    if (!timings) return;
    const path: LatencyPath = observed.queued ? 'queued' : timings.source;
    let reservoir = bucket.latency.get(path);
    if (!reservoir) bucket.latency.set(path, (reservoir = new Reservoir(this.#samples)));
    reservoir.add(observed.totalMs, this.#random);
    bucket.total.add(observed.totalMs, this.#random);
    if (timings.source === 'restore') bucket.restore.add(timings.restoreMs, this.#random);
  };

  /** The last `count` minutes of `fn`, oldest first, empty minutes included (a chart's x axis is time, not data). */
  minutes(fn: string, count = this.minutesKept): MinutePoint[] {
    const now = Math.floor(this.#now() / MINUTE_MS);
    const byMinute = new Map((this.#functions.get(fn) ?? []).map((b) => [b.minute, b]));
    const points: MinutePoint[] = [];
    for (let minute = now - Math.min(count, this.minutesKept) + 1; minute <= now; minute++) {
      const bucket = byMinute.get(minute);
      const latency: MinutePoint['latency'] = {};
      for (const [path, reservoir] of bucket?.latency ?? []) {
        const q = reservoir.quantiles();
        if (q) latency[path] = q;
      }
      const restore = bucket?.restore.quantiles();
      points.push({ start: minute * MINUTE_MS, outcomes: Object.fromEntries(bucket?.outcomes ?? []), latency, ...(restore ? { restore } : {}) });
    }
    return points;
  }

  /** Minutes from the oldest kept bucket of `fn` to now, inclusive (0: nothing kept). */
  spanMinutes(fn: string): number {
    const oldest = this.#functions.get(fn)?.[0];
    return oldest ? Math.min(this.minutesKept, Math.floor(this.#now() / MINUTE_MS) - oldest.minute + 1) : 0;
  }

  /** Counts and latency of `fn` over the last `windowMinutes`. */
  summary(fn: string, windowMinutes = this.minutesKept): WindowSummary {
    const since = Math.floor(this.#now() / MINUTE_MS) - windowMinutes;
    let invocations = 0;
    let errors = 0;
    const samples: Weighted[] = [];
    for (const bucket of this.#functions.get(fn) ?? []) {
      if (bucket.minute <= since) continue;
      for (const [outcome, n] of bucket.outcomes) {
        invocations += n;
        if (outcome !== 'ok') errors += n;
      }
      if (bucket.total.seen > 0) samples.push(...bucket.total.weighted());
    }
    const ran = samples.reduce((n, s) => n + s.weight, 0);
    const latency = samples.length > 0 ? { count: Math.round(ran), p50: weightedPercentile(samples, 0.5), p99: weightedPercentile(samples, 0.99) } : undefined;
    return { invocations, errors, ...(latency ? { latency } : {}) };
  }

  /** A deleted function's history goes with it (a new function of the same name starts clean). */
  forget(fn: string): void {
    this.#functions.delete(fn);
  }
}
