import { createReadStream } from 'node:fs';
import type { HashedDirectory } from '../../src/deploy/pack-directory.ts';
import { BlobsMissingResponse } from '../../src/schemas/api.ts';
import { CliError } from './cli-error.ts';
import { httpErrorOf, type GatewayClient } from './client.ts';

/** Uploads in flight at once: enough to hide a round trip per small file, few enough not to crowd the gateway. */
const PARALLEL_UPLOADS = 4;

export interface UploadProgress {
  /** Blobs the gateway lacked, and their bytes. */
  blobs: number;
  bytes: number;
  uploadedBlobs: number;
  uploadedBytes: number;
}

/**
 * The first `size` bytes of `file` as a request body, read only as fast as
 * it is sent; a file that grew since it was hashed then fails the hash
 * check on the gateway, which says so, instead of a length mismatch.
 */
function fileStream(file: string, size: number, onChunk: (chunk: Buffer) => void): ReadableStream<Uint8Array> {
  if (size === 0) return new ReadableStream({ start: (controller) => controller.close() });
  const chunks = createReadStream(file, { end: size - 1 })[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await chunks.next();
      if (done) return controller.close();
      onChunk(value);
      controller.enqueue(value);
    },
    async cancel() {
      await chunks.return?.();
    },
  });
}

async function missingBlobs(client: GatewayClient, hashes: string[]): Promise<string[]> {
  const res = await client.fetch('POST', '/v1/blobs/missing', { json: { blobs: hashes } });
  if (res.status === 404) throw new CliError(`this gateway (${client.baseUrl}) has no /v1/blobs endpoint; upgrade snapfn`);
  if (!res.ok) throw await httpErrorOf(res);
  const parsed = BlobsMissingResponse.safeParse(await res.json().catch(() => undefined));
  if (!parsed.success) throw new CliError('unexpected answer from POST /v1/blobs/missing');
  return parsed.data.missing;
}

/**
 * Sends the contents of `dir` that the gateway does not have yet, each
 * streamed from its file, a few at a time. `onStart` hears what is missing
 * before anything is sent; `onProgress` hears the bytes as they go.
 */
export async function uploadMissingBlobs(
  client: GatewayClient,
  dir: HashedDirectory,
  on: { start?: (p: UploadProgress) => void; progress?: (p: UploadProgress) => void } = {},
): Promise<UploadProgress> {
  const sizes = new Map(dir.manifest.map((e) => [e.sha256, e.size]));
  const missing = await missingBlobs(client, [...dir.fileOf.keys()]);
  const progress: UploadProgress = { blobs: missing.length, bytes: missing.reduce((n, h) => n + (sizes.get(h) ?? 0), 0), uploadedBlobs: 0, uploadedBytes: 0 };
  on.start?.({ ...progress });

  const upload = async (hash: string) => {
    const file = dir.fileOf.get(hash)!;
    const size = sizes.get(hash) ?? 0;
    const counted = (chunk: Buffer) => {
      progress.uploadedBytes += chunk.length;
      on.progress?.({ ...progress });
    };
    const res = await client.fetch('PUT', `/v1/blobs/${hash}`, {
      body: fileStream(file, size, counted),
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
    });
    if (res.ok) {
      await res.body?.cancel();
      progress.uploadedBlobs++;
      on.progress?.({ ...progress });
      return;
    }
    const error = await httpErrorOf(res);
    if (error.code === 'hash_mismatch') throw new CliError(`${file} changed while it was being deployed; run fn deploy again`);
    throw error;
  };

  let next = 0;
  const lanes = Array.from({ length: Math.min(PARALLEL_UPLOADS, missing.length) }, async () => {
    while (next < missing.length) await upload(missing[next++]!);
  });
  await Promise.all(lanes);
  return progress;
}
