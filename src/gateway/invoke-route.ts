import crypto from 'node:crypto';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import type { Context, Hono } from 'hono';
import { NotFoundError, SnapfnError } from '../errors.ts';
import type { InvokeResult } from '../orchestrator/types.ts';
import type { ServingVersion } from '../registry/function-store.ts';
import type { InvocationLogEntry } from '../schemas/api.ts';
import { FunctionName } from '../schemas/function-config.ts';
import type { HandlerFailure, InvocationOutcome } from '../schemas/invocation.ts';
import { assertOperator } from './auth.ts';
import type { GatewayDeps, GatewayEnv } from './env.ts';
import { errorResponse, toSnapfnError } from './error-response.ts';
import { readBody } from './read-body.ts';
import { redactor } from './redact.ts';
import { fromWireResponse, InvalidWireResponseError, toWireRequest } from './wire.ts';

const tracer = trace.getTracer('snapfn');

export const INVOCATION_ID_HEADER = 'X-Fn-Invocation-Id';
export const VERSION_HEADER = 'X-Fn-Version';
/** Marks errors produced by snapfn itself, so a client can tell them from a handler's own 5xx. */
export const ERROR_HEADER = 'X-Fn-Error';

const FAILURE_STATUS: Record<HandlerFailure['code'], number> = {
  handler_error: 502,
  sandbox_crashed: 502,
  invalid_response: 502,
  timeout: 504,
  restore_failed: 503,
};

function failureResponse(code: string, status: number, message: string): Response {
  return errorResponse(new SnapfnError(code, status, message), { [ERROR_HEADER]: code });
}

/** `ANY /fn/:name[/*]`: one invocation of the function's active version. */
export function mountInvokeRoutes(app: Hono<GatewayEnv>, deps: GatewayDeps): void {
  app.use('/fn/*', async (c, next) => {
    const invocationId = crypto.randomUUID();
    c.set('invocationId', invocationId);
    await next();
    const headers: Array<[string, string]> = [[INVOCATION_ID_HEADER, invocationId]];
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
  app.all('/fn/:name', handle);
  app.all('/fn/:name/*', handle);
}

async function invoke(c: Context<GatewayEnv>, deps: GatewayDeps): Promise<Response> {
  const { engine, store, config } = deps;
  const name = c.req.param('name') ?? '';
  const serving = FunctionName.safeParse(name).success ? await store.serving(name) : undefined;
  if (!serving) throw new NotFoundError(`no function named ${name}`);
  const requireAuth = serving.version.config.requireAuth;
  if (requireAuth) assertOperator(c, config.apiKey);
  const body = await readBody(c.req.raw, config.maxBodyBytes);
  // The operator's key was for snapfn, not for the handler.
  const wire = toWireRequest(c.req.raw, body, requireAuth ? { dropHeaders: ['authorization'] } : {});
  const invocationId = c.get('invocationId');
  const redact = redactor(serving.secretValues);
  const attributes = { 'fn.name': name, 'fn.version': serving.version.version, 'invocation.id': invocationId };

  return tracer.startActiveSpan('gateway', { attributes }, async (span) => {
    const started = performance.now();
    const record = (entry: Pick<InvocationLogEntry, 'status' | 'ok' | 'error' | 'logs' | 'logsTruncated'>) =>
      store.logs
        .append(name, {
          id: invocationId,
          time: new Date().toISOString(),
          version: serving.version.version,
          method: c.req.method,
          path: c.req.path,
          durationMs: Math.round((performance.now() - started) * 10) / 10,
          ...entry,
          ...(entry.error ? { error: { code: entry.error.code, message: redact(entry.error.message) } } : {}),
          logs: entry.logs.map((line) => ({ ...line, text: redact(line.text) })),
        })
        .catch((err) => (deps.log ?? console.error)(`snapfn gateway: could not append to the log of ${name}: ${(err as Error).message}`));
    try {
      let result: InvokeResult;
      try {
        result = await engine.invoke(serving.deployment, wire, { invocationId });
      } catch (err) {
        const error = toSnapfnError(err, deps.log);
        deps.metrics?.recordRejected(name, error.code, performance.now() - started);
        await record({ status: error.status, ok: false, error: { code: error.code, message: error.message }, logs: [], logsTruncated: false });
        throw error;
      }
      const { outcome } = result;
      deps.metrics?.recordInvocation(name, outcome, result.timings, performance.now() - started);
      const { response, error } = respond(outcome, serving, redact);
      await record({ status: response.status, ok: error === undefined, ...(error ? { error } : {}), logs: outcome.logs, logsTruncated: outcome.logsTruncated });
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

/** The client's response for an outcome, and the error it represents (if any) for the log. */
function respond(outcome: InvocationOutcome, serving: ServingVersion, redact: (text: string) => string): { response: Response; error?: { code: string; message: string } } {
  const version = String(serving.version.version);
  if (!outcome.ok) {
    const { code } = outcome.error;
    const message = redact(outcome.error.message);
    const response = failureResponse(code, FAILURE_STATUS[code] ?? 502, message);
    response.headers.set(VERSION_HEADER, version);
    return { response, error: { code, message } };
  }
  try {
    return { response: fromWireResponse(outcome.response, { [VERSION_HEADER]: version }) };
  } catch (err) {
    if (!(err instanceof InvalidWireResponseError)) throw err;
    return { response: failureResponse('invalid_response', 502, err.message), error: { code: 'invalid_response', message: err.message } };
  }
}
