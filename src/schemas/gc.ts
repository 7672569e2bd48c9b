import { z } from 'zod';

/** `POST /v1/admin/gc` and `fn gc`: both validate with this schema. */
export const GcRequest = z
  .object({
    /** Report what would be removed, remove nothing. */
    dryRun: z.boolean().optional(),
    /** Override SNAPFN_GC_KEEP_VERSIONS for this run. */
    keepVersions: z.number().int().min(0).max(10_000).optional(),
  })
  .strict();
export type GcRequest = z.infer<typeof GcRequest>;

export const GcRemoved = z.object({ id: z.string(), bytes: z.number().int().nonnegative(), createdAt: z.string() });

export const GcReport = z.object({
  dryRun: z.boolean(),
  keepVersions: z.number().int().nonnegative(),
  /** Templates removed (or, on a dry run, that would be). */
  removed: z.array(GcRemoved),
  /** Templates kept, with the first reason found (e.g. `active:hello@v3`, `kept:hello@v2`, `in-use`, `eval`). */
  kept: z.array(z.object({ id: z.string(), reason: z.string() })),
  bytesFreed: z.number().int().nonnegative(),
  durationMs: z.number().nonnegative(),
});
export type GcReport = z.infer<typeof GcReport>;
