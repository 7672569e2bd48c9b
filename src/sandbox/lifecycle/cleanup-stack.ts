/**
 * What a sandbox holds, as the list of how to let go of it (E2B's
 * orchestrator keeps one per sandbox, filled by its factory). Each resource
 * registers its release right after it is acquired; unwinding runs them in
 * reverse order, exactly once, so a start that fails half-way releases
 * exactly what it had acquired and a destroy releases everything.
 */
export class CleanupStack {
  readonly #steps: Array<{ what: string; release: () => unknown }> = [];
  #unwinding: Promise<void> | undefined;

  /** Register the release of what was just acquired. */
  defer(what: string, release: () => unknown): void {
    if (this.#unwinding) throw new Error(`cleanup stack already unwound (registering ${what})`);
    this.#steps.push({ what, release });
  }

  /**
   * Runs every release, last registered first. A release that fails does not
   * stop the others (what it held is the next start's orphan reaping to
   * find); the failures are reported together once all have run.
   */
  unwind(): Promise<void> {
    this.#unwinding ??= this.#run();
    return this.#unwinding;
  }

  async #run(): Promise<void> {
    const failed: string[] = [];
    for (const step of this.#steps.splice(0).reverse()) {
      try {
        await step.release();
      } catch (err) {
        failed.push(`${step.what}: ${(err as Error).message}`);
      }
    }
    if (failed.length > 0) process.stderr.write(`snapfn: sandbox cleanup: ${failed.join('; ')}\n`);
  }
}

/**
 * Runs a start with its own cleanup stack: on success the stack goes with
 * what was started (its destroy unwinds it), on failure it is unwound here.
 */
export async function withCleanup<T>(start: (cleanup: CleanupStack) => Promise<T>): Promise<T> {
  const cleanup = new CleanupStack();
  try {
    return await start(cleanup);
  } catch (err) {
    await cleanup.unwind();
    throw err;
  }
}
