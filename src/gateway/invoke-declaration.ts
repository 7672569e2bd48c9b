import { z } from '@hono/zod-openapi';
import { AsyncAccepted, Bytes, ErrorBody, FunctionNameParam, InvokeHeaders, InvokeQuery, KEY_OPTIONAL } from './api-components.ts';
import { ERROR_HEADER, INVOCATION_ID_HEADER, QUEUE_WAIT_HEADER, VERSION_HEADER } from './outcome-response.ts';

/* The declaration of ANY /fn/{name} and /fn/{name}/{path} (invoke-route.ts routes them). */

const header = (description: string) => ({ description, schema: { type: 'string' as const } });
const INVOCATION_ID = { [INVOCATION_ID_HEADER]: header('The invocation id, on every answer of /fn (errors included); a queued invocation\'s status is at /v1/invocations/{id}') };
const fnError = (description: string) => ({
  description,
  headers: { ...INVOCATION_ID, [ERROR_HEADER]: header('The error code: set when snapfn itself answered, absent on a handler\'s own 4xx/5xx') },
  content: { 'application/json': { schema: ErrorBody } },
});

/** One declaration for both paths: any method, the headers snapfn reads, every answer it can give. */
function declaration(path: string, params: z.ZodObject, summary: string) {
  return {
    path,
    tags: ['invoke'],
    summary,
    // Open, unless the function has requireAuth: then the operator key.
    security: KEY_OPTIONAL,
    description:
      'Any method (OpenAPI lists each). The request (method, path, query, headers, body up to SNAPFN_MAX_BODY_BYTES) goes to the handler of the active version, whose response is the answer. Direct when this node has a free sandbox; through the queue when async, with an Idempotency-Key, or when the node is full. Functions with requireAuth need the operator key (it is not passed on to the handler).',
    request: { params, query: InvokeQuery, headers: InvokeHeaders, body: { required: false, content: { '*/*': { schema: Bytes } } } },
    responses: {
      200: {
        description: "The handler's response: its status (any, 200 stands for all), headers and body, streamed as it produces it",
        headers: {
          ...INVOCATION_ID,
          [VERSION_HEADER]: header('The version that answered'),
          [QUEUE_WAIT_HEADER]: header('Went through the queue: milliseconds it waited there for a sandbox'),
        },
        content: { '*/*': { schema: Bytes } },
      },
      202: {
        description: 'Async (X-Fn-Async: 1, Prefer: respond-async or ?async=1): queued; poll Location, or get the X-Callback-Url POST',
        headers: { ...INVOCATION_ID, Location: header('/v1/invocations/{id}') },
        content: { 'application/json': { schema: AsyncAccepted } },
      },
      400: fnError('A bad X-Fn-Async, Idempotency-Key or X-Callback-Url (code invalid_input)'),
      401: fnError('requireAuth function without the operator key (code unauthorized)'),
      403: fnError('requireAuth function, no SNAPFN_API_KEY and not a loopback client (code forbidden)'),
      404: fnError('No such function, or none active (code not_found)'),
      413: fnError('Body over SNAPFN_MAX_BODY_BYTES (code payload_too_large)'),
      429: {
        ...fnError('Node full and the queue full too, or over the function\'s maxConcurrency (code over_capacity or queue_full)'),
        headers: { ...fnError('').headers, 'Retry-After': header('Seconds to wait before retrying') },
      },
      501: fnError('Async or Idempotency-Key on a gateway without the queue (code queue_disabled)'),
      502: fnError('The handler threw (handler_error), its sandbox crashed (sandbox_crashed), ran out of memory (out_of_memory) or answered something that is no HTTP response (invalid_response, response_too_large)'),
      503: fnError('No sandbox could be restored (restore_failed), the wait in the queue ran out (queue_timeout) or Redis is down (queue_unavailable)'),
      504: fnError('The handler ran past timeoutMs and was killed (timeout), or a queued invocation is still running at the end of the wait (result_timeout, with Location)'),
    },
  };
}

export const invokeRoute = declaration('/fn/{name}', FunctionNameParam, 'Invoke a function');

export const invokeWithPathRoute = declaration(
  '/fn/{name}/{path}',
  FunctionNameParam.extend({ path: z.string().openapi({ description: 'The rest of the path (may hold "/"): the handler sees the whole URL' }) }),
  'Invoke a function on a sub-path',
);
