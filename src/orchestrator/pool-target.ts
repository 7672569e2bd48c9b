import os from 'node:os';

/*
 * How many pre-restored sandboxes a fresh-per-request function should have
 * waiting (docs/engine.md, "A warm pool that follows the traffic").
 *
 * A pooled sandbox that is taken is replaced by one restore, so the pool has
 * to cover the arrivals that come while that restore runs: on average
 * rate × restoreSeconds of them. Arrivals are close to Poisson, whose count
 * in a window has its mean as its variance, so the margin grows with the
 * square root of that mean instead of as a fixed factor (a factor leaves a
 * 1 rps function short, where most of the misses of a small pool come from,
 * and overbuys at high rates):
 *
 *   expected = rate × restoreSeconds
 *   target   = ceil(expected + 2·√expected) + 1      while there is traffic
 *            = minWarm                               after idleMs without an arrival
 *
 * The +1 is the sandbox taken by the request that started the refill. The
 * result is bounded by the node (maxSandboxes minus a quarter of it, kept
 * for direct restores of other functions) and by memory (a share of the
 * node's free memory, at the function's memoryMb per sandbox); minWarm is
 * honoured whatever the bounds, up to maxSandboxes.
 */

const MiB = 1024 * 1024;

export interface PoolPolicyOptions {
  /** Time constant of the fast arrival-rate average: a step up shows within a few seconds. */
  fastWindowMs?: number;
  /** Time constant of the slow one: holds the rate through the gaps of sparse traffic; a step down decays over it. */
  slowWindowMs?: number;
  /** No arrival for this long and the pool shrinks to minWarm (default 60 s). */
  idleMs?: number;
  /** The restore time assumed until this function's first one is measured. */
  defaultRestoreMs?: number;
  /** Weight of the newest measured restore in the average. */
  restoreWeight?: number;
  /** Free memory of the node in bytes (default: os.freemem(), read at most once a second). */
  freeMemoryBytes?: () => number;
  /** Share of the free memory pools may plan on. */
  memoryShare?: number;
  /** The clock of arrivals and idleness, in ms (default performance.now). */
  now?: () => number;
}

export interface TargetInputs {
  minWarm: number;
  memoryMb: number;
  maxSandboxes: number;
  /** This function's pooled and filling sandboxes: they already took their memory out of the free figure. */
  current: number;
}

export interface TargetDecision {
  target: number;
  /** What set it: the traffic, the node-wide cap, memory, or the minWarm floor (no traffic, or bounds below it). */
  by: 'traffic' | 'node' | 'memory' | 'floor';
  ratePerSec: number;
  restoreMs: number;
}

/**
 * Arrivals as an exponentially decaying count: each adds 1 and the sum
 * decays with time constant tau, so sum / tau is an unbiased estimate of a
 * steady rate that weights the last ~tau most.
 */
export class DecayingRate {
  #sum = 0;
  #at = 0;

  constructor(readonly tauMs: number) {}

  note(at: number): void {
    this.#sum = this.#decayed(at) + 1;
    this.#at = at;
  }

  /** Arrivals per second at `at`. */
  rate(at: number): number {
    return this.#decayed(at) / (this.tauMs / 1000);
  }

  #decayed(at: number): number {
    if (this.#sum === 0) return 0;
    return this.#sum * Math.exp(-Math.max(0, at - this.#at) / this.tauMs);
  }
}

/** The pure part: the target from a rate, a restore time and the bounds. */
export function poolTarget(ratePerSec: number, restoreMs: number, traffic: boolean, inputs: TargetInputs, freeBytes: number, memoryShare = 0.5): TargetDecision {
  const floor = Math.min(inputs.minWarm, inputs.maxSandboxes);
  const decided = (target: number, by: TargetDecision['by']) => (target <= floor ? { target: floor, by: 'floor' as const, ratePerSec, restoreMs } : { target, by, ratePerSec, restoreMs });
  if (!traffic) return decided(0, 'floor');
  const expected = ratePerSec * (restoreMs / 1000);
  const demand = Math.ceil(expected + 2 * Math.sqrt(expected)) + 1;
  // A quarter of the node stays free for other functions' direct restores (at least one place on a node of two or more).
  const nodeCap = inputs.maxSandboxes - (inputs.maxSandboxes > 1 ? Math.max(1, Math.ceil(inputs.maxSandboxes / 4)) : 0);
  const memoryCap = inputs.current + Math.floor((freeBytes * memoryShare) / (inputs.memoryMb * MiB));
  if (demand <= nodeCap && demand <= memoryCap) return decided(demand, 'traffic');
  return nodeCap <= memoryCap ? decided(nodeCap, 'node') : decided(memoryCap, 'memory');
}

