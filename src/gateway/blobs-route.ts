import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { createRoute, z } from '@hono/zod-openapi';
import { SnapfnError } from '../errors.ts';
import { PayloadTooLargeError } from '../deploy/deploy-errors.ts';
import { BlobHashMismatchError, BlobTooLargeError } from '../registry/blob-store.ts';
import type { BlobStored, BlobsMissingResponse } from '../schemas/api.ts';
import { BlobsMissingRequest, BlobsMissingResponse as MissingSchema, BlobStored as StoredSchema, Bytes, errors, INVALID, json, ok, OPERATOR_ERRORS } from './api-components.ts';
import { declareRoute, type GatewayApp } from './declare.ts';
import type { GatewayDeps } from './env.ts';

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

const BlobName = z.object({
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'the blob name must be the sha256 of its bytes, 64 lowercase hex digits').openapi({ description: 'sha256 of the bytes, 64 lowercase hex digits' }),
});

const missingRoute = createRoute({
  method: 'post',
  path: '/v1/blobs/missing',
  tags: ['deploy'],
  summary: 'Which of these file contents (sha256) the server does not have yet',
  request: { body: { required: true, content: json(BlobsMissingRequest) } },
  responses: { 200: ok(MissingSchema), ...errors({ ...INVALID, ...OPERATOR_ERRORS, 413: 'Body over 4 MiB (code payload_too_large)' }) },
});

const putRoute = createRoute({
  method: 'put',
  path: '/v1/blobs/{sha256}',
  tags: ['deploy'],
  summary: 'Upload one file content, named by its sha256; streamed to disk and stored only if the bytes hash to the name',
  request: { params: BlobName, body: { required: true, content: { 'application/octet-stream': { schema: Bytes } } } },
  responses: {
    200: ok(StoredSchema, 'Stored (or already there)'),
    ...errors({ 400: 'Not a sha256 name (invalid_input), or the bytes hash to something else (hash_mismatch)', ...OPERATOR_ERRORS, 413: 'Blob over SNAPFN_MAX_DEPLOY_BYTES (code payload_too_large)' }),
  },
});

/**
 * The first half of a deploy by manifest: `POST /v1/blobs/missing` says
 * which contents the server lacks, `PUT /v1/blobs/:sha256` streams one to
 * disk (hashed on the way, never buffered), then `POST /v1/functions` names
 * them in its `manifest`.
 */
export function mountBlobRoutes(app: GatewayApp, deps: GatewayDeps): void {
  declareRoute(
    app,
    missingRoute,
    async (c) => c.json({ missing: await deps.store.blobs.missing(c.req.valid('json').blobs) } satisfies BlobsMissingResponse),
    { body: { maxBytes: MAX_MISSING_BODY, subject: 'blobs request' } },
  );

  declareRoute(app, putRoute, async (c) => {
    const { sha256 } = c.req.valid('param');
    const maxBytes = deps.config.maxDeployBytes;
    const declared = Number(c.req.header('content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge(maxBytes);
    const body = c.req.raw.body ? Readable.fromWeb(c.req.raw.body as NodeReadableStream<Uint8Array>) : Readable.from([]);
    try {
      const { size } = await deps.store.blobs.putStream(sha256, body, maxBytes);
      return c.json({ sha256, size } satisfies BlobStored);
    } catch (err) {
      if (err instanceof BlobHashMismatchError) throw new HashMismatchError(err.message);
      if (err instanceof BlobTooLargeError) throw tooLarge(maxBytes);
      throw err;
    }
  });
}
