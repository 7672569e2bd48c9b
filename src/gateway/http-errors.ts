import { SnapfnError } from '../errors.ts';

export class UnauthorizedError extends SnapfnError {
  constructor(message: string) {
    super('unauthorized', 401, message);
  }
}

export class ForbiddenError extends SnapfnError {
  constructor(message: string) {
    super('forbidden', 403, message);
  }
}

export class InternalError extends SnapfnError {
  constructor() {
    super('internal_error', 500, 'internal error; see the gateway log');
  }
}

/** Async and Idempotency-Key invocations need the queue, which this gateway was started without. */
export class QueueDisabledError extends SnapfnError {
  constructor(what: string) {
    super('queue_disabled', 501, `${what} needs the queue, and this gateway runs without one`);
  }
}

/** Request headers over node's limit (--max-http-header-size, 16 KiB in all by default); node's parser refuses them before the app runs. */
export class HeadersTooLargeError extends SnapfnError {
  constructor() {
    super('headers_too_large', 431, 'the request headers are larger than this gateway accepts (16 KiB in all by default)');
  }
}

/** Not parseable as HTTP/1.1 (node's parser said so). */
export class MalformedRequestError extends SnapfnError {
  constructor(message = 'the request is not valid HTTP/1.1') {
    super('bad_request', 400, message);
  }
}

/** The request's head did not arrive within node's headers timeout. */
export class RequestTimeoutError extends SnapfnError {
  constructor() {
    super('request_timeout', 408, 'the request did not arrive in time');
  }
}
