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

export const ErrorBody = api.ErrorBody.openapi('ErrorBody');
export const HealthResponse = api.HealthResponse.openapi('HealthResponse');
export const HealthUnavailable = api.HealthUnavailable.openapi('HealthUnavailable');
export const DeployRequest = api.DeployRequest.openapi('DeployRequest');
export const DeployEvent = api.DeployEvent.openapi('DeployEvent');
export const BlobsMissingRequest = api.BlobsMissingRequest.openapi('BlobsMissingRequest');
export const BlobsMissingResponse = api.BlobsMissingResponse.openapi('BlobsMissingResponse');
export const BlobStored = api.BlobStored.openapi('BlobStored');
export const EnvUpdateRequest = api.EnvUpdateRequest.openapi('EnvUpdateRequest');
export const RollbackRequest = api.RollbackRequest.openapi('RollbackRequest');
export const ScheduleRequest = api.ScheduleRequest.openapi('ScheduleRequest');
export const FunctionView = api.FunctionView.openapi('FunctionView');
export const FunctionList = api.FunctionList.openapi('FunctionList');
export const VersionList = api.VersionList.openapi('VersionList');
export const DeleteResponse = api.DeleteResponse.openapi('DeleteResponse');
export const LogsQuery = api.LogsQuery;
export const LogsResponse = api.LogsResponse.openapi('LogsResponse');
export const InvocationLogEntry = api.InvocationLogEntry.openapi('InvocationLogEntry');
export const InvocationView = api.InvocationView.openapi('InvocationView');
export const AsyncAccepted = api.AsyncAccepted.openapi('AsyncAccepted');
export const InvokeHeaders = api.InvokeHeaders;
export const InvokeQuery = api.InvokeQuery;
export const EvalRequest = api.EvalRequest.openapi('EvalRequest');
export const EvalResult = api.EvalResult.openapi('EvalResult');
export const GcRequest = gc.GcRequest.openapi('GcRequest');
export const GcReport = gc.GcReport.openapi('GcReport');
export const TopicsRequest = invocation.TopicsRequest.openapi('TopicsRequest');
export const TopicsView = invocation.TopicsView.openapi('TopicsView');
export const PublishAccepted = invocation.PublishAccepted.openapi('PublishAccepted');
export const CallbackPayload = invocation.CallbackPayload.openapi('CallbackPayload');

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

export const INVALID = { 400: 'Invalid input (code invalid_input): the message says which field and why' } as const;
export const NO_FUNCTION = { 404: 'No such function (code not_found)' } as const;
export const NO_QUEUE = { 501: 'This gateway runs without the queue (code queue_disabled)' } as const;
export const REDIS_DOWN = { 503: 'Redis did not answer in time (code queue_unavailable); retry' } as const;
export const TOO_LARGE = (what: string) => ({ 413: `${what} (code payload_too_large)` });
