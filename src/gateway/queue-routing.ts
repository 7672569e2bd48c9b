import { InvalidInputError } from '../errors.ts';

/** What a request to /fn/:name asks of the queue. */
export interface QueueRouting {
  /** Answer 202 with the invocation id instead of waiting for the handler. */
  async: boolean;
  idempotencyKey?: string;
  /** The URL the handler sees, when the gateway consumed `async=1` from the query. */
  handlerUrl?: string;
  /** `X-Callback-Url` (OpenFaaS's name): POSTed the result when an async invocation ends. Not yet checked against the allow-list. */
  callbackUrl?: string;
}

const MAX_KEY_LENGTH = 255;
const TRUE = new Set(['1', 'true']);
const FALSE = new Set(['0', 'false']);
const ASYNC_QUERY = /^async=(1|true)$/i;

/**
 * Async is asked for with `X-Fn-Async: 1`, `Prefer: respond-async` (RFC
 * 7240) or `?async=1`; the query flag is removed from the URL the handler
 * sees (it was meant for snapfn). `Idempotency-Key` is passed on to the
 * handler: it can be useful downstream too.
 */
export function queueRouting(request: Request): QueueRouting {
  const header = request.headers.get('x-fn-async')?.trim().toLowerCase();
  if (header !== undefined && !TRUE.has(header) && !FALSE.has(header)) throw new InvalidInputError(`X-Fn-Async must be 1, true, 0 or false, got ${JSON.stringify(header)}`);
  const prefer = (request.headers.get('prefer') ?? '').split(',').some((p) => p.split(';')[0]!.trim().toLowerCase() === 'respond-async');
  const query = request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '';
  const queryAsync = query.split('&').some((p) => ASYNC_QUERY.test(p));
  const key = request.headers.get('idempotency-key')?.trim();
  if (key !== undefined && !/^[\x20-\x7e]{1,255}$/.test(key)) throw new InvalidInputError(`Idempotency-Key must be 1-${MAX_KEY_LENGTH} printable ASCII characters`);
  const async = (header !== undefined && TRUE.has(header)) || prefer || queryAsync;
  const callbackUrl = request.headers.get('x-callback-url')?.trim() || undefined;
  // A caller that waits has its result already; calling it back as well would be a second delivery nobody asked for.
  if (callbackUrl !== undefined && !async) throw new InvalidInputError('X-Callback-Url needs an async invocation (X-Fn-Async: 1)');
  return {
    async,
    ...(key ? { idempotencyKey: key } : {}),
    ...(callbackUrl ? { callbackUrl } : {}),
    ...(queryAsync ? { handlerUrl: withoutAsyncFlag(request.url) } : {}),
  };
}

function withoutAsyncFlag(url: string): string {
  const at = url.indexOf('?');
  const kept = url
    .slice(at + 1)
    .split('&')
    .filter((p) => p !== '' && !ASYNC_QUERY.test(p));
  return kept.length > 0 ? `${url.slice(0, at)}?${kept.join('&')}` : url.slice(0, at);
}
