import type { OrchestratorStats } from '../orchestrator/types.ts';
import type { QueueDepth } from '../telemetry/snapfn-metrics.ts';
import { driverName, type ConsoleContext } from './context.ts';

export interface LiveFunction {
  name: string;
  pooled: number;
  queue?: QueueDepth;
}

export interface LiveSnapshot {
  at: string;
  driver: string;
  stats: OrchestratorStats;
  free: number;
  /** Live sandboxes neither pooled nor busy: paused for keepWarm, or being restored or torn down. */
  parked: number;
  functions: LiveFunction[];
  /** 'none': this gateway runs without a queue; 'unreachable': Redis did not answer in time. */
  queue: 'ok' | 'none' | 'unreachable';
}

/** The live page must render while Redis is away: the queue part is dropped after this long. */
const QUEUE_READ_TIMEOUT_MS = 1000;

async function queueDepth(ctx: ConsoleContext): Promise<Record<string, QueueDepth> | 'none' | 'unreachable'> {
  const queue = ctx.deps.queue;
  if (!queue) return 'none';
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      queue.depth(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), QUEUE_READ_TIMEOUT_MS);
      }),
    ]);
  } catch {
    return 'unreachable';
  } finally {
    clearTimeout(timer);
  }
}

export async function liveSnapshot(ctx: ConsoleContext): Promise<LiveSnapshot> {
  const { engine, store } = ctx.deps;
  const stats = engine.stats();
  const [depth, functions] = await Promise.all([queueDepth(ctx), store.list()]);
  const pooledTotal = Object.values(stats.pooled).reduce((a, b) => a + b, 0);
  return {
    at: new Date().toISOString(),
    driver: driverName(ctx),
    stats,
    free: engine.freeCapacity(),
    parked: Math.max(0, stats.liveSandboxes - stats.busySandboxes - pooledTotal),
    functions: functions.map((fn) => ({
      name: fn.name,
      pooled: stats.pooled[fn.name] ?? 0,
      ...(typeof depth === 'object' && depth[fn.name] ? { queue: depth[fn.name] } : {}),
    })),
    queue: typeof depth === 'object' ? 'ok' : depth,
  };
}
