import { withCleanup, type CleanupStack } from './cleanup-stack.ts';
import type { EnvdSandbox } from './envd-sandbox.ts';

/** What a driver's start gets: its cleanup stack, and the hook its sandbox calls once destroyed. */
export interface StartContext {
  cleanup: CleanupStack;
  onDestroyed: (sandbox: EnvdSandbox) => void;
}

/**
 * A driver's sandboxes: the ones alive (for metrics and leak checks) and the
 * starts under way. Every boot and restore goes through start(): resources
 * are acquired through its cleanup stack, a failure releases exactly those,
 * and a sandbox joins the live set only once it is up.
 */
export class LiveSandboxes<S extends EnvdSandbox> {
  readonly #live = new Set<S>();
  readonly #starting = new Set<Promise<unknown>>();

  get size(): number {
    return this.#live.size;
  }

  async start<T extends { sandbox: S }>(start: (context: StartContext) => Promise<T>): Promise<T> {
    const starting = withCleanup((cleanup) => start({ cleanup, onDestroyed: (s) => this.#live.delete(s as S) }));
    this.#starting.add(starting);
    try {
      const started = await starting;
      this.#live.add(started.sandbox);
      return started;
    } finally {
      this.#starting.delete(starting);
    }
  }

  /** Lets the starts under way finish (or fail and clean up), then destroys every sandbox. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#starting]);
    await Promise.all([...this.#live].map((s) => s.destroy()));
  }
}
