import { z } from 'zod';
import { ConfigError } from '../../config.ts';
import { DEFAULT_CALLBACK_ALLOW, parseAllowList, type CallbackAllowList } from './callback-target.ts';

/** Bounds of one callback's delivery: attempts with exponential backoff, each one time-limited. */
export interface CallbackDeliveryBounds {
  attempts: number;
  /** First backoff; each later one doubles. */
  backoffMs: number;
  /** Per attempt, connect to last byte of the receiver's answer. */
  timeoutMs: number;
}

export interface CallbackSettings {
  /** SNAPFN_CALLBACK_SECRET: the HMAC key; unset, callbacks go out unsigned (and the gateway says so at start). */
  secret: string | undefined;
  allow: CallbackAllowList;
  bounds: CallbackDeliveryBounds;
}

/** 1 + 2 + 4 + 8 + 16 s between the six attempts: a receiver restarting for half a minute still gets it. */
export const DEFAULT_DELIVERY_BOUNDS: CallbackDeliveryBounds = { attempts: 6, backoffMs: 1000, timeoutMs: 10_000 };

const CallbackEnv = z.object({
  SNAPFN_CALLBACK_SECRET: z
    .string()
    .optional()
    .transform((v) => (v?.trim() ? v : undefined))
    .pipe(z.string().min(16, 'SNAPFN_CALLBACK_SECRET must be at least 16 characters').optional()),
  SNAPFN_CALLBACK_ALLOW: z
    .string()
    .optional()
    .transform((v) => (v?.trim() ? v : DEFAULT_CALLBACK_ALLOW)),
});

/** Read next to the node's other settings (src/config.ts), from the same environment. */
export function loadCallbackSettings(env: NodeJS.ProcessEnv = process.env, bounds: Partial<CallbackDeliveryBounds> = {}): CallbackSettings {
  const parsed = CallbackEnv.safeParse(env);
  if (!parsed.success) throw new ConfigError(`invalid configuration: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  let allow: CallbackAllowList;
  try {
    allow = parseAllowList(parsed.data.SNAPFN_CALLBACK_ALLOW);
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${(err as Error).message}`);
  }
  return { secret: parsed.data.SNAPFN_CALLBACK_SECRET, allow, bounds: { ...DEFAULT_DELIVERY_BOUNDS, ...bounds } };
}
