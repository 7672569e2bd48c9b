import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './free-port.ts';

/*
 * A private Redis for a single-node install (and for the tests): the Debian
 * `redis-server` binary, loopback only, with an append-only file so queued
 * invocations and schedules survive a crash of Redis itself. A multi-node
 * install sets REDIS_URL instead and never calls this.
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
  /** Graceful stop: SIGTERM makes Redis flush and fsync the AOF; SIGKILL if it takes too long. */
  close(): Promise<void>;
}

export class RedisStartError extends Error {
  override readonly name = 'RedisStartError';
}

export async function startLocalRedis(options: LocalRedisOptions): Promise<LocalRedis> {
  await fs.mkdir(options.dir, { recursive: true });
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

/** A connection BullMQ can use: commands wait across reconnects instead of failing after 20 retries. */
export function connectRedis(url: string, options: { name?: string } = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, ...(options.name ? { connectionName: options.name } : {}) });
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
  const child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
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
    close: () => stop(child, exited, 10_000),
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
