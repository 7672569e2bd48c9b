import { SnapfnError } from '../errors.ts';
import type { HandlerFailure, InvocationOutcome } from '../schemas/invocation.ts';
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
  invalid_response: 502,
  timeout: 504,
  restore_failed: 503,
};

/** The HTTP status a failed outcome (or a queue error code) is answered with. */
export function failureStatus(code: string): number {
  return FAILURE_STATUS[code as HandlerFailure['code']] ?? 502;
}

export function failureResponse(code: string, status: number, message: string): Response {
  return errorResponse(new SnapfnError(code, status, message), { [ERROR_HEADER]: code });
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
