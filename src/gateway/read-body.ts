import { InvalidInputError } from '../errors.ts';
import { PayloadTooLargeError } from '../deploy/deploy-errors.ts';
import type { z } from 'zod';
import { zodMessage } from '../schemas/zod-message.ts';

/**
 * The request body, refused with 413 as soon as it is known to exceed
 * `maxBytes`: from Content-Length up front, or while streaming a chunked body,
 * so an oversized upload is never buffered whole.
 */
export async function readBody(request: Request, maxBytes: number, what = 'request body'): Promise<Buffer> {
  const tooLarge = () => new PayloadTooLargeError(`the ${what} is larger than the limit of ${maxBytes} bytes`);
  const declared = Number(request.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge();
  if (!request.body) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size);
}

/** Parses a JSON body against `schema`; every failure is a 400 with a one-line reason. */
export function parseJsonBody<S extends z.ZodType>(schema: S, body: Buffer, subject: string, options: { emptyAs?: unknown } = {}): z.infer<S> {
  let json: unknown;
  if (body.length === 0 && 'emptyAs' in options) json = options.emptyAs;
  else {
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      throw new InvalidInputError(`the ${subject} is not valid JSON`);
    }
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new InvalidInputError(zodMessage(parsed.error, subject));
  return parsed.data;
}