interface FunctionTraffic {
  fast: DecayingRate;
  slow: DecayingRate;
  lastArrival: number | undefined;
  restoreMs: number | undefined;
}

/** Per function: its arrival rate and restore time, and from them its pool target. */
export class PoolTargets {
  readonly idleMs: number;
  readonly #fastMs: number;
  readonly #slowMs: number;
  readonly #defaultRestoreMs: number;
  readonly #restoreWeight: number;
  readonly #memoryShare: number;
  readonly #freeMemory: () => number;
  readonly #now: () => number;
  readonly #traffic = new Map<string, FunctionTraffic>();

  constructor(options: PoolPolicyOptions = {}) {
    this.idleMs = options.idleMs ?? 60_000;
    this.#fastMs = options.fastWindowMs ?? 3_000;
    this.#slowMs = options.slowWindowMs ?? 20_000;
    this.#defaultRestoreMs = options.defaultRestoreMs ?? 1000;
    this.#restoreWeight = options.restoreWeight ?? 0.3;
    this.#memoryShare = options.memoryShare ?? 0.5;
    this.#freeMemory = options.freeMemoryBytes ?? cachedFreeMemory;
    this.#now = options.now ?? (() => performance.now());
  }

  noteArrival(name: string): void {
    const t = this.#of(name);
    const now = this.#now();
    t.fast.note(now);
    t.slow.note(now);
    t.lastArrival = now;
  }

  /**
   * A new version went live: like an arrival for idleness, not for the rate,
   * so the pool holds one sandbox for the first request after a deploy (what
   * a deploy is usually followed by) and scales to zero an idle period later.
   */
  notePresence(name: string): void {
    const t = this.#of(name);
    const now = this.#now();
    if (t.lastArrival === undefined || t.lastArrival < now) t.lastArrival = now;
  }

  /** A restore of this function took `ms` (a pool fill until ready, or an invocation's own). */
  noteRestore(name: string, ms: number): void {
    const t = this.#of(name);
    t.restoreMs = t.restoreMs === undefined ? ms : t.restoreMs + this.#restoreWeight * (ms - t.restoreMs);
  }

  /** No arrival for idleMs (or none yet). */
  idle(name: string): boolean {
    const last = this.#traffic.get(name)?.lastArrival;
    return last === undefined || this.#now() - last >= this.idleMs;
  }

  decide(name: string, inputs: TargetInputs): TargetDecision {
    const t = this.#traffic.get(name);
    const now = this.#now();
    const rate = t ? Math.max(t.fast.rate(now), t.slow.rate(now)) : 0;
    return poolTarget(rate, t?.restoreMs ?? this.#defaultRestoreMs, !this.idle(name), inputs, this.#freeMemory(), this.#memoryShare);
  }

  target(name: string, inputs: TargetInputs): number {
    return this.decide(name, inputs).target;
  }

  forget(name: string): void {
    this.#traffic.delete(name);
  }

  #of(name: string): FunctionTraffic {
    let t = this.#traffic.get(name);
    if (!t) {
      t = { fast: new DecayingRate(this.#fastMs), slow: new DecayingRate(this.#slowMs), lastArrival: undefined, restoreMs: undefined };
      this.#traffic.set(name, t);
    }
    return t;
  }
}

// os.freemem() reads /proc/meminfo: once a second is plenty for a bound that moves by whole sandboxes.
let free: { bytes: number; at: number } | undefined;
function cachedFreeMemory(): number {
  const at = performance.now();
  if (!free || at - free.at > 1000) free = { bytes: os.freemem(), at };
  return free.bytes;
}
