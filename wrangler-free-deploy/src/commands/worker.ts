import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CliError, UsageError } from '../cli-error.ts';
import { intOption, parseCommand, type Command } from '../context.ts';

const WORKER_ENTRY = fileURLToPath(new URL('../../../src/worker.ts', import.meta.url));
// Resolved here, not by the child: `--import tsx` would resolve from the caller's cwd.
const TSX_LOADER = import.meta.resolve('tsx');

/**
 * `fn worker`: src/worker.ts (what `npm run worker` runs) as a child
 * process, with flags as a shorthand for its env vars. The child gets its
 * own process group so a Ctrl-C reaches it once, through us: a second
 * signal is the worker's "stop now".
 */
export const worker: Command = {
  name: 'worker',
  summary: 'run a worker-only node here: takes queued invocations from REDIS_URL, no HTTP API (same as npm run worker)',
  usage: 'fn worker [--redis-url URL] [--template-store DIR] [--health-port N] [--home DIR]',
  async run(args, ctx) {
    const { values } = parseCommand(
      this,
      args,
      { 'redis-url': { type: 'string' }, 'template-store': { type: 'string' }, 'health-port': { type: 'string' }, home: { type: 'string' } },
      { min: 0, max: 0 },
    );
    const healthPort = intOption('health-port', values['health-port']);
    const env: NodeJS.ProcessEnv = {
      ...ctx.io.env,
      ...(values['redis-url'] !== undefined ? { REDIS_URL: values['redis-url'] } : {}),
      ...(values['template-store'] !== undefined ? { SNAPFN_TEMPLATE_STORE: values['template-store'] } : {}),
      ...(healthPort !== undefined ? { SNAPFN_WORKER_HEALTH_PORT: String(healthPort) } : {}),
      ...(values.home !== undefined ? { SNAPFN_HOME: values.home } : {}),
    };
    if (!env.REDIS_URL) throw new UsageError('a worker needs the gateways\' Redis: --redis-url or REDIS_URL');
    if (!env.SNAPFN_TEMPLATE_STORE) throw new UsageError('a worker needs the template store shared with the gateways: --template-store or SNAPFN_TEMPLATE_STORE');

    const child = spawn(process.execPath, ['--import', TSX_LOADER, WORKER_ENTRY], { env, cwd: ctx.io.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.stdout!.pipe(ctx.io.stdout, { end: false });
    child.stderr!.pipe(ctx.io.stderr, { end: false });
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    try {
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
        child.once('error', reject);
        child.once('exit', (c, s) => resolve([c, s]));
      });
      if (signal) throw new CliError(`the worker was killed by ${signal}`);
      if (code !== 0) throw new CliError(`the worker exited with code ${code}`, code === 2 ? 2 : 1);
    } finally {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
    }
  },
};
