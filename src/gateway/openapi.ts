import { z } from 'zod';
import {
  AsyncAccepted,
  BlobStored,
  BlobsMissingRequest,
  BlobsMissingResponse,
  DeleteResponse,
  DeployEvent,
  DeployRequest,
  EnvUpdateRequest,
  ErrorBody,
  FunctionList,
  FunctionView,
  HealthResponse,
  InvocationLogEntry,
  InvocationView,
  LogsResponse,
  RollbackRequest,
  ScheduleRequest,
  VersionList,
} from '../schemas/api.ts';
import { GcReport, GcRequest } from '../schemas/gc.ts';
import { CallbackPayload, PublishAccepted, TopicsRequest, TopicsView } from '../schemas/invocation.ts';

type JsonSchema = Record<string, unknown>;

function schemaOf(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _ignored, ...json } = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'openapi-3.0' }) as JsonSchema;
  return json;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: string) => ({ 'application/json': { schema: ref(name) } });
const ok = (name: string, description = 'OK') => ({ description, content: json(name) });
const error = (description: string) => ({ description, content: json('ErrorBody') });
const nameParam = { name: 'name', in: 'path', required: true, schema: { type: 'string' } };

const common = {
  '400': error('Invalid input'),
  '401': error('Missing or wrong API key'),
  '403': error('Not a loopback client and no API key configured'),
  '404': error('No such function'),
};

