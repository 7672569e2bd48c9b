import type { Context } from 'hono';
import { QueueUnavailableError, QueueWaitTimeoutError } from '../queue/errors.ts';
import type { InvocationJobResult } from '../queue/job-data.ts';
import type { ServingVersion } from '../registry/function-store.ts';
import type { AsyncAccepted, InvocationLogEntry } from '../schemas/api.ts';
import type { WireRequest } from '../schemas/invocation.ts';
import { DEFAULT_MAX_QUEUE_WAIT_MS, type GatewayDeps, type GatewayEnv } from './env.ts';
import { errorResponse, toSnapfnError } from './error-response.ts';
import { QueueDisabledError } from './http-errors.ts';
import { ERROR_HEADER, QUEUE_WAIT_HEADER, respond } from './outcome-response.ts';
import type { QueueRouting } from './queue-routing.ts';
import { redactor } from '../secrets/redact.ts';

/** What the gateway itself writes to the log for an invocation (the rest of the entry is filled in). */
export type LoggedResult = Pick<InvocationLogEntry, 'status' | 'ok' | 'error' | 'logs' | 'logsTruncated'>;

/** One request to /fn/:name, resolved and read. */
export interface InvocationContext {
  c: Context<GatewayEnv>;
  deps: GatewayDeps;
  name: string;
  serving: ServingVersion;
  wire: WireRequest;
  redact: (text: string) => string;
  /** Appends the gateway's own log entry (direct invocations; queued ones refused before they ran). */
  record: (entry: LoggedResult) => Promise<void>;
  /** performance.now() when the gateway started on it. */
  started: number;
}

export interface InvokeReply {
  response: Response;
  /** The error the response stands for, if any (span status). */
  error?: { code: string; message: string };
}

/** Where the status of an invocation can be polled. */
export function invocationLocation(id: string): string {
  return `/v1/invocations/${encodeURIComponent(id)}`;
}

/**
 * Through the queue: async (202 with the id), with an Idempotency-Key, or
 * because this node has no free sandbox. The worker that runs it writes the
 * log entry; the gateway only logs what never ran (queue full, withdrawn).
 * Jobs pin the version that is active now, so a deploy in between does not
 * change what the caller gets.
 */
export async function invokeQueued(ctx: InvocationContext, routing: QueueRouting): Promise<InvokeReply> {
  const { c, deps, name, serving, wire, record, started } = ctx;
  if (!deps.queue) throw new QueueDisabledError(routing.async ? 'an async invocation' : 'an invocation with an Idempotency-Key');
  const { queue } = deps.queue;
  const refused = async (err: unknown) => {
    const error = toSnapfnError(err, deps.log);
    deps.metrics?.recordRejected(name, error.code, performance.now() - started);
    await record({ status: error.status, ok: false, error: { code: error.code, message: error.message }, logs: [], logsTruncated: false });
    return error;
  };

  const maxWaitMs = deps.config.maxQueueWaitMs ?? DEFAULT_MAX_QUEUE_WAIT_MS;
  // Refused (400) before anything is queued: the operator decides where the server may call, not the caller.
  const callbackUrl = routing.callbackUrl === undefined ? undefined : deps.queue.callbacks.check(routing.callbackUrl);
  let id: string;
  try {
    id = await queue.enqueue(
      name,
      {
        invocationId: c.get('invocationId'),
        deployment: { name, version: serving.version.version },
        request: wire,
        mode: routing.async ? 'async' : 'sync',
        ...(callbackUrl !== undefined ? { callbackUrl } : {}),
      },
      { ...(routing.idempotencyKey !== undefined ? { idempotencyKey: routing.idempotencyKey } : {}), ...(routing.async ? {} : { waitMs: maxWaitMs }) },
    );
  } catch (err) {
    throw await refused(err);
  }
  c.set('invocationId', id);
  if (routing.async) return { response: c.json({ id } satisfies AsyncAccepted, 202, { Location: invocationLocation(id) }) };

  let result: InvocationJobResult;
  try {
    result = await queue.waitForResult(id, maxWaitMs, name);
  } catch (err) {
    if (err instanceof QueueUnavailableError) {
      // Redis went away while the caller waited: it hears so now, not at the
      // end of its wait. The job is abandoned (never started by this node,
      // withdrawn when Redis is back), so the gateway logs what the caller got.
      const error = await refused(err);
      return { response: errorResponse(error, { [ERROR_HEADER]: error.code }), error: { code: error.code, message: error.message } };
    }
    if (!(err instanceof QueueWaitTimeoutError)) throw err;
    // Withdrawn (503 queue_timeout): it never ran, so the gateway logs it.
    // Still running (504 result_timeout): its worker will log it; the caller can poll.
    const error = err.code === 'queue_timeout' ? await refused(err) : err;
    const response = errorResponse(error, { [ERROR_HEADER]: error.code, ...(err.code === 'result_timeout' ? { Location: invocationLocation(id) } : {}) });
    return { response, error: { code: error.code, message: error.message } };
  }
  const version = result.version ?? serving.version.version;
  const redact = version === serving.version.version ? ctx.redact : redactor(await deps.store.secretValuesOf(name, version).catch(() => []));
  const reply = respond(result.outcome, version, redact);
  reply.response.headers.set(QUEUE_WAIT_HEADER, String(Math.round(result.timings.queueWaitMs)));
  return reply;
}
