import { ConfigError, loadConfig } from './config.ts';
import { startSnapfn, type RunningSnapfn } from './snapfn.ts';
import { startTracing } from './telemetry/tracing.ts';

/** `npm start`: one snapfn node on PORT, until SIGINT/SIGTERM. */
async function main(): Promise<void> {
  const config = loadConfig();
  console.log(`snapfn: starting (SNAPFN_HOME=${config.home}, max ${config.maxSandboxes} sandboxes, pool ${config.poolSize})`);
  // Before anything creates spans: exports over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
  const tracing = await startTracing();
  const snapfn: RunningSnapfn = await startSnapfn({ config, eval: config.eval });
  console.log(`snapfn: gateway listening on ${snapfn.url} (management API: ${config.apiKey ? 'API key required' : 'loopback clients only'})`);
  console.log(`snapfn: queue on ${config.redisUrl ? 'REDIS_URL (shared: deployments published for worker nodes)' : `its own Redis ${snapfn.redisUrl} (data in ${config.home}/redis)`}`);
  for (const fn of await snapfn.store.list()) console.log(`  ${fn.name.padEnd(16)} v${fn.active ?? '-'}  ${snapfn.url}/fn/${fn.name}`);
  for (const example of snapfn.examples) if (example.error) console.log(`  example ${example.name} was not deployed: ${example.error}`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      // A second Ctrl-C means "now": sandboxes may be left for the next start to reap.
      console.error(`snapfn: ${signal} again, exiting without cleanup`);
      process.exit(1);
    }
    stopping = true;
    console.log(`snapfn: ${signal}, shutting down`);
    snapfn.close().then(() => tracing.close()).then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`snapfn: shutdown failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(`snapfn: ${err instanceof ConfigError ? err.message : ((err as Error).stack ?? String(err))}`);
  process.exit(1);
});
