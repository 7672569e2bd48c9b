import type { HandlerFailure, InvocationOutcome, StreamingOutcome, StreamingRequest } from '../../schemas/invocation.ts';
import type { InvokeOptions } from '../driver.ts';
import { EnvdClosedError, EnvdTimeoutError, type EnvdConnection, type EnvdResult } from './envd-connection.ts';

/** Grace on top of the handler's timeout before the host stops waiting for envd and kills the sandbox. */
export const HARD_TIMEOUT_GRACE_MS = 1000;

/** The response limit when the caller sets none (SNAPFN_MAX_RESPONSE_BYTES' default). */
export const DEFAULT_MAX_RESPONSE_BYTES = 100 * 1024 * 1024;

export interface EnvdInvocationEnd {
  outcome: InvocationOutcome;
  /** False after a timeout (the handler may still hold work in flight) or a dead channel: never reuse. */
  reusable: boolean;
  /** envd itself stopped answering (a synchronous loop never yields): only killing the sandbox stops it. */
  hardTimeout: boolean;
}

/** How a sandbox that died mid-invocation is reported: `out_of_memory` only when the driver saw the OOM kill itself. */
export interface CrashReport {
  code: 'sandbox_crashed' | 'out_of_memory';
  message: string;
}

export function crashedOutcome(message: string, code: CrashReport['code'] = 'sandbox_crashed'): InvocationOutcome {
  return { ok: false, error: { code, message }, logs: [], logsTruncated: false };
}

const FAILURE_CODES = new Set<HandlerFailure['code']>(['handler_error', 'timeout', 'sandbox_crashed', 'out_of_memory', 'restore_failed', 'invalid_response', 'response_too_large', 'cancelled']);

function failureOf(result: EnvdResult): HandlerFailure {
  const error = result.error ?? { code: 'handler_error', message: 'the handler failed' };
  // Load errors (invalid_handler, native_library_missing...) reach the client as handler errors with their own words.
  const code = FAILURE_CODES.has(error.code as HandlerFailure['code']) ? (error.code as HandlerFailure['code']) : 'handler_error';
  return { code, message: error.message, ...(error.name ? { name: error.name } : {}), ...(error.stack ? { stack: error.stack } : {}) };
}

async function readAll(body: ReadableStream<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/**
 * One invocation over envd, every driver alike: each way it can end becomes
 * an outcome. With `options.stream` the outcome comes as soon as the
 * response head does, its body as a stream (a StreamingOutcome), unless the
 * body had already ended by then; otherwise the body is read whole first
 * (queued invocations, eval, tests).
 * `explainCrash` lets a driver add what it knows of a dead sandbox.
 */
export async function invokeThroughEnvd(
  connection: EnvdConnection,
  request: StreamingRequest,
  options: InvokeOptions,
  explainCrash: (why: string) => Promise<CrashReport> = async (why) => ({ code: 'sandbox_crashed', message: why }),
): Promise<EnvdInvocationEnd> {
  const timedOut = (): EnvdInvocationEnd => ({
    outcome: { ok: false, error: { code: 'timeout', message: `handler did not finish within ${options.timeoutMs} ms; its sandbox was killed` }, logs: [], logsTruncated: false },
    reusable: false,
    hardTimeout: true,
  });
  const failed = async (err: unknown): Promise<EnvdInvocationEnd> => {
    if (err instanceof EnvdTimeoutError) return timedOut();
    const why = err instanceof EnvdClosedError ? 'the sandbox died during the invocation' : String(err);
    const crash = await explainCrash(why);
    return { outcome: crashedOutcome(crash.message, crash.code), reusable: false, hardTimeout: false };
  };
  const invocation = { id: options.invocationId, functionName: options.functionName ?? 'function', memoryMb: options.memoryMb ?? 256, env: options.env, ...(options.version !== undefined ? { version: options.version } : {}) };
  const body = request.bodyStream ?? (request.bodyBase64 !== undefined ? Buffer.from(request.bodyBase64, 'base64') : undefined);
  const limits = { timeoutMs: options.timeoutMs, hardTimeoutMs: options.timeoutMs + HARD_TIMEOUT_GRACE_MS, maxResponseBytes: options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES };
  try {
    const reply = await connection.invoke({ method: request.method, url: request.url, headers: request.headers }, body, invocation, limits);
    if (!reply.head) {
      const result = await reply.result;
      const failure = failureOf(result);
      return { outcome: { ok: false, error: failure, logs: result.logs, logsTruncated: result.logsTruncated }, reusable: failure.code !== 'timeout', hardTimeout: false };
    }
    const { status, headers } = reply.head;
    // A response that is already whole leaves as one (a length, no chunking, the sandbox free at once).
    if (options.stream && !reply.head.complete) {
      const completion = reply.result.then(
        (result): InvocationOutcome =>
          result.ok ? { ok: true, response: { status, headers, bodyBase64: '' }, logs: result.logs, logsTruncated: result.logsTruncated } : { ok: false, error: failureOf(result), logs: result.logs, logsTruncated: result.logsTruncated },
        async (err: unknown) => (await failed(err)).outcome,
      );
      const outcome: StreamingOutcome = { ok: true, response: { status, headers, bodyBase64: '' }, logs: [], logsTruncated: false, body: reply.head.body, completion };
      return { outcome, reusable: true, hardTimeout: false };
    }
    const [bytes, result] = await Promise.all([readAll(reply.head.body).catch(() => undefined), reply.result]);
    if (!result.ok || bytes === undefined) {
      const failure = failureOf(result);
      return { outcome: { ok: false, error: failure, logs: result.logs, logsTruncated: result.logsTruncated }, reusable: failure.code !== 'timeout', hardTimeout: false };
    }
    return { outcome: { ok: true, response: { status, headers, bodyBase64: bytes.toString('base64') }, logs: result.logs, logsTruncated: result.logsTruncated }, reusable: true, hardTimeout: false };
  } catch (err) {
    return failed(err);
  }
}
