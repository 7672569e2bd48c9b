import { context, trace } from '@opentelemetry/api';
import type { Sandbox } from '../sandbox/driver.ts';
import type { SandboxCapacity } from './capacity.ts';

const tracer = trace.getTracer('snapfn');

/**
 * Sandbox teardowns (destroy, pause) run in the background, after the
 * response. A destroyed sandbox's place is freed only once it is gone, so
 * live sandboxes never exceed the node-wide cap.
 */
export class Teardowns {
  readonly #pending = new Set<Promise<void>>();
  readonly #capacity: SandboxCapacity<Sandbox>;
  readonly #onPlaceFreed: () => void;

  constructor(capacity: SandboxCapacity<Sandbox>, onPlaceFreed: () => void) {
    this.#capacity = capacity;
    this.#onPlaceFreed = onPlaceFreed;
  }

  /** Keeps `p` in what settle() waits for. */
  track(p: Promise<void>): void {
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p)).catch(() => {});
  }

  /**
   * Destroys `sandbox` of function `name`. `passPlace`: its place was already
   * promised to someone (moved in SandboxCapacity); called instead of
   * releasing the place.
   */
  destroy(name: string, sandbox: Sandbox, options: { passPlace?: () => void } = {}): void {
    this.track(
      tracer.startActiveSpan('teardown', { attributes: { 'teardown.kind': 'destroy' } }, context.active(), async (span) => {
        try {
          await sandbox.destroy();
        } finally {
          span.end();
          if (options.passPlace) options.passPlace();
          else this.#capacity.release(name);
          this.#onPlaceFreed();
        }
      }),
    );
  }

  /** Destroys it and resolves once it is gone, its place passed to the caller (already moved in SandboxCapacity). */
  destroyForPlace(name: string, sandbox: Sandbox): Promise<void> {
    return new Promise<void>((gone) => this.destroy(name, sandbox, { passPlace: gone }));
  }

  /** Pauses in the background; `then` decides what happens to it afterwards. */
  pause(sandbox: Sandbox, then: (paused: boolean) => void): void {
    this.track(
      tracer.startActiveSpan('teardown', { attributes: { 'teardown.kind': 'pause' } }, async (span) => {
        let paused = false;
        try {
          await sandbox.pause();
          paused = true;
        } catch {
          // `then(false)` destroys it
        } finally {
          span.end();
        }
        then(paused);
      }),
    );
  }

  /** Waits until no teardown is left: one may start another (a pause that ends in a destroy). */
  async settle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }
}
