import crypto from 'node:crypto';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import type { Context } from 'hono';
import { echo, NotFoundError, SnapfnError } from '../errors.ts';
import type { InvokeResult } from '../orchestrator/types.ts';
import { PayloadTooLargeError } from '../deploy/deploy-errors.ts';
import { FunctionName } from '../schemas/function-config.ts';
import { isStreaming, type StreamingRequest } from '../schemas/invocation.ts';
import { assertOperator } from './auth.ts';
import { declareAnyMethod, useMiddleware, type GatewayApp } from './declare.ts';
import { invokeRoute, invokeWithPathRoute } from './invoke-declaration.ts';
import type { GatewayDeps, GatewayEnv } from './env.ts';
import { toSnapfnError } from './error-response.ts';
import { base64Bytes, loggedTimings } from './log-fields.ts';
import { ERROR_HEADER, INVOCATION_ID_HEADER, respond, respondStreaming } from './outcome-response.ts';
import { invokeQueued, type InvocationContext, type InvokeReply, type LoggedResult } from './queued-invoke.ts';
import { queueRouting } from './queue-routing.ts';
import { readBody } from './read-body.ts';
import { redactor } from '../secrets/redact.ts';
import { toWireRequest } from './wire.ts';
import { roundMs, writeInvocation } from '../invocation/record.ts';

export { ERROR_HEADER, INVOCATION_ID_HEADER, VERSION_HEADER } from './outcome-response.ts';

const tracer = trace.getTracer('snapfn');

/** `ANY /fn/:name[/*]`: one invocation of the function's active version, directly or through the queue. */
export function mountInvokeRoutes(app: GatewayApp, deps: GatewayDeps): void {
  useMiddleware(app, '/fn/*', async (c, next) => {
    c.set('invocationId', crypto.randomUUID());
    await next();
    // Read back after the handler: a queued invocation's id is the one enqueue
    // returned (with an Idempotency-Key, the first request's).
    const headers: Array<[string, string]> = [[INVOCATION_ID_HEADER, c.get('invocationId')]];
    if (c.error) headers.push([ERROR_HEADER, toSnapfnError(c.error, () => {}).code]);
    try {
      for (const [k, v] of headers) c.res.headers.set(k, v);
    } catch {
      // Immutable headers (a Response built elsewhere): copy it once.
      c.res = new Response(c.res.body, c.res);
      for (const [k, v] of headers) c.res.headers.set(k, v);
    }
  });
  const handle = (c: Context<GatewayEnv>) => invoke(c, deps);
  declareAnyMethod(app, invokeRoute, handle);
  declareAnyMethod(app, invokeWithPathRoute, handle, '/fn/:name/*');
}

async function invoke(c: Context<GatewayEnv>, deps: GatewayDeps): Promise<Response> {
  const { engine, store, config } = deps;
  const name = c.req.param('name') ?? '';
  const serving = FunctionName.safeParse(name).success ? await store.serving(name) : undefined;
  if (!serving) throw new NotFoundError(`no function named ${echo(name)}`);
  const requireAuth = serving.version.config.requireAuth;
  if (requireAuth) assertOperator(c, config.apiKey);
  const routing = queueRouting(c.req.raw);
  const mayQueue = routing.async || routing.idempotencyKey !== undefined || deps.queue !== undefined;
  // A body of declared length streams into the handler (limit checked up
  // front); a queued invocation needs its body whole, and so does a chunked
  // one, whose size is only known at its end.
  const declared = Number(c.req.raw.headers.get('content-length') ?? NaN);
  const streamBody = !(routing.async || routing.idempotencyKey !== undefined) && c.req.raw.body !== null && Number.isFinite(declared);
  if (streamBody && declared > config.maxBodyBytes) throw new PayloadTooLargeError(`the request body is larger than the limit of ${config.maxBodyBytes} bytes`);
  const body = streamBody ? Buffer.alloc(0) : await readBody(c.req.raw, config.maxBodyBytes);
  // The operator's key was for snapfn, not for the handler.
  const wireOptions = { ...(requireAuth ? { dropHeaders: ['authorization'] } : {}), ...(routing.handlerUrl ? { url: routing.handlerUrl } : {}) };
  const wire: StreamingRequest = { ...toWireRequest(c.req.raw, body, wireOptions), ...(streamBody && declared > 0 ? { bodyStream: c.req.raw.body! } : {}) };
  const redact = redactor(serving.secretValues);
  const attributes = { 'fn.name': name, 'fn.version': serving.version.version, 'invocation.id': c.get('invocationId') };

  return tracer.startActiveSpan('gateway', { attributes }, async (span) => {
    const started = performance.now();
    const record = (entry: LoggedResult) =>
      writeInvocation(
        { store, log: deps.log },
        name,
        {
          id: c.get('invocationId'),
          time: new Date().toISOString(),
          version: serving.version.version,
          method: c.req.method,
          path: c.req.path,
          durationMs: roundMs(performance.now() - started),
          requestBytes: streamBody ? declared : body.length,
          ...entry,
        },
        redact,
      );
    const ctx: InvocationContext = { c, deps, name, serving, wire, redact, record, started };
    try {
      // Decided and started in one synchronous step: the engine reserves its
      // place inside invoke() before yielding, so concurrent requests cannot
      // all read the same free place.
      const queued = routing.async || routing.idempotencyKey !== undefined || (mayQueue && deps.queue !== undefined && engine.freeCapacity(name) <= 0);
      // The queue keeps bodies in Redis: one that was meant to stream is read whole first.
      if (queued && wire.bodyStream) {
        const { bodyStream, ...head } = wire;
        ctx.wire = { ...head, ...(await bodyOf(bodyStream, config.maxBodyBytes)) };
      }
      const { response, error } = queued ? await invokeQueued(ctx, routing) : await invokeDirect(ctx);
      span.setAttribute('invocation.id', c.get('invocationId'));
      span.setAttribute('http.response.status_code', response.status);
      if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: error.code });
      return response;
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof SnapfnError ? err.code : 'error' });
      throw err;
    } finally {
      span.end();
    }
  });
}

