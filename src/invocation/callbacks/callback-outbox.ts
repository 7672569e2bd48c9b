import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { responseView } from '../../gateway/invocation-view.ts';
import type { InvocationJobResult } from '../../queue/job-data.ts';
import { CallbackDelivery, type CallbackPayload, type InvocationMode } from '../../schemas/invocation.ts';
import { DEFAULT_DELIVERY_BOUNDS, type CallbackDeliveryBounds } from './callback-settings.ts';

/*
 * Callbacks are jobs of their own queue in the same Redis: a callback
 * outlives the node that ran the invocation (and the one that first tried
 * to send it), BullMQ's retries with backoff are the delivery retries, and
 * the job id derived from the invocation id makes a re-run of the same
 * invocation (a worker died after the handler answered) send one callback,
 * not two.
 */

export const CALLBACK_QUEUE = 'callbacks';
const PREFIX = 'snapfn';
/** Kept as long as dead letters, so the status API can say what became of the callback. */
const STATE_TTL_S = 7 * 24 * 3600;

export interface CallbackJob {
  url: string;
  payload: CallbackPayload;
}

/** An invocation that ended (no attempt follows), as the processor tells it. */
export interface SettledInvocation {
  invocationId: string;
  functionName: string;
  version?: number | undefined;
  mode: InvocationMode;
  attempts: number;
  callbackUrl: string;
  result?: InvocationJobResult | undefined;
  error?: { code: string; message: string } | undefined;
}

export function callbackStateKey(invocationId: string): string {
  return `${PREFIX}:callback:${invocationId}`;
}

export function callbackJobId(invocationId: string): string {
  return `cb-${invocationId}`;
}

export class CallbackOutbox {
  readonly #redis: Redis;
  readonly #queue: Queue<CallbackJob>;
  readonly #bounds: CallbackDeliveryBounds;

  /** `redis` stays the caller's. */
  constructor(redis: Redis, bounds: Partial<CallbackDeliveryBounds> = {}) {
    this.#redis = redis;
    this.#bounds = { ...DEFAULT_DELIVERY_BOUNDS, ...bounds };
    this.#queue = new Queue<CallbackJob>(CALLBACK_QUEUE, { connection: redis, prefix: PREFIX });
    this.#queue.on('error', () => {}); // the owner's connection reports Redis trouble
  }

  async enqueue(settled: SettledInvocation): Promise<void> {
    const state: CallbackDelivery = { url: settled.callbackUrl, state: 'pending', attempts: 0 };
    // NX: a re-run must not reset what a delivery already recorded.
    await this.#redis.set(callbackStateKey(settled.invocationId), JSON.stringify(state), 'EX', STATE_TTL_S, 'NX');
    await this.#queue.add(
      'callback',
      { url: settled.callbackUrl, payload: payloadOf(settled) },
      {
        jobId: callbackJobId(settled.invocationId),
        attempts: this.#bounds.attempts,
        backoff: { type: 'exponential', delay: this.#bounds.backoffMs },
        removeOnComplete: { age: 3600, count: 10_000 },
        removeOnFail: { age: STATE_TTL_S, count: 50_000 },
      },
    );
  }

  async close(): Promise<void> {
    await this.#queue.close();
  }
}

function payloadOf(s: SettledInvocation): CallbackPayload {
  const outcome = s.result?.outcome;
  const base = { id: s.invocationId, function: s.functionName, ...(s.version !== undefined ? { version: s.version } : {}), trigger: s.mode, attempts: s.attempts };
  if (outcome?.ok) {
    const { headers } = responseView({ ...outcome.response, bodyBase64: '' });
    return { ...base, outcome: 'completed', status: outcome.response.status, headers, bodyBase64: outcome.response.bodyBase64 };
  }
  const error = outcome && !outcome.ok ? { code: outcome.error.code, message: outcome.error.message } : (s.error ?? { code: 'queue_error', message: 'the invocation failed' });
  return { ...base, outcome: 'dead', error };
}

export async function readCallbackState(redis: Redis, invocationId: string): Promise<CallbackDelivery | undefined> {
  const text = await redis.get(callbackStateKey(invocationId));
  if (!text) return undefined;
  const parsed = CallbackDelivery.safeParse(JSON.parse(text));
  return parsed.success ? parsed.data : undefined;
}

export async function writeCallbackState(redis: Redis, invocationId: string, state: CallbackDelivery): Promise<void> {
  await redis.set(callbackStateKey(invocationId), JSON.stringify(state), 'EX', STATE_TTL_S);
}
