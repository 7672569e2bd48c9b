import { HTTPException } from 'hono/http-exception';
import { z } from 'zod';
import { CapacityError, InvalidInputError, SnapfnError } from '../errors.ts';
import type { ErrorBody } from '../schemas/api.ts';
import { zodMessage } from '../schemas/zod-message.ts';
import { diskFullDetail, StorageFullError } from '../registry/disk-full.ts';
import { InternalError, UnauthorizedError } from './http-errors.ts';

/** Whatever was thrown, as the SnapfnError the client will see. Unknown errors become a bare 500 (and are logged, not shown). */
export function toSnapfnError(err: unknown, log: (message: string) => void = console.error): SnapfnError {
  if (err instanceof SnapfnError) return err;
  const full = diskFullDetail(err);
  if (full) {
    log(`snapfn gateway: out of disk space: ${(err as Error)?.message ?? String(err)}`);
    return new StorageFullError(full);
  }
  if (err instanceof z.ZodError) return new InvalidInputError(zodMessage(err));
  if (err instanceof HTTPException) {
    const code = err.status === 413 ? 'payload_too_large' : err.status === 404 ? 'not_found' : err.status < 500 ? 'bad_request' : 'internal_error';
    return new SnapfnError(code, err.status, err.message || 'request failed');
  }
  log(`snapfn gateway: unexpected error: ${(err as Error)?.stack ?? String(err)}`);
  return new InternalError();
}

export function errorBody(err: SnapfnError): ErrorBody {
  return err.toJSON();
}

/** The one JSON shape every error response of the gateway has, with the headers its status calls for. */
export function errorResponse(err: SnapfnError, extraHeaders: Record<string, string> = {}): Response {
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8', ...extraHeaders };
  if (err instanceof CapacityError) headers['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfterSeconds)));
  if (err instanceof UnauthorizedError) headers['www-authenticate'] = 'Bearer realm="snapfn"';
  return new Response(JSON.stringify(errorBody(err)), { status: err.status, headers });
}
