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
