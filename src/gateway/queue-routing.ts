import { InvalidInputError } from '../errors.ts';
import { InvokeHeaders } from '../schemas/api.ts';
import { zodMessage } from '../schemas/zod-message.ts';

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

const TRUE = new Set(['1', 'true']);
const ASYNC_QUERY = /^async=(1|true)$/i;

/**
 * Async is asked for with `X-Fn-Async: 1`, `Prefer: respond-async` (RFC
 * 7240) or `?async=1`; the query flag is removed from the URL the handler
 * sees (it was meant for snapfn). `Idempotency-Key` is passed on to the
 * handler: it can be useful downstream too.
 */
export function queueRouting(request: Request): QueueRouting {
  // The schema the route is documented with (GET /v1/openapi.json), checked
  // here rather than before the handler: an unknown function is a 404 whatever its headers.
  const read = (name: keyof InvokeHeaders) => request.headers.get(name)?.trim();
  const parsed = InvokeHeaders.safeParse({ 'x-fn-async': read('x-fn-async'), prefer: read('prefer'), 'idempotency-key': read('idempotency-key'), 'x-callback-url': read('x-callback-url') });
  if (!parsed.success) throw new InvalidInputError(zodMessage(parsed.error));
  const header = parsed.data['x-fn-async']?.toLowerCase();
  const prefer = (parsed.data.prefer ?? '').split(',').some((p) => p.split(';')[0]!.trim().toLowerCase() === 'respond-async');
  const query = request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '';
  const queryAsync = query.split('&').some((p) => ASYNC_QUERY.test(p));
  const key = parsed.data['idempotency-key'];
  const async = (header !== undefined && TRUE.has(header)) || prefer || queryAsync;
  const callbackUrl = parsed.data['x-callback-url'] || undefined;
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
