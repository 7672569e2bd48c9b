import { ConfigError, loadConfig, type SnapfnConfig } from './config.ts';
import { EVAL_LIMITS } from './schemas/eval.ts';
import { startSnapfn, type RunningSnapfn } from './snapfn.ts';
import { startTracing } from './telemetry/tracing.ts';

/*
 * How `npm start` stops. A SIGTERM (or Ctrl-C) stops gracefully: running
 * invocations finish, then every sandbox goes, Redis last. It is over
 * within the longest invocation timeout plus SHUTDOWN_SLACK_MS whatever
 * Redis does: past that (minus FORCE_BUDGET_MS) the forced path runs.
 * A second signal takes the forced path at once: Redis connections cut,
 * every sandbox destroyed (never left behind), Redis stopped, exit 1.
 */
const SHUTDOWN_SLACK_MS = 10_000;
/** The forced path's share of the slack: cutting Redis and destroying sandboxes takes 1-3 s here. */
const FORCE_BUDGET_MS = 5_000;
/**
 * How long the forced path may keep at it anyway before the process exits
 * regardless. An exit leaves the sandboxes not yet destroyed behind, so on a
 * host slow enough to need it, going over the budget is the lesser evil.
 */
const FORCE_LIMIT_MS = 30_000;
/**
 * Signals this close together are one request. A SIGTERM to the process
 * group of `npm start` (Ctrl-C, a container runtime) reaches npm, tsx and
 * this process at once, and npm and tsx relay it once more: taken as a
 * second signal, that relay turned every stop into a forced one.
 */
const SAME_SIGNAL_MS = 1_000;

/** `npm start`: one snapfn node on PORT, until SIGINT/SIGTERM. */
async function main(): Promise<void> {
  const config = loadConfig();
  console.log(`snapfn: starting (SNAPFN_HOME=${config.home}, max ${config.maxSandboxes} sandboxes, pool ${config.poolSize ?? 'following traffic'})`);
  // Before anything creates spans: exports over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
  const tracing = await startTracing();
  // A signal while the node is still starting (templates building, sandboxes
  // restoring) must not end the process with its sandboxes left running: the
  // stop waits until the start has finished, then runs like any other.
  let startupSignal: NodeJS.Signals | undefined;
  let startupSignalAt = 0;
  const duringStartup = (signal: NodeJS.Signals) => {
    if (startupSignal !== undefined) {
      if (Date.now() - startupSignalAt < SAME_SIGNAL_MS) return;
      console.error(`snapfn: ${signal} again during start-up: exiting now`);
      process.exit(1);
    }
    startupSignal = signal;
    startupSignalAt = Date.now();
    console.log(`snapfn: ${signal} during start-up: stopping as soon as it is up`);
  };
  process.on('SIGINT', duringStartup);
  process.on('SIGTERM', duringStartup);
  const snapfn: RunningSnapfn = await startSnapfn({ config, eval: config.eval });
  process.off('SIGINT', duringStartup);
  process.off('SIGTERM', duringStartup);
  console.log(`snapfn: gateway listening on ${snapfn.url} (management API: ${config.apiKey ? 'API key required' : 'loopback clients only'})`);
  console.log(`snapfn: queue on ${config.redisUrl ? 'REDIS_URL (shared: deployments published for worker nodes)' : `its own Redis ${snapfn.redisUrl} (data in ${config.home}/redis)`}`);
  for (const fn of await snapfn.store.list()) console.log(`  ${fn.name.padEnd(16)} v${fn.active ?? '-'}  ${snapfn.url}/fn/${fn.name}`);
  for (const example of snapfn.examples) if (example.error) console.log(`  example ${example.name} was not deployed: ${example.error}`);

  let firstSignalAt: number | undefined;
  let forcing = false;
  const force = (why: string) => {
    if (forcing) return;
    forcing = true;
    console.error(`snapfn: ${why}: destroying every sandbox and exiting`);
    setTimeout(() => console.error(`snapfn: destroying the sandboxes takes longer than ${FORCE_BUDGET_MS} ms (a loaded host); still at it`), FORCE_BUDGET_MS).unref();
    setTimeout(() => {
      console.error(`snapfn: the forced shutdown did not finish within ${FORCE_LIMIT_MS} ms; exiting anyway`);
      process.exit(1);
    }, FORCE_LIMIT_MS);
    snapfn.close({ force: true }).then(
      () => process.exit(1),
      (err: unknown) => {
        console.error(`snapfn: forced shutdown: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  const stop = (signal: NodeJS.Signals) => {
    if (firstSignalAt !== undefined) {
      if (Date.now() - firstSignalAt < SAME_SIGNAL_MS) return;
      force(`${signal} again`);
      return;
    }
    firstSignalAt = Date.now();
    // Whatever a half-closed BullMQ or ioredis rejects from now on must not
    // end the process before the sandboxes are gone.
    process.on('unhandledRejection', (reason) => console.error(`snapfn: during shutdown: ${(reason as Error)?.message ?? String(reason)}`));
    console.log(`snapfn: ${signal}, shutting down`);
    void (async () => {
      // Read before the close: it closes the store first.
      const longest = await longestTimeoutMs(snapfn, config);
      const budget = longest + SHUTDOWN_SLACK_MS - FORCE_BUDGET_MS - (Date.now() - firstSignalAt!);
      const deadline = setTimeout(() => force(`still shutting down after ${Math.round((Date.now() - firstSignalAt!) / 1000)} s (longest invocation timeout ${longest} ms)`), Math.max(0, budget));
      try {
        await snapfn.close();
        await withTimeout(tracing.close(), 2000);
      } catch (err) {
        if (forcing) return;
        console.error(`snapfn: shutdown failed: ${(err as Error).message}`);
        force('the graceful shutdown failed');
        return;
      }
      clearTimeout(deadline);
      if (!forcing) process.exit(0);
    })();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  if (startupSignal !== undefined) stop(startupSignal);
}

/** The longest an invocation running now may still take: the functions' active timeouts, and eval's limit when it is served. */
async function longestTimeoutMs(snapfn: RunningSnapfn, config: SnapfnConfig): Promise<number> {
  let longest = config.eval ? EVAL_LIMITS.maxTimeoutMs : 0;
  const read = (async () => {
    for (const fn of await snapfn.store.list()) {
      const serving = await snapfn.store.serving(fn.name).catch(() => undefined);
      longest = Math.max(longest, serving?.version.config.timeoutMs ?? 0);
    }
  })();
  // A store that does not answer: assume the schema's default.
  if (!(await withTimeout(read, 1000))) longest = Math.max(longest, 10_000);
  return longest;
}

/** True if `work` settled within `ms`. */
async function withTimeout(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = work.then(
    () => true,
    () => true,
  );
  const result = await Promise.race([settled, new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
  clearTimeout(timer);
  return result;
}

main().catch((err: unknown) => {
  console.error(`snapfn: ${err instanceof ConfigError ? err.message : ((err as Error).stack ?? String(err))}`);
  process.exit(1);
});
