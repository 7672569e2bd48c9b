import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startLocalRedis, type LocalRedis } from '../../src/queue/redis-server.ts';

export interface TestRedis {
  redis: LocalRedis;
  dir: string;
  /** kill -9 the server and start it again on the same port and data directory (AOF replay). */
  crashAndRestart(downMs?: number): Promise<void>;
  /** kill -9 the server and leave it down (until restart()). */
  kill(): Promise<void>;
  /** Starts it again on the same port and data directory (a no-op while it runs). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startTestRedis(label: string): Promise<TestRedis> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `snapfn-redis-${label}-`));
  let down = false;
  const t: TestRedis = {
    redis: await startLocalRedis({ dir }),
    dir,
    async crashAndRestart(downMs = 500) {
      await t.kill();
      await new Promise((r) => setTimeout(r, downMs));
      await t.restart();
    },
    async kill() {
      if (down) return;
      down = true;
      process.kill(t.redis.pid, 'SIGKILL');
      await t.redis.exited;
    },
    async restart() {
      if (!down) return;
      t.redis = await startLocalRedis({ dir, port: t.redis.port });
      down = false;
    },
    async close() {
      if (!down) await t.redis.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
  return t;
}

/** Polls `check` every `everyMs` until it returns true; fails after `timeoutMs` with `what`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Live redis-server processes (zombies are dead) whose working directory is `dir` or that listen on `port`. */
export async function redisServers(where: { dir?: string; port?: number }): Promise<number[]> {
  const found: number[] = [];
  const dir = where.dir ? await fs.realpath(where.dir).catch(() => where.dir) : undefined;
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const comm = (await fs.readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
    if (comm !== 'redis-server') continue;
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (/^\d+ \([^)]*\) Z/.test(stat)) continue;
    const cwd = await fs.readlink(`/proc/${pid}/cwd`).catch(() => '');
    const cmdline = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ');
    if ((dir && cwd === dir) || (where.port !== undefined && cmdline.includes(`:${where.port}`))) found.push(pid);
  }
  return found;
}
