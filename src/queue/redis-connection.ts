import { Redis, type RedisOptions } from 'ioredis';

/*
 * Redis connections that can always be closed.
 *
 * BullMQ needs connections whose commands wait across reconnects
 * (maxRetriesPerRequest: null, offline queue on), so that a worker rides out
 * a Redis restart. The price: while Redis is down, every command, `quit()`
 * included, waits forever, and ioredis' disconnect() in the `reconnecting`
 * state neither ends the connection nor fails what is queued on it. A close
 * that awaits any of that never finishes (SIGTERM hung for minutes with Redis
 * gone). So each connection remembers its duplicates (BullMQ makes one per
 * Worker for its blocking fetch and one per QueueEvents) and `cutConnections`
 * ends them all at once and fails their pending commands, after which every
 * BullMQ await that depended on them settles.
 */

/** How often a lost connection tries again: quickly at first (a restarted local Redis is back in well under a second), then every second. */
export function reconnectDelayMs(attempt: number): number {
  return Math.min(50 * 2 ** Math.max(0, attempt - 1), 1000);
}

class FamilyRedis extends Redis {
  readonly family: Set<FamilyRedis>;

  constructor(target: string | RedisOptions, options: RedisOptions, family: Set<FamilyRedis>) {
    if (typeof target === 'string') super(target, options);
    else super({ ...target, ...options });
    this.family = family;
    family.add(this);
    this.once('end', () => family.delete(this));
  }

  override duplicate(override?: Partial<RedisOptions>): Redis {
    return new FamilyRedis({ ...this.options }, override ?? {}, this.family);
  }
}

/** A connection BullMQ can use: commands wait across reconnects instead of failing after 20 retries. */
export function connectRedis(url: string, options: { name?: string } = {}): Redis {
  return new FamilyRedis(url, { maxRetriesPerRequest: null, retryStrategy: reconnectDelayMs, ...(options.name ? { connectionName: options.name } : {}) }, new Set());
}

/** The internals of ioredis 5 that end a connection whatever its state (see the comment at the top). */
interface EndableRedis {
  flushQueue?: (error: Error, options?: unknown) => void;
  setStatus?: (status: string, arg?: unknown) => void;
}

/**
 * Ends `redis` and every connection duplicated from it, now: no reconnect,
 * and whatever was waiting on them fails with "Connection is closed."
 */
export function cutConnections(redis: Redis): void {
  const members = redis instanceof FamilyRedis ? [...redis.family] : [redis];
  if (!members.includes(redis as FamilyRedis)) members.push(redis as FamilyRedis);
  for (const member of members) {
    if (member.status === 'end') continue;
    member.disconnect();
    // disconnect() changes the status; TypeScript still narrows it from the check above.
    if ((member.status as string) === 'end') continue;
    // Still `reconnecting` (or `connecting`): disconnect() only cleared the
    // reconnect timer. Fail what is queued and mark it ended (emits 'end',
    // which BullMQ's own disconnect waits for).
    const internals = member as unknown as EndableRedis;
    internals.flushQueue?.(new Error('Connection is closed.'));
    internals.setStatus?.('end');
  }
}

/**
 * A polite close that cannot hang: QUIT (pending replies first) when Redis is
 * there and answers within `timeoutMs`, else cut. Duplicates still open
 * afterwards (their owners did not close them) are cut as well.
 */
export async function closeConnections(redis: Redis, timeoutMs = 1000): Promise<void> {
  if (redis.status === 'ready') {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([redis.quit().catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }
  cutConnections(redis);
}

/**
 * Awaits `closing`, but at most `timeoutMs`; past that `cut` runs (it should
 * make whatever `closing` waits on fail) and `closing` gets one more second.
 * Resolves true when `closing` finished.
 */
export async function settleWithin(closing: Promise<unknown>, timeoutMs: number, cut: () => void): Promise<boolean> {
  const settled = closing.then(
    () => true,
    () => true,
  );
  const first = await raceTimer(settled, timeoutMs);
  if (first) return true;
  cut();
  return raceTimer(settled, 1000);
}

async function raceTimer(settled: Promise<boolean>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([settled, new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
  clearTimeout(timer);
  return result;
}
