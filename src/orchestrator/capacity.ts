import { CapacityError } from '../errors.ts';

/**
 * Node-wide count of sandboxes that are alive or being started, capped at
 * `max`. Reservations that cannot be met right away wait in FIFO order.
 */
export class SandboxCapacity {
  readonly max: number;
  #used = 0;
  #waiters: Array<{ resolve: () => void; reject: (err: Error) => void; timer: NodeJS.Timeout }> = [];

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

  tryReserve(): boolean {
    if (this.#used >= this.max || this.#waiters.length > 0) return false;
    this.#used++;
    return true;
  }

  /** Waits up to `maxWaitMs` for a free place; `release()` of a holder hands its place over directly. */
  reserve(maxWaitMs: number): Promise<void> {
    if (this.tryReserve()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = {
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

  release(): void {
    const next = this.#waiters.shift();
    if (next) {
      clearTimeout(next.timer);
      next.resolve();
      return;
    }
    this.#used = Math.max(0, this.#used - 1);
  }

  /** Fails every waiter (used on close). */
  rejectAll(err: Error): void {
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.#waiters = [];
  }
}