async function bodyOf(stream: ReadableStream<Uint8Array>, maxBytes: number): Promise<{ bodyBase64?: string }> {
  const bytes = await readBody(new Request('http://body/', { method: 'POST', body: stream, duplex: 'half' } as RequestInit), maxBytes);
  return bytes.length > 0 ? { bodyBase64: bytes.toString('base64') } : {};
}

/** The engine runs it here and now; the gateway logs it (a streamed response once its last byte is out). */
async function invokeDirect(ctx: InvocationContext): Promise<InvokeReply> {
  const { deps, name, serving, wire, redact, record, started, c } = ctx;
  let result: InvokeResult;
  try {
    result = await deps.engine.invoke(serving.deployment, wire, { invocationId: c.get('invocationId'), stream: true });
  } catch (err) {
    const error = toSnapfnError(err, deps.log);
    deps.metrics?.recordRejected(name, error.code, performance.now() - started);
    await record({ status: error.status, ok: false, error: { code: error.code, message: error.message }, logs: [], logsTruncated: false });
    throw error;
  }
  const { outcome } = result;
  if (isStreaming(outcome)) {
    const outgoing = c.env?.outgoing;
    const reply = respondStreaming(outcome, serving.version.version, started, outgoing ? () => outgoing.destroy() : undefined);
    void reply.finished.then(async ({ end, bytes, ttfbMs }) => {
      deps.metrics?.recordInvocation(name, end, result.timings, performance.now() - started);
      const error = end.ok ? undefined : { code: end.error.code, message: redact(end.error.message), ...(end.error.stack ? { stack: end.error.stack } : {}) };
      const streamed = { responseBytes: bytes, ...(ttfbMs !== undefined ? { ttfbMs } : {}), timings: loggedTimings(result.timings) };
      await record({ status: reply.response.status, ok: end.ok, ...(error ? { error } : {}), logs: end.logs, logsTruncated: end.logsTruncated, ...streamed });
    });
    return { response: reply.response };
  }
  deps.metrics?.recordInvocation(name, outcome, result.timings, performance.now() - started);
  const reply = respond(outcome, serving.version.version, redact);
  const error = reply.error && !outcome.ok && outcome.error.stack ? { ...reply.error, stack: outcome.error.stack } : reply.error;
  const measured = { ...(outcome.ok ? { responseBytes: base64Bytes(outcome.response.bodyBase64) } : {}), timings: loggedTimings(result.timings) };
  // Not awaited: the entry is queued for the log now (reads wait behind it) and its write is not the caller's wait.
  void record({ status: reply.response.status, ok: error === undefined, ...(error ? { error } : {}), logs: outcome.logs, logsTruncated: outcome.logsTruncated, ...measured });
  return reply;
}
