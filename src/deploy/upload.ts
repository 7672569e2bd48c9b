import fs from 'node:fs/promises';
import path from 'node:path';
import { InvalidInputError } from '../errors.ts';
import { PayloadTooLargeError } from './deploy-errors.ts';

/** Bytes a base64 string decodes to, without decoding it. */
export function decodedLength(base64: string): number {
  const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
  return Math.floor((base64.length * 3) / 4) - padding;
}

export function isGitPath(relativePath: string): boolean {
  return relativePath.split('/').includes('.git');
}

/** Total decoded size of an upload; throws 413 past `maxBytes` before anything is decoded or written. */
export function checkUploadSize(files: Record<string, string>, maxBytes: number): number {
  let total = 0;
  for (const [file, base64] of Object.entries(files)) {
    if (isGitPath(file)) continue;
    total += decodedLength(base64);
    if (total > maxBytes) throw new PayloadTooLargeError(`the bundle is larger than the limit of ${maxBytes} bytes (SNAPFN_MAX_BUNDLE_BYTES)`);
  }
  return total;
}

function clashError(file: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR') return new InvalidInputError(`bundle path ${JSON.stringify(file)} clashes with another file of the bundle`);
  return err as Error;
}

/**
 * Writes an uploaded file map (paths already validated by BundlePath) under
 * `dir`. The resolved-path check is a second line of defence against a path
 * that escapes `dir`.
 */
export async function writeUpload(dir: string, files: Record<string, string>): Promise<void> {
  const root = path.resolve(dir);
  for (const [file, base64] of Object.entries(files)) {
    if (isGitPath(file)) continue;
    const target = path.resolve(root, file);
    if (!target.startsWith(root + path.sep)) throw new InvalidInputError(`bundle path ${JSON.stringify(file)} leaves the bundle`);
    try {
      await fs.mkdir(path.dirname(target), { recursive: true });
      await fs.writeFile(target, Buffer.from(base64, 'base64'), { flag: 'wx' });
    } catch (err) {
      throw clashError(file, err);
    }
  }
}
