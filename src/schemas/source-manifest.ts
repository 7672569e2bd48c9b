import { z } from 'zod';

/** A path inside an uploaded function directory: relative, forward slashes, never leaving it. */
export const BundlePath = z
  .string()
  .min(1)
  .max(1024)
  .refine(
    (p) => !p.startsWith('/') && !p.includes('\\') && !p.includes('\0') && p.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..'),
    'bundle paths must be relative, use "/" and contain no "." or ".." segments',
  );

export const MAX_BUNDLE_FILES = 50_000;

export const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 digest is 64 lowercase hex digits');

/** One file of a function directory, by content: its bytes live in the blob store under `sha256`. */
export const ManifestEntry = z
  .object({
    path: BundlePath,
    sha256: Sha256Hex,
    size: z.number().int().min(0),
    executable: z.boolean().optional(),
  })
  .strict();
export type ManifestEntry = z.infer<typeof ManifestEntry>;

/**
 * A function directory as a list of files by content hash: what `fn deploy`
 * sends first (the server answers which blobs it lacks) and what a version
 * keeps to rebuild its template.
 */
export const SourceManifest = z
  .array(ManifestEntry)
  .min(1, 'the function directory has no files')
  .max(MAX_BUNDLE_FILES, `a function directory holds at most ${MAX_BUNDLE_FILES} files`)
  .refine((entries) => new Set(entries.map((e) => e.path)).size === entries.length, 'a path appears twice in the manifest');
export type SourceManifest = z.infer<typeof SourceManifest>;
