import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { RedisStartError } from './errors.ts';
import { freePort } from './free-port.ts';

export { connectRedis } from './redis-connection.ts';
export { RedisStartError } from './errors.ts';

/*
 * A private Redis for a single-node install (and for the tests): the Debian
 * `redis-server` binary, loopback only, with an append-only file so queued
 * invocations and schedules survive a crash of Redis itself. A multi-node
 * install sets REDIS_URL instead and never calls this.
 *
 * It dies with the process that started it. It runs in its own process
 * group (a Ctrl-C must not stop it before the node has closed its queues),
 * so nothing else would stop it if the node were SIGKILLed or crashed: it
 * is started under `setpriv --pdeathsig KILL` (util-linux), so the kernel
 * kills it the moment its parent dies, however it dies. No polling, no pid
 * that could be recycled. SIGKILL loses nothing Redis acknowledged: each
 * write reaches the AOF (the kernel) before the reply. Where setpriv cannot
 * do that, a small watchdog shell polls the parent once a second instead.
 * The one gap (the parent dying between fork and prctl, microseconds) is
 * closed by the next start on the same directory, which stops a server
 * left there (stopStaleServer).
 */

export interface LocalRedisOptions {
  /** Data directory (AOF, log, pid file); created if missing. */
  dir: string;
  /** Fixed port (e.g. to restart on the same one); default: a free one. */
  port?: number;
  /** How long to wait for the first PONG (AOF replay of a large queue takes a while). */
  startTimeoutMs?: number;
}

export interface LocalRedis {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly dir: string;
  /** Resolves with the exit code (or signal) when the server process ends, however it ends. */
  readonly exited: Promise<number | NodeJS.Signals | null>;
  /** Graceful stop: SIGTERM makes Redis flush and fsync the AOF; SIGKILL if it takes longer than `graceMs` (10 s). */
  close(options?: { graceMs?: number }): Promise<void>;
}

export async function startLocalRedis(options: LocalRedisOptions): Promise<LocalRedis> {
  // The AOF holds job data and results: owner only, in a directory made by an older snapfn too.
  await fs.mkdir(options.dir, { recursive: true, mode: 0o700 });
  await fs.chmod(options.dir, 0o700);
  await stopStaleServer(options.dir);
  // Picking a free port and binding it are two steps; another process can win
  // the race, in which case redis-server exits at once and we pick again.
  const attempts = options.port === undefined ? 5 : 1;
  let lastError: Error | undefined;
  for (let i = 0; i < attempts; i++) {
    const port = options.port ?? (await freePort());
    try {
      return await launch(options.dir, port, options.startTimeoutMs ?? 30_000);
    } catch (err) {
      lastError = err as Error;
    }
  }
  throw lastError ?? new RedisStartError('redis-server did not start');
}

export interface SupervisedRedisOptions extends LocalRedisOptions {
  log?: (message: string) => void;
  /** First restart delay; doubles per failed start up to `maxBackoffMs`. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * The node's own Redis, started again whenever it exits without being asked
 * to: same directory (its AOF replays), same port (every client reconnects
 * to the URL it has). Restarts back off from 100 ms to 5 s while starts fail
 * (e.g. the port was taken meanwhile); a server that ran for 30 s resets it.
 */
export class SupervisedRedis {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly #options: SupervisedRedisOptions & { log: (message: string) => void };
  #current: LocalRedis | undefined;
  #startedAt = Date.now();
  #backoffMs: number;
  #timer: NodeJS.Timeout | undefined;
  #starting: Promise<void> | undefined;
  #restarts = 0;
  #closing: Promise<void> | undefined;

  private constructor(first: LocalRedis, options: SupervisedRedisOptions) {
    this.url = first.url;
    this.port = first.port;
    this.dir = first.dir;
    this.#options = { ...options, log: options.log ?? ((m) => console.error(m)) };
    this.#backoffMs = options.minBackoffMs ?? 100;
    this.#adopt(first);
  }

  static async start(options: SupervisedRedisOptions): Promise<SupervisedRedis> {
    return new SupervisedRedis(await startLocalRedis(options), options);
  }

  /** The running server's pid; undefined while it is being restarted. */
  get pid(): number | undefined {
    return this.#current?.pid;
  }

  get restarts(): number {
    return this.#restarts;
  }

  /** Stops supervising, then stops the server (see LocalRedis.close). */
  close(options: { graceMs?: number } = {}): Promise<void> {
    this.#closing ??= (async () => {
      clearTimeout(this.#timer);
      await this.#starting;
      await this.#current?.close(options);
    })();
    return this.#closing;
  }

