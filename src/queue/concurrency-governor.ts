import type { InvocationEngine } from '../orchestrator/types.ts';

/*
 * How many queued invocations this node takes at once, per function queue.
 *
 * The node's sandboxes are shared by the direct (HTTP) path and the queue.
 * The queue may use what the direct path leaves free, minus a reserve for
 * it: budget = free + queue jobs in flight - (reserve - what the direct path
 * already holds). The budget is split
 * between the function queues that have work; a queue that had nothing to
 * do recently keeps one slot to notice new work, and none when the node is
 * full. BullMQ's concurrency cannot go below 1, so "0" means paused.
 *
 * The split is an estimate, refreshed on every job start/finish and on a
 * timer: two queues can both grab a job in the same instant. Such overshoot
 * waits in the engine's own FIFO for a sandbox, which is safe, just slower.
 *
 * A keepWarm function's queue may also take one job per busy sandbox of the
 * function beyond its share (engine.reusableFor): those wait in the engine
 * on purpose, to be handed the sandbox as it finishes.
 */

export interface QueueLoad {
  name: string;
  inFlight: number;
  /** ms timestamp of the last job start, 0 if never. */
  lastJobAt: number;
}

/** Concurrency per queue (0 = paused) for a node-wide `budget`. */
export function distribute(budget: number, queues: QueueLoad[], now: number, hungryWindowMs: number): Map<string, number> {
  const result = new Map<string, number>();
  const budgetLeft = Math.max(0, Math.floor(budget));
  const inFlight = queues.reduce((sum, q) => sum + q.inFlight, 0);
  const hungry = queues.filter((q) => q.inFlight > 0 || now - q.lastJobAt < hungryWindowMs);
  const idle = queues.filter((q) => !hungry.includes(q));
  const spare = budgetLeft - inFlight;
  for (const q of idle) result.set(q.name, spare > 0 ? 1 : 0);
  if (hungry.length === 0) return result;
  // Busiest first get the remainder of an uneven split.
  const ordered = [...hungry].sort((a, b) => b.inFlight - a.inFlight || a.name.localeCompare(b.name));
  const base = Math.floor(budgetLeft / ordered.length);
  let remainder = budgetLeft - base * ordered.length;
  for (const q of ordered) {
    let share = base;
    if (remainder > 0) {
      share++;
      remainder--;
    }
    result.set(q.name, share);
  }
  return result;
}

export interface GovernorOptions {
  engine: Pick<InvocationEngine, 'freeCapacity' | 'stats' | 'reusableFor' | 'inFlight'>;
  /** Sandboxes kept for the direct path (0 on a worker-only node). */
  reserve: number;
  /** Applies a decision to one queue's worker. */
  apply: (name: string, concurrency: number) => void;
  /**
   * Besides job events, how often to look at the engine: a sandbox's place
   * frees only after its teardown, which no job event marks.
   */
  intervalMs?: number;
  hungryWindowMs?: number;
}

export class ConcurrencyGovernor {
  readonly #options: Required<GovernorOptions>;
  readonly #loads = new Map<string, QueueLoad>();
  readonly #applied = new Map<string, number>();
  /** Queue jobs inside engine.invoke: the part of the engine's used places that is ours. */
  #inEngine = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: GovernorOptions) {
    this.#options = { intervalMs: 100, hungryWindowMs: 2000, ...options };
    this.#timer = setInterval(() => this.rebalance(), this.#options.intervalMs);
    this.#timer.unref();
  }

  /** Jobs this node has taken and not finished (fetched, resolving, or in the engine). */
  get inFlight(): number {
    let n = 0;
    for (const l of this.#loads.values()) n += l.inFlight;
    return n;
  }

  /**
   * Places the queue may hold right now. Capped at max - reserve: a job
   * that just left the engine (place freed, not yet counted out) must not
   * read as extra room.
   *
   * The reserve is a floor for the direct path, not a place always kept
   * empty: direct invocations in the engine (waiting, restoring, running)
   * count toward it. Otherwise, while a burst's direct requests restore most
   * of the node, the one warm sandbox left would sit idle "for the direct
   * path" with the queue full of work for it (measured: ~9 s of a 200-request
   * burst on 10 sandboxes). Engines that cannot say keep the whole reserve.
   */
  budget(): number {
    const { engine, reserve } = this.#options;
    const max = engine.stats().maxSandboxes;
    const free = engine.freeCapacity();
    const direct = engine.inFlight ? Math.max(0, engine.inFlight() - this.#inEngine) : 0;
    const keep = Math.max(0, reserve - direct);
    return Math.max(0, Math.min(max - reserve, free + this.#inEngine - keep));
  }

  concurrencyOf(name: string): number | undefined {
    return this.#applied.get(name);
  }

  register(name: string): void {
    if (!this.#loads.has(name)) this.#loads.set(name, { name, inFlight: 0, lastJobAt: 0 });
    this.rebalance();
  }

  unregister(name: string): void {
    this.#loads.delete(name);
    this.#applied.delete(name);
    this.rebalance();
  }

  /** The processor took a job (before resolving its deployment). */
  jobStarted(name: string): void {
    const load = this.#loads.get(name);
    if (!load) return;
    load.inFlight++;
    load.lastJobAt = Date.now();
    this.rebalance();
  }

  jobFinished(name: string): void {
    const load = this.#loads.get(name);
    if (!load) return;
    load.inFlight = Math.max(0, load.inFlight - 1);
    this.rebalance();
  }

  /** Queue jobs inside engine.invoke right now. */
  get inEngine(): number {
    return this.#inEngine;
  }

  /** Brackets engine.invoke exactly, so the budget sees what the engine sees. */
  enterEngine(): void {
    this.#inEngine++;
  }

  exitEngine(): void {
    this.#inEngine = Math.max(0, this.#inEngine - 1);
  }

  rebalance(): void {
    if (!this.#timer) return;
    const decision = distribute(this.budget(), [...this.#loads.values()], Date.now(), this.#options.hungryWindowMs);
    for (const [name, share] of decision) {
      // On top of its share of places: one job per busy keepWarm sandbox of
      // the function, to take it over the moment it finishes (handed on in
      // the engine, no pause, no restore) instead of after a pause, a
      // governor tick and a fetch from Redis.
      const concurrency = share + (this.#options.engine.reusableFor?.(name) ?? 0);
      if (this.#applied.get(name) === concurrency) continue;
      this.#applied.set(name, concurrency);
      this.#options.apply(name, concurrency);
    }
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
