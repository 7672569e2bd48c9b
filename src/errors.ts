/**
 * Every error that crosses a boundary (HTTP, CLI, queue) is a SnapfnError:
 * a stable machine-readable `code`, an HTTP `status`, and a one-line message.
 */
export class SnapfnError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details?: unknown;

  constructor(code: string, status: number, message: string, options?: { cause?: unknown; details?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.details = options?.details;
  }

  toJSON(): { error: { code: string; message: string; details?: unknown } } {
    return { error: { code: this.code, message: this.message, ...(this.details === undefined ? {} : { details: this.details }) } };
  }
}

/**
 * A client's value as an error message echoes it back: at most `max`
 * characters, then an ellipsis (a 10 KB function name in a URL is not
 * returned whole, nor written whole to the log).
 */
export function echo(value: string, max = 64): string {
  const chars = Array.from(value);
  return chars.length <= max ? value : `${chars.slice(0, max).join('')}…`;
}

export class InvalidInputError extends SnapfnError {
  constructor(message: string, details?: unknown) {
    super('invalid_input', 400, message, { details });
  }
}

export class NotFoundError extends SnapfnError {
  constructor(message: string) {
    super('not_found', 404, message);
  }
}

export class CapacityError extends SnapfnError {
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds = 1) {
    super('over_capacity', 429, message);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** The handler threw or rejected; the sandbox itself is fine. */
export class HandlerError extends SnapfnError {
  constructor(message: string, readonly handlerStack?: string) {
    super('handler_error', 502, message);
  }
}

/** The sandbox died or stopped answering mid-invocation. */
export class SandboxCrashedError extends SnapfnError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('sandbox_crashed', 502, message, options);
  }
}

export class InvocationTimeoutError extends SnapfnError {
  constructor(timeoutMs: number) {
    super('timeout', 504, `handler did not finish within ${timeoutMs} ms; its sandbox was killed`);
  }
}

/** Restoring a sandbox from its template failed (after the retry). */
export class RestoreFailedError extends SnapfnError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('restore_failed', 503, message, options);
  }
}

export class TemplateBuildError extends SnapfnError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('template_build_failed', 422, message, options);
  }
}

/** A native addon of the function needs a shared library the sandbox cannot give it (found before any boot). */
export class NativeLibraryMissingError extends SnapfnError {
  constructor(message: string, missing: Array<{ file: string; library: string; addon?: string }>) {
    super('native_library_missing', 400, message, { details: { missing } });
  }
}