  #adopt(redis: LocalRedis): void {
    this.#current = redis;
    this.#startedAt = Date.now();
    void redis.exited.then((how) => {
      if (this.#closing || this.#current !== redis) return;
      this.#current = undefined;
      if (Date.now() - this.#startedAt > 30_000) this.#backoffMs = this.#options.minBackoffMs ?? 100;
      this.#options.log(`snapfn: its Redis (pid ${redis.pid}) exited (${how}); restarting it on port ${this.port} in ${this.#backoffMs} ms`);
      this.#schedule();
    });
  }

  #schedule(): void {
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, this.#options.maxBackoffMs ?? 5000);
    this.#timer = setTimeout(() => {
      this.#starting = (async () => {
        try {
          const redis = await startLocalRedis({ dir: this.dir, port: this.port, ...(this.#options.startTimeoutMs ? { startTimeoutMs: this.#options.startTimeoutMs } : {}) });
          if (this.#closing) {
            await redis.close();
            return;
          }
          this.#restarts++;
          this.#options.log(`snapfn: its Redis is back (pid ${redis.pid}, port ${this.port})`);
          this.#adopt(redis);
        } catch (err) {
          if (this.#closing) return;
          this.#options.log(`snapfn: could not restart its Redis: ${(err as Error).message}; trying again in ${this.#backoffMs} ms`);
          this.#schedule();
        } finally {
          this.#starting = undefined;
        }
      })();
    }, delay);
  }
}

/** The command line that ties a child to this process's life (see the comment at the top), or undefined: use the watchdog. */
let tether: string[] | undefined | null = null;
function parentDeathTether(): string[] | undefined {
  if (tether === null) {
    const probe = spawnSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' });
    tether = probe.status === 0 ? ['setpriv', '--pdeathsig', 'KILL', '--'] : undefined;
  }
  return tether;
}

/** Kills `pid` within a second of this process's death; ends by itself when `pid` does. */
function startWatchdog(pid: number): void {
  const script = 'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done; kill -0 "$1" 2>/dev/null || kill -KILL "$2" 2>/dev/null';
  spawn('sh', ['-c', script, 'snapfn-redis-watchdog', String(process.pid), String(pid)], { detached: true, stdio: 'ignore' }).unref();
}

async function launch(dir: string, port: number, startTimeoutMs: number): Promise<LocalRedis> {
  const logFile = path.join(dir, 'redis.log');
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--protected-mode', 'yes',
    '--daemonize', 'no',
    '--dir', dir,
    '--logfile', logFile,
    '--pidfile', path.join(dir, 'redis.pid'),
    // Every acknowledged write reaches the AOF file before the reply, so a
    // killed redis-server loses nothing; a power loss loses at most ~1 s.
    '--appendonly', 'yes',
    '--appendfsync', 'everysec',
    // The AOF is the persistence; periodic RDB snapshots would only fork.
    '--save', '',
    // BullMQ's keys must never be evicted: a full Redis should refuse writes.
    '--maxmemory-policy', 'noeviction',
  ];
  // Its own process group: a Ctrl-C meant for the node must not stop Redis
  // before the node has closed its queues (Redis is closed last).
  const wrapper = parentDeathTether();
  const command = wrapper ? [...wrapper, 'redis-server', ...args] : ['redis-server', ...args];
  // redis-server creates its AOF, log and pid files under the umask it inherits: 0600, not 0644.
  const umask = process.umask(0o077);
  let child: ChildProcess;
  try {
    child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  } finally {
    process.umask(umask);
  }
  if (!wrapper && child.pid !== undefined) startWatchdog(child.pid);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-2000);
  });
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => {
    child.once('error', (err) => {
      stderr += `\n${err.message}`;
      resolve(null);
    });
    child.once('exit', (code, signal) => resolve(code ?? signal));
  });
  let gone = false;
  void exited.then(() => (gone = true));

  try {
    await waitForPong(port, startTimeoutMs, () => gone);
  } catch (err) {
    await stop(child, exited, 2000);
    const log = await fs.readFile(logFile, 'utf8').catch(() => '');
    const tail = `${stderr}\n${log}`.trim().split('\n').slice(-5).join(' | ');
    throw new RedisStartError(`redis-server on 127.0.0.1:${port} did not come up: ${(err as Error).message}${tail ? `: ${tail}` : ''}`);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    dir,
    exited,
    close: ({ graceMs = 10_000 } = {}) => stop(child, exited, graceMs),
  };
}

/**
 * A server left running on `dir` by a parent that was killed (it is in its
 * own process group, so it outlives it). Two servers must never append to
 * one AOF: stop it (SIGTERM flushes the AOF) before starting ours. The pid
 * file alone could name a recycled pid, hence the name and cwd checks.
 */
async function stopStaleServer(dir: string): Promise<void> {
  const pid = Number((await fs.readFile(path.join(dir, 'redis.pid'), 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 0) return;
  const comm = (await fs.readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
  if (comm !== 'redis-server') return;
  const cwd = await fs.readlink(`/proc/${pid}/cwd`).catch(() => '');
  if (!cwd || (await fs.realpath(cwd).catch(() => cwd)) !== (await fs.realpath(dir))) return;
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  if (alive()) process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 200 && alive(); i++) await new Promise((r) => setTimeout(r, 25));
}

async function stop(child: ChildProcess, exited: Promise<unknown>, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/**
 * A raw PING rather than an ioredis client: ioredis would retry quietly, and
 * while Redis replays its AOF it answers -LOADING, which we want to wait out.
 */
async function waitForPong(port: number, timeoutMs: number, exited: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (exited()) throw new Error('the process exited');
    last = await pingOnce(port).catch((err: Error) => err.message);
    if (last.startsWith('+PONG')) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no PONG within ${timeoutMs} ms (last: ${last.trim()})`);
}

function pingOnce(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('ping timed out'));
    }, 1000);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8');
      if (reply.includes('\r\n')) {
        clearTimeout(timer);
        socket.destroy();
        resolve(reply);
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
