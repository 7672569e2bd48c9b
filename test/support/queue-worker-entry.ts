// A queue worker node with a fake engine, run as a child process by the
// crash tests (so it can be SIGKILLed). Configured through env:
//   REDIS_URL, FUNCTIONS (comma-separated), RECORD_FILE (one line per finished invocation),
//   CAPACITY (2), INVOKE_MS (20), LOCK_MS / STALLED_MS (short, so a killed worker's jobs return fast).
// Prints "ready" once its workers fetch; exits cleanly on SIGTERM.
import { InvocationWorkers } from '../../src/queue/invocation-worker.ts';
import { FakeEngine, fakeDeployment } from './fake-engine.ts';

const env = process.env;
const engine = new FakeEngine({ capacity: Number(env.CAPACITY ?? 2), invokeMs: Number(env.INVOKE_MS ?? 20), ...(env.RECORD_FILE ? { recordFile: env.RECORD_FILE } : {}) });
const workers = new InvocationWorkers({
  redisUrl: env.REDIS_URL!,
  engine,
  resolveDeployment: fakeDeployment,
  lockDurationMs: Number(env.LOCK_MS ?? 1000),
  stalledIntervalMs: Number(env.STALLED_MS ?? 500),
  workerId: env.WORKER_ID ?? `child-${process.pid}`,
  // Connection errors while Redis restarts are expected here.
  onError: () => {},
});
for (const name of (env.FUNCTIONS ?? '').split(',').filter(Boolean)) workers.start(name);
await workers.ready();
process.stdout.write('ready\n');

process.once('SIGTERM', () => {
  void workers.close().then(() => process.exit(0));
});
