import { FunctionConfig } from '../schemas/function-config.ts';
import type { FunctionConfigPatch } from '../schemas/api.ts';
import { zodMessage } from '../schemas/zod-message.ts';
import { InvalidConfigError } from './deploy-errors.ts';

/**
 * The handler's `export const config` (as envd read it, unvalidated) under
 * the config given to the API or CLI: explicit API values win, FunctionConfig
 * fills in defaults and rejects anything unknown.
 */
export function mergeConfig(handlerConfig: unknown, patch: FunctionConfigPatch): FunctionConfig {
  if (handlerConfig !== null && handlerConfig !== undefined && (typeof handlerConfig !== 'object' || Array.isArray(handlerConfig))) {
    throw new InvalidConfigError('the handler\'s `export const config` must be an object');
  }
  const definedPatch = Object.fromEntries(Object.entries(patch).filter(([, value]) => value !== undefined));
  const parsed = FunctionConfig.safeParse({ ...(handlerConfig as object | null), ...definedPatch });
  if (!parsed.success) throw new InvalidConfigError(zodMessage(parsed.error, 'config'));
  return parsed.data;
}
