import type { WireRequest, WireResponse } from '../schemas/invocation.ts';

/** Connection-level headers describe one hop; they must not be forwarded to the handler or back to the client. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-authorization']);

/** Only the scheduler sets these (a handler trusts them to tell a cron tick from a call): never from a client. */
const TRIGGER_HEADERS = ['x-fn-trigger', 'x-fn-schedule'];

const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

/** `url` replaces the request's own (the gateway consumes some query flags). */
export function toWireRequest(request: Request, body: Buffer, options: { dropHeaders?: string[]; url?: string } = {}): WireRequest {
  const drop = new Set([...HOP_BY_HOP, ...TRIGGER_HEADERS, ...(options.dropHeaders ?? [])]);
  const headers: Array<[string, string]> = [];
  for (const [name, value] of request.headers) if (!drop.has(name)) headers.push([name, value]);
  const hasBody = body.length > 0 && request.method !== 'GET' && request.method !== 'HEAD';
  return { method: request.method, url: options.url ?? request.url, headers, ...(hasBody ? { bodyBase64: body.toString('base64') } : {}) };
}

export class InvalidWireResponseError extends Error {
  override readonly name = 'InvalidWireResponseError';
}

/**
 * The handler's response as a real Response (its body from `body` when it
 * streams); throws InvalidWireResponseError for headers no HTTP response can carry.
 */
export function fromWireResponse(wire: WireResponse, extraHeaders: Record<string, string>, body?: ReadableStream<Uint8Array>): Response {
  const headers = new Headers();
  try {
    for (const [name, value] of wire.headers) {
      const lower = name.toLowerCase();
      // content-length is recomputed from the body we actually send.
      if (HOP_BY_HOP.has(lower) || lower === 'content-length') continue;
      headers.append(name, value);
    }
  } catch (err) {
    throw new InvalidWireResponseError(`the handler returned an invalid header: ${(err as Error).message}`);
  }
  for (const [name, value] of Object.entries(extraHeaders)) headers.set(name, value);
  if (NULL_BODY_STATUSES.has(wire.status)) {
    void body?.cancel().catch(() => {});
    return new Response(null, { status: wire.status, headers });
  }
  return new Response(body ?? Buffer.from(wire.bodyBase64, 'base64'), { status: wire.status, headers });
}
