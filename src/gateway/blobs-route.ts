import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import type { Hono } from 'hono';
import { InvalidInputError, SnapfnError } from '../errors.ts';
import { PayloadTooLargeError } from '../deploy/deploy-errors.ts';
import { BlobHashMismatchError, BlobTooLargeError } from '../registry/blob-store.ts';
import { BlobsMissingRequest, Sha256Hex, type BlobStored, type BlobsMissingResponse } from '../schemas/api.ts';
import type { GatewayDeps, GatewayEnv } from './env.ts';
import { parseJsonBody, readBody } from './read-body.ts';

/** 50 000 quoted digests and their commas. */
const MAX_MISSING_BODY = 4 * 1024 * 1024;

export class HashMismatchError extends SnapfnError {
  constructor(message: string) {
    super('hash_mismatch', 400, message);
  }
}

function tooLarge(maxBytes: number): PayloadTooLargeError {
  return new PayloadTooLargeError(`the blob is larger than the deploy limit of ${maxBytes} bytes (SNAPFN_MAX_DEPLOY_BYTES)`);
}

/**
 * The first half of a deploy by manifest: `POST /v1/blobs/missing` says
 * which contents the server lacks, `PUT /v1/blobs/:sha256` streams one to
 * disk (hashed on the way, never buffered), then `POST /v1/functions` names
 * them in its `manifest`.
 */
export function mountBlobRoutes(app: Hono<GatewayEnv>, deps: GatewayDeps): void {
  app.post('/v1/blobs/missing', async (c) => {
    const request = parseJsonBody(BlobsMissingRequest, await readBody(c.req.raw, MAX_MISSING_BODY, 'blobs request'), 'blobs request');
    return c.json({ missing: await deps.store.blobs.missing(request.blobs) } satisfies BlobsMissingResponse);
  });

  app.put('/v1/blobs/:sha256', async (c) => {
    const hash = Sha256Hex.safeParse(c.req.param('sha256'));
    if (!hash.success) throw new InvalidInputError('the blob name must be the sha256 of its bytes, 64 lowercase hex digits');
    const maxBytes = deps.config.maxDeployBytes;
    const declared = Number(c.req.header('content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge(maxBytes);
    const body = c.req.raw.body ? Readable.fromWeb(c.req.raw.body as NodeReadableStream<Uint8Array>) : Readable.from([]);
    try {
      const { size } = await deps.store.blobs.putStream(hash.data, body, maxBytes);
      return c.json({ sha256: hash.data, size } satisfies BlobStored);
    } catch (err) {
      if (err instanceof BlobHashMismatchError) throw new HashMismatchError(err.message);
      if (err instanceof BlobTooLargeError) throw tooLarge(maxBytes);
      throw err;
    }
  });
}
