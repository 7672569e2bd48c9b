import crypto from 'node:crypto';
import { KEY_PREFIX } from './job-data.ts';

/*
 * Invocation ids are BullMQ job ids. Three kinds:
 * - the gateway's random UUID (plain sync/async invocations);
 * - a UUID derived from (function, Idempotency-Key): a repeated request maps
 *   to the same job id, and BullMQ ignores an add whose id exists;
 * - `repeat:cron-<fn>:<tick ms>` for schedule runs (BullMQ names those).
 */

/** A v8 (custom) UUID from sha256(name, key): looks like every other invocation id. */
export function idempotentInvocationId(functionName: string, idempotencyKey: string): string {
  const h = crypto.createHash('sha256').update(functionName).update('\0').update(idempotencyKey).digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** One scheduler per function; its id is part of every run's job id, so a run names its function. */
export function schedulerId(functionName: string): string {
  return `cron-${functionName}`;
}

const SCHEDULED_ID = /^repeat:cron-([a-z][a-z0-9-]{0,62}):\d+$/;

export function functionOfScheduledRun(invocationId: string): string | undefined {
  return SCHEDULED_ID.exec(invocationId)?.[1];
}

/**
 * invocation id -> function name, so `status(id)` can find the job's queue.
 * Written before the job is added: it must exist whenever the job does.
 */
export function invocationIndexKey(invocationId: string): string {
  return `${KEY_PREFIX}:invocation:${invocationId}`;
}

/** BullMQ job ids may not be integers-as-strings (reserved for its own counter) nor contain ':' in our use. */
export function isUsableJobId(id: string): boolean {
  return id.length > 0 && id.length <= 200 && !/^\d+$/.test(id) && !id.includes(':');
}
