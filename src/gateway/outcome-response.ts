import { SnapfnError } from '../errors.ts';
import type { HandlerFailure, InvocationOutcome, StreamingOutcome } from '../schemas/invocation.ts';
import { errorResponse } from './error-response.ts';
import { fromWireResponse, InvalidWireResponseError } from './wire.ts';

export const INVOCATION_ID_HEADER = 'X-Fn-Invocation-Id';
export const VERSION_HEADER = 'X-Fn-Version';
/** Marks errors produced by snapfn itself, so a client can tell them from a handler's own 5xx. */
export const ERROR_HEADER = 'X-Fn-Error';
/** On responses that went through the queue: how long the invocation waited for a sandbox there. */
export const QUEUE_WAIT_HEADER = 'X-Fn-Queue-Wait-Ms';

const FAILURE_STATUS: Record<HandlerFailure['code'], number> = {
  handler_error: 502,
  sandbox_crashed: 502,
  out_of_memory: 502,
  invalid_response: 502,
  timeout: 504,
  restore_failed: 503,
  response_too_large: 502,
  // nginx's "client closed request": nobody reads it, the log does.
  cancelled: 499,
};

/** The HTTP status a failed outcome (or a queue error code) is answered with. */
export function failureStatus(code: string): number {
  return FAILURE_STATUS[code as HandlerFailure['code']] ?? 502;
}

export function failureResponse(code: string, status: number, message: string): Response {
  return errorResponse(new SnapfnError(code, status, message), { [ERROR_HEADER]: code });
}

/**
 * The client's response for a streamed outcome: the body goes out chunk by
 * chunk as the handler produces it. `finished` resolves once the stream is
 * done (or cut: the handler failed, the limit was reached, the client left),
 * with the invocation's final outcome for the log.
 */
export function respondStreaming(
  outcome: StreamingOutcome,
  version: number,
  started: number,
  /** Aborts the client's connection: a body cut part way must not look complete. Absent (no socket): the stream errors instead. */
  cut?: () => void,
): { response: Response; finished: Promise<{ end: InvocationOutcome; bytes: number; ttfbMs?: number }> } {
  let bytes = 0;
  let ttfbMs: number | undefined;
  const reader = outcome.body.getReader();
  const counted = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (err) {
        if (!cut) return controller.error(err);
        // Headers (and maybe bytes) are out: only a broken connection tells the client.
        cut();
        return controller.close();
      }
      if (next.done) return controller.close();
      ttfbMs ??= Math.round((performance.now() - started) * 10) / 10;
      bytes += next.value.length;
      controller.enqueue(next.value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
  let response: Response;
  try {
    response = fromWireResponse(outcome.response, { [VERSION_HEADER]: String(version) }, counted);
  } catch (err) {
    if (!(err instanceof InvalidWireResponseError)) throw err;
    void counted.cancel().catch(() => {});
    response = failureResponse('invalid_response', 502, err.message);
  }
  const finished = outcome.completion.then((end) => ({ end, bytes, ...(ttfbMs !== undefined ? { ttfbMs } : {}) }));
  return { response, finished };
}

/** The client's response for an outcome of `version`, and the error it represents (if any) for the log. */
export function respond(outcome: InvocationOutcome, version: number, redact: (text: string) => string): { response: Response; error?: { code: string; message: string } } {
  if (!outcome.ok) {
    const { code } = outcome.error;
    const message = redact(outcome.error.message);
    const response = failureResponse(code, failureStatus(code), message);
    response.headers.set(VERSION_HEADER, String(version));
    return { response, error: { code, message } };
  }
  try {
    return { response: fromWireResponse(outcome.response, { [VERSION_HEADER]: String(version) }) };
  } catch (err) {
    if (!(err instanceof InvalidWireResponseError)) throw err;
    return { response: failureResponse('invalid_response', 502, err.message), error: { code: 'invalid_response', message: err.message } };
  }
}
