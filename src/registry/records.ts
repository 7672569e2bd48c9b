import { z } from 'zod';
import { FunctionConfig, FunctionName } from '../schemas/function-config.ts';

/*
 * The on-disk formats of the function store. They are re-validated on every
 * read: a hand-edited or truncated file becomes a clear error, not a
 * half-typed object deep inside an invocation.
 */

export const FunctionRecord = z.object({
  name: FunctionName,
  /** The version that serves /fn/:name; null until the first deploy has activated. */
  active: z.number().int().positive().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type FunctionRecord = z.infer<typeof FunctionRecord>;

export const VersionRecord = z.object({
  version: z.number().int().positive(),
  templateId: z.string().min(1),
  createdAt: z.string(),
  source: z.enum(['deploy', 'env', 'schedule', 'topics', 'rebuild']),
  config: FunctionConfig,
  env: z.record(z.string(), z.string()),
  secretNames: z.array(z.string()),
  /** sha256 of the function's source (the prepared directory mounted at /fn); kept so the template can be rebuilt. */
  bundleHash: z.string().regex(/^[0-9a-f]{64}$/),
  /** sha256 of what the deploy asked for besides secrets (config, env): lets a re-deploy of the same thing be a no-op. */
  fingerprint: z.string(),
});
export type VersionRecord = z.infer<typeof VersionRecord>;

/** Secret values per version number; lives in its own 0600 file. */
export const SecretsFile = z.record(z.string().regex(/^\d+$/), z.record(z.string(), z.string()));
export type SecretsFile = z.infer<typeof SecretsFile>;
