import { CapacityError } from '../errors.ts';

/** What a waiter gets: a place to restore into, or a live sandbox of its own template. */
export type Grant<S> = { kind: 'place' } | { kind: 'sandbox'; sandbox: S; paused: boolean };

/** What to do with a healthy keepWarm sandbox that just finished (see `offer`). */
export type OfferDecision = { kind: 'handed' } | { kind: 'keep' } | { kind: 'evict'; passPlace: () => void };

interface Waiter<S> {
  fn: string;
  /** Only a sandbox of this very template may be handed to it (a deploy in between changes it). */
  templateId: string;
  resolve: (grant: Grant<S>) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Node-wide places for sandboxes (alive or being started), capped at `max`
 * and counted per function, and the invocations waiting for one.
 *
 * Fairness: waiters are served oldest first, except that a function already
 * holding at least its fair share (ceil(max / functions with waiters)) is
 * passed over while a function below its share waits. A finished keepWarm
 * sandbox goes straight to the oldest waiter of its own template (no pause,
 * no restore) unless its function is over its share and another function
 * below its share waits: then it is destroyed and its place goes there.
 * Reuse is what a burst lives on (a restore is ~0.8 s of CPU on 2 cores);
 * the share rule bounds how long it can keep other functions out: each of
 * them gets places until every waiting function holds its share.
 */
export class SandboxCapacity<S = unknown> {
  readonly max: number;
  #used = 0;
  readonly #held = new Map<string, number>();
  #waiters: Array<Waiter<S>> = [];

  constructor(max: number) {
    this.max = max;
  }

  get used(): number {
    return this.#used;
  }

  get free(): number {
    return this.max - this.#used;
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  /** Waiters of one function. */
  waitingFor(fn: string): number {
    let n = 0;
    for (const w of this.#waiters) if (w.fn === fn) n++;
    return n;
  }

  /** Places held by a function (busy, starting, pooled, kept warm, being destroyed). */
  heldBy(fn: string): number {
    return this.#held.get(fn) ?? 0;
  }

  /** A free place right now, never ahead of a waiter. */
  tryReserve(fn: string): boolean {
    if (this.#used >= this.max || this.#waiters.length > 0) return false;
    this.#used++;
    this.#add(fn, 1);
    return true;
  }

  /** Waits up to `maxWaitMs` for a place or a handed-on sandbox of `templateId`. */
  reserve(fn: string, templateId: string, maxWaitMs: number): Promise<Grant<S>> {
    if (this.tryReserve(fn)) return Promise.resolve({ kind: 'place' });
    return new Promise<Grant<S>>((resolve, reject) => {
      const waiter: Waiter<S> = {
        fn,
        templateId,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(new CapacityError(`all ${this.max} sandboxes of this node stayed busy for ${maxWaitMs} ms`, Math.max(1, Math.ceil(maxWaitMs / 1000))));
        }, maxWaitMs),
      };
      this.#waiters.push(waiter);
    });
  }

  /** A place of `fn` is free (its sandbox is gone): it passes to the next waiter, or back to the pool of places. */
  release(fn: string): void {
    this.#add(fn, -1);
    const next = this.#next();
    if (!next) {
      this.#used = Math.max(0, this.#used - 1);
      return;
    }
    this.#grant(next, { kind: 'place' });
  }

  /** Moves a place from one function to another (an idle sandbox of `from` is evicted for `to`). */
  transfer(from: string, to: string): void {
    this.#add(from, -1);
    this.#add(to, 1);
  }

  /**
   * A healthy keepWarm sandbox of `fn` finished (or was just paused). `handed`:
   * a waiter of its template has it now. `evict`: destroy it, then call
   * `passPlace` — its place is already promised to a waiter of another
   * function (taken off the queue now, so a second sandbox is not destroyed
   * for the same waiter). `keep`: nobody can use it; keep it warm.
   */
  offer(fn: string, templateId: string, sandbox: S, paused: boolean): OfferDecision {
    if (this.#waiters.length === 0) return { kind: 'keep' };
    const same = this.#waiters.find((w) => w.fn === fn && w.templateId === templateId);
    const share = this.#share();
    const starvedOther = this.#waiters.find((w) => w.fn !== fn && this.heldBy(w.fn) < share);
    if (same && !(starvedOther && this.heldBy(fn) > share)) {
      this.#waiters = this.#waiters.filter((w) => w !== same);
      clearTimeout(same.timer);
      same.resolve({ kind: 'sandbox', sandbox, paused });
      return { kind: 'handed' };
    }
    const other = starvedOther ?? this.#waiters.find((w) => !(w.fn === fn && w.templateId === templateId));
    if (!other) return { kind: 'keep' };
    this.#waiters = this.#waiters.filter((w) => w !== other);
    clearTimeout(other.timer);
    this.transfer(fn, other.fn);
    // The place is counted for `other` from now on; it may restore only once the sandbox is gone.
    return { kind: 'evict', passPlace: () => other.resolve({ kind: 'place' }) };
  }

  /** Fails every waiter (used on close). */
  rejectAll(err: Error): void {
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.#waiters = [];
  }

  #share(): number {
    const functions = new Set(this.#waiters.map((w) => w.fn));
    return Math.ceil(this.max / Math.max(1, functions.size));
  }

  /** Oldest waiter of a function below its share, else the oldest waiter. */
  #next(): Waiter<S> | undefined {
    if (this.#waiters.length === 0) return undefined;
    const share = this.#share();
    return this.#waiters.find((w) => this.heldBy(w.fn) < share) ?? this.#waiters[0];
  }

  #grant(waiter: Waiter<S>, grant: Grant<S>): void {
    this.#waiters = this.#waiters.filter((w) => w !== waiter);
    clearTimeout(waiter.timer);
    this.#add(waiter.fn, 1);
    waiter.resolve(grant);
  }

  #add(fn: string, by: number): void {
    const n = (this.#held.get(fn) ?? 0) + by;
    if (n <= 0) this.#held.delete(fn);
    else this.#held.set(fn, n);
  }
}
