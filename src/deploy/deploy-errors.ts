import { SnapfnError } from '../errors.ts';

/** esbuild could not bundle the upload (syntax error, unresolved import...). */
export class BundleFailedError extends SnapfnError {
  constructor(message: string) {
    super('bundle_failed', 400, message);
  }
}

/** The upload bundles, but is not a handler (no entry point, no default export). */
export class InvalidHandlerError extends SnapfnError {
  constructor(message: string) {
    super('invalid_handler', 400, message);
  }
}

/** The merged handler + API config does not validate as a FunctionConfig. */
export class InvalidConfigError extends SnapfnError {
  constructor(message: string) {
    super('invalid_config', 400, message);
  }
}

export class PayloadTooLargeError extends SnapfnError {
  constructor(message: string) {
    super('payload_too_large', 413, message);
  }
}

/** An operation that is valid input but impossible in the function's current state. */
export class ConflictError extends SnapfnError {
  constructor(message: string) {
    super('conflict', 409, message);
  }
}
