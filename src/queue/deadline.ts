import { QueueUnavailableError } from './errors.ts';

/**
 * Bounds a Redis round trip. Connections wait across reconnects (BullMQ
 * needs that), so without a deadline a request would hang for as long as
 * Redis is down. The operation itself is not cancelled: it may still land
 * once Redis is back, which every caller here tolerates (they are idempotent).
 */
export async function withDeadline<T>(what: string, ms: number, work: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new QueueUnavailableError(`${what}: Redis did not answer within ${ms} ms`)), ms);
  });
  const running = work();
  // The loser of the race must not become an unhandled rejection.
  running.catch(() => {});
  try {
    return await Promise.race([running, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
