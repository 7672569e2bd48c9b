/**
 * A process-wide readers/writer gate between everything that turns a
 * template id into something that must keep existing (a build and the
 * version record that follows it, an activation) and the template garbage
 * collector. Users take the shared side and never wait for each other; the
 * collector takes the exclusive side only to decide what is dead and to
 * rename it away, which is quick.
 *
 * Shared requests are never queued behind a waiting collector: a deploy may
 * hold the shared side for minutes (a QEMU build), and activations (some on
 * the invocation path) must not stall behind a collector waiting for it.
 * The collector may therefore wait; it runs in the background and retries
 * on the next deploy.
 *
 * One gate per process rather than per store root: the drivers build their
 * own TemplateStore instances privately, and a process serves one
 * SNAPFN_HOME. Several homes in one process (tests) only serialize more.
 */
export class TemplateGate {
  #sharedHolders = 0;
  #exclusive = false;
  #waitingShared: Array<() => void> = [];
  #waitingExclusive: Array<() => void> = [];

  async shared<T>(work: () => Promise<T>): Promise<T> {
    // The hand-off counts the holder (see #wake), so nobody can slip in between wake-up and resumption.
    if (this.#exclusive) await new Promise<void>((resolve) => this.#waitingShared.push(resolve));
    else this.#sharedHolders++;
    try {
      return await work();
    } finally {
      this.#sharedHolders--;
      this.#wake();
    }
  }

  async exclusive<T>(work: () => Promise<T>): Promise<T> {
    if (this.#exclusive || this.#sharedHolders > 0) await new Promise<void>((resolve) => this.#waitingExclusive.push(resolve));
    else this.#exclusive = true;
    try {
      return await work();
    } finally {
      this.#exclusive = false;
      this.#wake();
    }
  }

  /** For tests and diagnostics. */
  get state(): { shared: number; exclusive: boolean; waitingExclusive: number } {
    return { shared: this.#sharedHolders, exclusive: this.#exclusive, waitingExclusive: this.#waitingExclusive.length };
  }

  #wake(): void {
    if (this.#exclusive) return;
    if (this.#waitingShared.length > 0) {
      const waiting = this.#waitingShared;
      this.#waitingShared = [];
      this.#sharedHolders += waiting.length;
      for (const resolve of waiting) resolve();
      return;
    }
    if (this.#sharedHolders === 0 && this.#waitingExclusive.length > 0) {
      this.#exclusive = true;
      this.#waitingExclusive.shift()!();
    }
  }
}

/** The gate every template user and the collector of this process go through. */
export const templateGate = new TemplateGate();
