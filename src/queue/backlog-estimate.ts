/*
 * A Retry-After for a full queue. "Until the whole backlog is gone" makes
 * clients wait far too long on a deep queue; "until one place frees" (a few
 * ms) makes them all come back at once. A tenth of the backlog is between.
 */

const FALLBACK_SECONDS = 5;
const MAX_SECONDS = 300;
/** Finishes older than this say nothing about the current drain rate. */
const STALE_MS = 60_000;

/**
 * @param queued jobs waiting right now
 * @param finishTimes ms timestamps of recently finished jobs (any order)
 */
export function retryAfterSeconds(queued: number, finishTimes: number[], now = Date.now()): number {
  const recent = finishTimes.filter((t) => now - t <= STALE_MS).sort((a, b) => a - b);
  if (recent.length < 2) return FALLBACK_SECONDS;
  const spanMs = Math.max(now - recent[0]!, 1);
  const perSecond = (recent.length / spanMs) * 1000;
  const seconds = Math.ceil((0.1 * queued) / perSecond);
  return Math.min(MAX_SECONDS, Math.max(1, seconds));
}
