import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startLocalRedis, type LocalRedis } from '../../src/queue/redis-server.ts';

export interface TestRedis {
  redis: LocalRedis;
  dir: string;
  /** kill -9 the server and start it again on the same port and data directory (AOF replay). */
  crashAndRestart(downMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startTestRedis(label: string): Promise<TestRedis> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `snapfn-redis-${label}-`));
  const t: TestRedis = {
    redis: await startLocalRedis({ dir }),
    dir,
    async crashAndRestart(downMs = 500) {
      const { port } = t.redis;
      process.kill(t.redis.pid, 'SIGKILL');
      await t.redis.exited;
      await new Promise((r) => setTimeout(r, downMs));
      t.redis = await startLocalRedis({ dir, port });
    },
    async close() {
      await t.redis.close();
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
