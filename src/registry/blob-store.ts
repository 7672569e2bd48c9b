import crypto from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform, type Readable } from 'node:stream';

export const SHA256_HEX = /^[0-9a-f]{64}$/;

export class BlobHashMismatchError extends Error {
  override readonly name = 'BlobHashMismatchError';
}

export class BlobTooLargeError extends Error {
  override readonly name = 'BlobTooLargeError';
}

/**
 * Content-addressed file contents under `<root>/<aa>/<sha256>`, shared by
 * every function and version: a redeploy whose dependencies did not change
 * stores (and uploads) nothing new. Blobs are immutable and read-only once
 * written, so they can be hard-linked into template directories.
 */
export class BlobStore {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  path(hash: string): string {
    if (!SHA256_HEX.test(hash)) throw new Error(`not a sha256 hex digest: ${hash}`);
    return path.join(this.root, hash.slice(0, 2), hash);
  }

  has(hash: string): Promise<boolean> {
    return fs.access(this.path(hash)).then(
      () => true,
      () => false,
    );
  }

  async missing(hashes: Iterable<string>): Promise<string[]> {
    const unique = [...new Set(hashes)];
    const present = await Promise.all(unique.map((h) => this.has(h)));
    return unique.filter((_, i) => !present[i]);
  }

  /** Stores a local file's contents; returns its digest and size. */
  async putFile(file: string): Promise<{ hash: string; size: number }> {
    // Most files of a deploy are already here (uploaded as blobs, or unchanged
    // since the last version): hash first, write only what is new.
    const digest = crypto.createHash('sha256');
    let size = 0;
    for await (const chunk of createReadStream(file)) {
      digest.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    const hash = digest.digest('hex');
    if (await this.has(hash)) return { hash, size };
    return this.#ingest(createReadStream(file), hash, Number.MAX_SAFE_INTEGER);
  }

  /**
   * Streams `source` to disk while hashing it; the blob appears only when
   * the bytes hash to `expected`, and never past `maxBytes` on disk.
   */
  putStream(expected: string, source: Readable | AsyncIterable<Uint8Array>, maxBytes: number): Promise<{ hash: string; size: number }> {
    if (!SHA256_HEX.test(expected)) throw new BlobHashMismatchError(`not a sha256 hex digest: ${expected}`);
    return this.#ingest(source, expected, maxBytes);
  }

  /** Puts the blob at `target`: a hard link where possible, a copy for executables (a link shares the blob's read-only, non-executable mode). */
  async linkInto(hash: string, target: string, executable = false): Promise<void> {
    await fs.mkdir(path.dirname(target), { recursive: true });
    const blob = this.path(hash);
    if (!executable) {
      try {
        await fs.link(blob, target);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw err;
      }
    }
    await fs.copyFile(blob, target);
    await fs.chmod(target, executable ? 0o755 : 0o644);
  }

  async #ingest(source: Readable | AsyncIterable<Uint8Array>, expected: string | undefined, maxBytes: number): Promise<{ hash: string; size: number }> {
    await fs.mkdir(this.root, { recursive: true });
    const tmp = path.join(this.root, `.incoming-${process.pid}-${crypto.randomBytes(6).toString('hex')}`);
    const digest = crypto.createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > maxBytes) return done(new BlobTooLargeError(`the blob is larger than ${maxBytes} bytes`));
        digest.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(source, meter, createWriteStream(tmp, { mode: 0o444 }));
      const hash = digest.digest('hex');
      if (expected !== undefined && hash !== expected) throw new BlobHashMismatchError(`the uploaded bytes hash to ${hash}, not ${expected}`);
      const final = this.path(hash);
      await fs.mkdir(path.dirname(final), { recursive: true });
      // Same bytes, same name: whoever renames last replaces an identical file.
      await fs.rename(tmp, final);
      return { hash, size };
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
  }
}