/** The OpenAPI document of /v1, generated from the same zod schemas that validate the requests. */
export function openApiDocument(): JsonSchema {
  const components: Record<string, JsonSchema> = {
    DeployRequest: schemaOf(DeployRequest, 'input'),
    BlobsMissingRequest: schemaOf(BlobsMissingRequest, 'input'),
    BlobsMissingResponse: schemaOf(BlobsMissingResponse, 'output'),
    BlobStored: schemaOf(BlobStored, 'output'),
    EnvUpdateRequest: schemaOf(EnvUpdateRequest, 'input'),
    RollbackRequest: schemaOf(RollbackRequest, 'input'),
    ScheduleRequest: schemaOf(ScheduleRequest, 'input'),
    FunctionView: schemaOf(FunctionView, 'output'),
    FunctionList: schemaOf(FunctionList, 'output'),
    VersionList: schemaOf(VersionList, 'output'),
    LogsResponse: schemaOf(LogsResponse, 'output'),
    InvocationLogEntry: schemaOf(InvocationLogEntry, 'output'),
    InvocationView: schemaOf(InvocationView, 'output'),
    AsyncAccepted: schemaOf(AsyncAccepted, 'output'),
    DeployEvent: schemaOf(DeployEvent, 'output'),
    DeleteResponse: schemaOf(DeleteResponse, 'output'),
    HealthResponse: schemaOf(HealthResponse, 'output'),
    ErrorBody: schemaOf(ErrorBody, 'output'),
    GcRequest: schemaOf(GcRequest, 'input'),
    GcReport: schemaOf(GcReport, 'output'),
    TopicsRequest: schemaOf(TopicsRequest, 'input'),
    PublishAccepted: schemaOf(PublishAccepted, 'output'),
    TopicsView: schemaOf(TopicsView, 'output'),
    CallbackPayload: schemaOf(CallbackPayload, 'output'),
  };
  return {
    openapi: '3.0.3',
    info: {
      title: 'snapfn',
      version: '1',
      description:
        'Management API of a snapfn gateway. Functions themselves are served at ANY /fn/{name}[/...]; with `X-Fn-Async: 1` (or `Prefer: respond-async`, or `?async=1`) that answers 202 with an AsyncAccepted body, and the invocation can be polled at /v1/invocations/{id}; `X-Callback-Url` on such a request POSTs a signed CallbackPayload there when it ends (hosts allowed by SNAPFN_CALLBACK_ALLOW only, else 400).',
    },
    components: { schemas: components, securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths: {
      '/healthz': { get: { summary: 'Liveness and capacity', security: [], responses: { '200': ok('HealthResponse') } } },
      '/v1/functions': {
        get: { summary: 'List functions', responses: { '200': ok('FunctionList'), ...common } },
        post: {
          summary: 'Deploy a function (new version)',
          description:
            'The files come inline (`files`, base64) or by content (`manifest`, naming blobs uploaded with PUT /v1/blobs/{sha256}), or both. Validation and preparation errors are JSON errors (a manifest naming blobs the server lacks: 400 missing_blobs, with details.missing). After that the response is application/x-ndjson: DeployEvent lines, the last one of type "result" or "error".',
          requestBody: { required: true, content: json('DeployRequest') },
          responses: {
            '200': { description: 'Deploy progress', content: { 'application/x-ndjson': { schema: ref('DeployEvent') } } },
            ...common,
            '413': error('Function directory over SNAPFN_MAX_DEPLOY_BYTES, or inline files too large for one request (send them as blobs)'),
          },
        },
      },
      '/v1/blobs/missing': {
        post: {
          summary: 'Which of these file contents (sha256) the server does not have yet',
          requestBody: { required: true, content: json('BlobsMissingRequest') },
          responses: { '200': ok('BlobsMissingResponse'), '400': common['400'], '401': common['401'], '403': common['403'] },
        },
      },
      '/v1/blobs/{sha256}': {
        parameters: [{ name: 'sha256', in: 'path', required: true, schema: { type: 'string', pattern: '^[0-9a-f]{64}$' } }],
        put: {
          summary: 'Upload one file content, named by its sha256; streamed to disk and stored only if the bytes hash to the name',
          requestBody: { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
          responses: {
            '200': ok('BlobStored', 'Stored (or already there)'),
            '400': error('Not a sha256 name, or the bytes hash to something else (hash_mismatch)'),
            '401': common['401'],
            '403': common['403'],
            '413': error('Blob over SNAPFN_MAX_DEPLOY_BYTES'),
          },
        },
      },
      '/v1/functions/{name}': {
        parameters: [nameParam],
        get: { summary: 'Get a function', responses: { '200': ok('FunctionView'), ...common } },
        delete: { summary: 'Delete a function with all its versions and logs', responses: { '200': ok('DeleteResponse'), ...common } },
      },
      '/v1/functions/{name}/versions': { parameters: [nameParam], get: { summary: 'List versions', responses: { '200': ok('VersionList'), ...common } } },
      '/v1/functions/{name}/rollback': {
        parameters: [nameParam],
        post: {
          summary: 'Activate an older version (default: the one before the active one)',
          requestBody: { required: false, content: json('RollbackRequest') },
          responses: { '200': ok('FunctionView'), ...common, '409': error('No earlier version') },
        },
      },
      '/v1/functions/{name}/env': {
        parameters: [nameParam],
        put: {
          summary: 'New version with changed env vars / secrets (null deletes one), same template',
          requestBody: { required: true, content: json('EnvUpdateRequest') },
          responses: { '200': ok('FunctionView'), ...common },
        },
      },
      '/v1/functions/{name}/schedule': {
        parameters: [nameParam],
        put: {
          summary: 'New version with another cron schedule (null removes it), same template',
          requestBody: { required: true, content: json('ScheduleRequest') },
          responses: { '200': ok('FunctionView'), ...common, '409': error('No active version') },
        },
      },
      '/v1/functions/{name}/topics': {
        parameters: [nameParam],
        put: {
          summary: 'New version subscribed to these topics (empty: none), same template',
          requestBody: { required: true, content: json('TopicsRequest') },
          responses: { '200': ok('FunctionView'), ...common, '409': error('No active version') },
        },
      },
      '/v1/topics': { get: { summary: 'Topics and their subscribers', responses: { '200': ok('TopicsView'), ...common } } },
      '/v1/topics/{topic}': {
        parameters: [
          { name: 'topic', in: 'path', required: true, schema: { type: 'string' } },
          { name: 'X-Message-Id', in: 'header', required: false, schema: { type: 'string' }, description: 'Publishing the same id again reaches no subscriber twice' },
        ],
        post: {
          summary: 'Publish a message (any body and headers): one queued invocation per subscriber, all or none',
          requestBody: { required: false, content: { '*/*': { schema: {} } } },
          responses: { '202': { description: 'Queued for every subscriber', content: json('PublishAccepted') }, ...common },
        },
      },
      '/v1/admin/gc': {
        post: {
          summary: 'Remove templates no kept version, eval language or running sandbox needs (dryRun: only report)',
          requestBody: { required: false, content: json('GcRequest') },
          responses: { '200': ok('GcReport'), '400': common['400'], '401': common['401'], '403': common['403'] },
        },
      },
      '/v1/invocations/{id}': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
        get: {
          summary: 'Status and result of a queued invocation (async, idempotent, queued under load, or a schedule run)',
          description:
            'Operators may read any invocation. Other clients may read invocations of functions without requireAuth, except schedule runs. Direct invocations have no status here, only their log entry.',
          responses: { '200': ok('InvocationView'), ...common, '404': error('Unknown invocation, or past its retention (1 h after completion, 7 days after death)') },
        },
      },
      '/v1/functions/{name}/logs': {
        parameters: [
          nameParam,
          { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
          { name: 'follow', in: 'query', schema: { type: 'string', enum: ['0', '1', 'true', 'false'] } },
        ],
        get: {
          summary: 'Invocation log; with follow=1 an NDJSON stream of InvocationLogEntry that stays open',
          responses: {
            '200': { description: 'Entries', content: { ...json('LogsResponse'), 'application/x-ndjson': { schema: ref('InvocationLogEntry') } } },
            ...common,
          },
        },
      },
    },
  };
}
