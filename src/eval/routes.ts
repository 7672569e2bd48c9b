import { Hono } from 'hono';
import { CapacityError, InvalidInputError, SnapfnError } from '../errors.ts';
import type { EvalInput } from '../schemas/eval.ts';
import type { EvalService } from './eval-service.ts';

/** Request bodies above this are refused before parsing: 256 KiB of code + 1 MiB stdin + 8 MiB files, JSON-escaped. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

function errorJson(err: SnapfnError): Response {
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' };
  if (err instanceof CapacityError) headers['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfterSeconds)));
  return new Response(JSON.stringify(err.toJSON()), { status: err.status, headers });
}

/** Streams the body with a cap, so an oversized (or endless chunked) upload is never buffered whole. */
async function readJson(request: Request): Promise<unknown> {
  const tooLarge = () => new SnapfnError('payload_too_large', 413, `the request body is larger than ${MAX_BODY_BYTES} bytes`);
  const declared = Number(request.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body?.getReader();
  for (;;) {
    const next = await reader?.read();
    if (!next || next.done) break;
    size += next.value.byteLength;
    if (size > MAX_BODY_BYTES) {
      await reader!.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(next.value);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new InvalidInputError('the request body is not valid JSON');
  }
}

/**
 * `POST /`: evaluate a snippet (mounted by the gateway at /v1/eval).
 *
 * 200 with an EvalResult whenever the code ran, whatever it did (its
 * failures are in `error`); 403 with the same shape when it asked for a
 * network the server does not allow; 400 on invalid input, 429 when the node
 * stays full, 503 when no sandbox could be restored, all as `{ error: { code, message } }`.
 */
export function evalRoutes(service: EvalService): Hono {
  const app = new Hono();
  app.post('/', async (c) => {
    try {
      // evaluate() validates: the body is only typed here, not trusted.
      const result = await service.evaluate((await readJson(c.req.raw)) as EvalInput);
      return c.json(result, result.error?.code === 'network_not_allowed' ? 403 : 200);
    } catch (err) {
      if (err instanceof SnapfnError) return errorJson(err);
      throw err;
    }
  });
  return app;
}
