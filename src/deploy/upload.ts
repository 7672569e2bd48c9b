import fs from 'node:fs/promises';
import path from 'node:path';
import { InvalidInputError, SnapfnError } from '../errors.ts';
import type { BlobStore } from '../registry/blob-store.ts';
import type { SourceManifest } from '../schemas/source-manifest.ts';
import { PayloadTooLargeError } from './deploy-errors.ts';

/** The two forms a deploy's files come in (DeployRequest's `files` and `manifest`). */
export interface Upload {
  files?: Record<string, string> | undefined;
  manifest?: SourceManifest | undefined;
}

/** How many missing digests an error names; `details.missing` has them all. */
const SHOWN_MISSING = 5;

/** The manifest names contents the blob store does not have: upload them (PUT /v1/blobs/:sha256) and deploy again. */
export class MissingBlobsError extends SnapfnError {
  constructor(missing: string[]) {
    const shown = missing.slice(0, SHOWN_MISSING).join(', ');
    const more = missing.length > SHOWN_MISSING ? ` and ${missing.length - SHOWN_MISSING} more` : '';
    super('missing_blobs', 400, `the manifest names ${missing.length} blob(s) the server does not have: ${shown}${more} (upload them with PUT /v1/blobs/<sha256> first)`, { details: { missing } });
  }
}

/** Bytes a base64 string decodes to, without decoding it. */
export function decodedLength(base64: string): number {
  const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
  return Math.floor((base64.length * 3) / 4) - padding;
}

export function isGitPath(relativePath: string): boolean {
  return relativePath.split('/').includes('.git');
}

function tooLarge(maxBytes: number): PayloadTooLargeError {
  return new PayloadTooLargeError(`the function directory is larger than the limit of ${maxBytes} bytes (SNAPFN_MAX_DEPLOY_BYTES)`);
}

/** Total decoded size of the inline files; throws 413 past `maxBytes` before anything is decoded or written. */
export function checkUploadSize(files: Record<string, string> | undefined, maxBytes: number): number {
  let total = 0;
  for (const [file, base64] of Object.entries(files ?? {})) {
    if (isGitPath(file)) continue;
    total += decodedLength(base64);
    if (total > maxBytes) throw tooLarge(maxBytes);
  }
  return total;
}

/** The stored size of every blob the manifest names; a client's declared sizes are checked against these. */
async function blobSizes(blobs: BlobStore, manifest: SourceManifest): Promise<Map<string, number>> {
  const unique = [...new Set(manifest.map((e) => e.sha256))];
  const sizes = new Map<string, number>();
  const missing: string[] = [];
  await Promise.all(
    unique.map(async (hash) => {
      const stat = await fs.stat(blobs.path(hash)).catch(() => undefined);
      if (stat) sizes.set(hash, stat.size);
      else missing.push(hash);
    }),
  );
  if (missing.length > 0) throw new MissingBlobsError(missing.sort());
  return sizes;
}

function clashError(file: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR') return new InvalidInputError(`bundle path ${JSON.stringify(file)} clashes with another file of the bundle`);
  return err as Error;
}

/**
 * Files snapfn itself writes while preparing the directory (`.snapfn/`, a
 * transpiled `.snapfn.<entry>.mjs`). Those are copied, never hard-linked:
 * a write through a link would change the shared blob.
 */
function writtenByPrepare(relativePath: string): boolean {
  return relativePath.split('/').some((seg) => seg.startsWith('.snapfn'));
}

/** Inside `root`, or an error: a second line of defence behind BundlePath. */
function targetOf(root: string, file: string): string {
  const target = path.resolve(root, file);
  if (!target.startsWith(root + path.sep)) throw new InvalidInputError(`bundle path ${JSON.stringify(file)} leaves the bundle`);
  return target;
}

/**
 * Materializes an upload under `dir`: inline files are written, manifest
 * entries are linked from the blob store (executables copied with their
 * mode). Anything under `.git` is skipped. The limit applies to everything
 * together; missing blobs fail with 400 `missing_blobs` before anything is
 * written.
 */
export async function writeUpload(dir: string, upload: Upload, options: { blobs: BlobStore; maxBytes: number }): Promise<void> {
  const root = path.resolve(dir);
  const inline = Object.entries(upload.files ?? {}).filter(([file]) => !isGitPath(file));
  const linked = (upload.manifest ?? []).filter((entry) => !isGitPath(entry.path));
  const seen = new Set<string>();
  for (const file of [...inline.map(([file]) => file), ...linked.map((e) => e.path)]) {
    if (seen.has(file)) throw new InvalidInputError(`bundle path ${JSON.stringify(file)} appears twice in the upload`);
    seen.add(file);
  }

  // The declared sizes first: a deploy over the limit is refused whether or not its blobs were uploaded.
  let total = checkUploadSize(upload.files, options.maxBytes);
  for (const entry of linked) {
    total += entry.size;
    if (total > options.maxBytes) throw tooLarge(options.maxBytes);
  }
  const sizes = await blobSizes(options.blobs, linked);
  for (const entry of linked) {
    const stored = sizes.get(entry.sha256)!;
    if (stored !== entry.size) throw new InvalidInputError(`manifest entry ${JSON.stringify(entry.path)} says ${entry.size} bytes, but blob ${entry.sha256} has ${stored}`);
  }

  for (const [file, base64] of inline) {
    const target = targetOf(root, file);
    try {
      await fs.mkdir(path.dirname(target), { recursive: true });
      await fs.writeFile(target, Buffer.from(base64, 'base64'), { flag: 'wx' });
    } catch (err) {
      throw clashError(file, err);
    }
  }
  for (const entry of linked) {
    const target = targetOf(root, entry.path);
    try {
      if (writtenByPrepare(entry.path)) {
        await fs.mkdir(path.dirname(target), { recursive: true });
        await fs.copyFile(options.blobs.path(entry.sha256), target, fs.constants.COPYFILE_EXCL);
        await fs.chmod(target, entry.executable ? 0o755 : 0o644);
      } else {
        await options.blobs.linkInto(entry.sha256, target, entry.executable === true);
      }
    } catch (err) {
      throw clashError(entry.path, err);
    }
  }
}
