import { z } from '@hono/zod-openapi';
import * as api from '../schemas/api.ts';
import * as gc from '../schemas/gc.ts';
import * as invocation from '../schemas/invocation.ts';

/*
 * The shared schemas of src/schemas/ (the CLI validates with the same ones)
 * under the names they have in GET /v1/openapi.json: a named schema is one
 * entry of components.schemas, referenced from every route that uses it.
 * `.openapi(name)` only adds that name: parsing is the schema's own.
 */

/**
 * zod 4 copies methods onto each schema when it is made, so a schema made
 * before @hono/zod-openapi extended zod (src/schemas/ loaded first: the CLI,
 * a test) has no `.openapi` of its own: call it from the prototype.
 */
function named<S extends z.ZodType>(name: string, schema: S): S {
  const openapi = (z.ZodType.prototype as unknown as { openapi: (this: S, refId: string) => S }).openapi;
  return openapi.call(schema, name);
}

export const ErrorBody = named('ErrorBody', api.ErrorBody);
export const HealthResponse = named('HealthResponse', api.HealthResponse);
export const HealthUnavailable = named('HealthUnavailable', api.HealthUnavailable);
export const DeployRequest = named('DeployRequest', api.DeployRequest);
export const DeployEvent = named('DeployEvent', api.DeployEvent);
export const BlobsMissingRequest = named('BlobsMissingRequest', api.BlobsMissingRequest);
export const BlobsMissingResponse = named('BlobsMissingResponse', api.BlobsMissingResponse);
export const BlobStored = named('BlobStored', api.BlobStored);
export const EnvUpdateRequest = named('EnvUpdateRequest', api.EnvUpdateRequest);
export const RollbackRequest = named('RollbackRequest', api.RollbackRequest);
export const ScheduleRequest = named('ScheduleRequest', api.ScheduleRequest);
export const FunctionView = named('FunctionView', api.FunctionView);
export const FunctionList = named('FunctionList', api.FunctionList);
export const VersionList = named('VersionList', api.VersionList);
export const DeleteResponse = named('DeleteResponse', api.DeleteResponse);
export const LogsQuery = api.LogsQuery;
export const LogsResponse = named('LogsResponse', api.LogsResponse);
export const InvocationLogEntry = named('InvocationLogEntry', api.InvocationLogEntry);
export const InvocationView = named('InvocationView', api.InvocationView);
export const AsyncAccepted = named('AsyncAccepted', api.AsyncAccepted);
export const InvokeHeaders = api.InvokeHeaders;
export const InvokeQuery = api.InvokeQuery;
export const EvalRequest = named('EvalRequest', api.EvalRequest);
export const EvalResult = named('EvalResult', api.EvalResult);
export const GcRequest = named('GcRequest', gc.GcRequest);
export const GcReport = named('GcReport', gc.GcReport);
export const TopicsRequest = named('TopicsRequest', invocation.TopicsRequest);
export const TopicsView = named('TopicsView', invocation.TopicsView);
export const PublishAccepted = named('PublishAccepted', invocation.PublishAccepted);
export const CallbackPayload = named('CallbackPayload', invocation.CallbackPayload);

/** Any bytes, as the handler or the publisher sends them. */
export const Bytes = z.string().openapi({ format: 'binary' });

export const FunctionNameParam = z.object({
  name: z.string().openapi({ description: 'The function (1-63 chars of a-z, 0-9 and "-", starting with a letter)', example: 'hello' }),
});

type Responses = Record<number, { description: string; content?: Record<string, { schema: z.ZodType }>; headers?: z.ZodObject }>;

export const json = <S extends z.ZodType>(schema: S) => ({ 'application/json': { schema } });
export const ok = <S extends z.ZodType>(schema: S, description = 'OK') => ({ description, content: json(schema) });
export const error = (description: string) => ({ description, content: json(ErrorBody) });

/** The error answers of a route, `{ error: { code, message } }` each, by status. */
export function errors(byStatus: Record<number, string>): Responses {
  return Object.fromEntries(Object.entries(byStatus).map(([status, description]) => [status, error(description)]));
}

/** Every operator-only route (under /v1, /metrics) can answer these. */
export const OPERATOR_ERRORS = {
  401: 'Missing or wrong API key (SNAPFN_API_KEY set): `Authorization: Bearer <key>`; code unauthorized',
  403: 'No SNAPFN_API_KEY on the server and not a loopback client (or one behind a proxy); code forbidden',
} as const;

/** Open to anyone, or with the operator key (a function with requireAuth; invocations of those). */
export const KEY_OPTIONAL: Array<Record<string, string[]>> = [{}, { bearer: [] }];

export const INVALID = { 400: 'Invalid input (code invalid_input): the message says which field and why' } as const;
export const NO_FUNCTION = { 404: 'No such function (code not_found)' } as const;
export const NO_QUEUE = { 501: 'This gateway runs without the queue (code queue_disabled)' } as const;
export const REDIS_DOWN = { 503: 'Redis did not answer in time (code queue_unavailable); retry' } as const;
export const TOO_LARGE = (what: string) => ({ 413: `${what} (code payload_too_large)` });
