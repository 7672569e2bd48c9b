import type { MiddlewareHandler } from 'hono';
import type { z } from 'zod';
import { InvalidInputError } from '../errors.ts';
import { PayloadTooLargeError } from '../deploy/deploy-errors.ts';
import { zodMessage } from '../schemas/zod-message.ts';

/*
 * The gateway's one body reader. Not hono/body-limit: that one trusts
 * Content-Length and passes the stream on unread (the limit then rests on
 * the reader after it), leaves an oversized chunked upload uncancelled, and
 * has a plain-text 413 of its own; here the cap is applied while reading and
 * a refused upload is cancelled at once.
 */

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

export interface JsonBodyRule {
  /** Read per request: tests (and the config) may change the limit it comes from. */
  maxBytes: number | (() => number);
  /** What messages call the body: "invalid deploy request: ...", "the deploy request is larger than ...". */
  subject: string;
  /** The value of an empty body (absent: an empty body is invalid JSON). */
  emptyAs?: unknown;
}

/** A declared JSON body, read with readBody and validated; the handler gets it from `c.req.valid('json')`. */
export function jsonBody(schema: z.ZodType, rule: JsonBodyRule): MiddlewareHandler {
  return async (c, next) => {
    const maxBytes = typeof rule.maxBytes === 'function' ? rule.maxBytes() : rule.maxBytes;
    const body = await readBody(c.req.raw, maxBytes, rule.subject);
    const options = 'emptyAs' in rule ? { emptyAs: rule.emptyAs } : {};
    c.req.addValidatedData('json', parseJsonBody(schema, body, rule.subject, options) as object);
    await next();
  };
}
