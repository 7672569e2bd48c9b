import { z } from 'zod';
import { EnvVars, FunctionConfig, FunctionName } from './function-config.ts';
import { CallbackDelivery, InvocationMode, InvocationStatusName, LogLine } from './invocation.ts';
import { ScheduleSetting } from './schedule.ts';
import { BundlePath, MAX_BUNDLE_FILES, Sha256Hex, SourceManifest } from './source-manifest.ts';

export { BundlePath, MAX_BUNDLE_FILES, ManifestEntry, SourceManifest, Sha256Hex } from './source-manifest.ts';

/*
 * Request and response shapes of the HTTP API. The gateway validates with
 * them, the CLI validates its input with them before sending, and
 * /v1/openapi.json is generated from them, so the three cannot drift.
 */

type WithoutDefault<T> = T extends z.ZodDefault<infer Inner> ? Inner : T extends z.ZodOptional<infer Inner> ? Inner : T;
type PatchShape<S extends z.ZodRawShape> = { [K in keyof S]: z.ZodOptional<WithoutDefault<S[K]>> };

/**
 * FunctionConfig with every field optional and no defaults: what a caller
 * sets explicitly. Defaults would silently override the handler's own
 * `export const config` when the two are merged ("API wins").
 */
function patchOf<S extends z.ZodRawShape>(schema: z.ZodObject<S>): z.ZodObject<PatchShape<S>, z.core.$strict> {
  const shape: Record<string, z.ZodType> = {};
  for (const [key, field] of Object.entries(schema.shape)) {
    const inner = field instanceof z.ZodDefault || field instanceof z.ZodOptional ? (field.unwrap() as z.ZodType) : (field as z.ZodType);
    shape[key] = inner.optional();
  }
  return z.object(shape).strict() as unknown as z.ZodObject<PatchShape<S>, z.core.$strict>;
}

export const FunctionConfigPatch = patchOf(FunctionConfig);
export type FunctionConfigPatch = z.infer<typeof FunctionConfigPatch>;

export const EnvVarName = EnvVars.keyType;

const MAX_ENV_VARS = 256;
const MAX_ENV_VALUE_CHARS = 32 * 1024;
const EnvValue = z.string().max(MAX_ENV_VALUE_CHARS, `env values are at most ${MAX_ENV_VALUE_CHARS} characters`);

function boundedRecord<V extends z.ZodType>(value: V) {
  return z.record(EnvVarName, value).refine((r) => Object.keys(r).length <= MAX_ENV_VARS, `at most ${MAX_ENV_VARS} variables`);
}

export const EnvVarMap = boundedRecord(EnvValue);
/** In an update, `null` deletes a variable; absent names are kept. */
export const EnvVarPatch = boundedRecord(EnvValue.nullable());

const Base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'file contents must be base64');

export const BundleFiles = z
  .record(BundlePath, Base64)
  .refine((files) => Object.keys(files).length > 0, 'the bundle has no files')
  .refine((files) => Object.keys(files).length <= MAX_BUNDLE_FILES, `a bundle holds at most ${MAX_BUNDLE_FILES} files`);

function disjoint(env: Record<string, unknown> | undefined, secrets: Record<string, unknown> | undefined): boolean {
  if (!env || !secrets) return true;
  return Object.keys(secrets).every((name) => !(name in env));
}

/**
 * The function directory comes as `files` (inline, base64: small clients),
 * as `manifest` (content hashes of blobs uploaded first: `fn deploy`), or
 * both, as long as no path is in both.
 */
export const DeployRequest = z
  .object({
    name: FunctionName,
    files: BundleFiles.optional(),
    manifest: SourceManifest.optional(),
    config: FunctionConfigPatch.optional(),
    env: EnvVarMap.optional(),
    secrets: EnvVarMap.optional(),
  })
  .strict()
  .refine((r) => r.files !== undefined || r.manifest !== undefined, 'give files, manifest or both')
  .refine((r) => !r.files || !r.manifest || r.manifest.every((e) => !Object.hasOwn(r.files!, e.path)), 'a path is both in files and in manifest')
  .refine((r) => disjoint(r.env, r.secrets), 'a name cannot be both an env var and a secret');
export type DeployRequest = z.infer<typeof DeployRequest>;

/** `POST /v1/blobs/missing`: which of these contents the server does not have yet. */
export const BlobsMissingRequest = z
  .object({ blobs: z.array(Sha256Hex).max(MAX_BUNDLE_FILES, `ask about at most ${MAX_BUNDLE_FILES} blobs at once`) })
  .strict();
export type BlobsMissingRequest = z.infer<typeof BlobsMissingRequest>;

export const EnvUpdateRequest = z
  .object({ env: EnvVarPatch.optional(), secrets: EnvVarPatch.optional() })
  .strict()
  .refine((r) => r.env !== undefined || r.secrets !== undefined, 'give env, secrets or both');
export type EnvUpdateRequest = z.infer<typeof EnvUpdateRequest>;

export const RollbackRequest = z.object({ version: z.number().int().positive().optional() }).strict();
export type RollbackRequest = z.infer<typeof RollbackRequest>;

/** `null` removes the schedule. */
export const ScheduleRequest = z.object({ schedule: ScheduleSetting.nullable() }).strict();
export type ScheduleRequest = z.infer<typeof ScheduleRequest>;

export const LogsQuery = z.object({
  follow: z.enum(['0', '1', 'true', 'false']).optional().transform((v) => v === '1' || v === 'true'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

// POST /v1/eval: the schemas live with the eval service; the CLI and the OpenAPI document use them from there.
export { EvalLanguage, EvalRequest, EvalResult } from './eval.ts';

// ---- responses ------------------------------------------------------------

export const ErrorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

export const VersionView = z.object({
  version: z.number().int().positive(),
  templateId: z.string(),
  createdAt: z.string(),
  /** What created it: a deploy, an env/secret update, a schedule or topics change, or a template rebuild after a restart. */
  source: z.enum(['deploy', 'env', 'schedule', 'topics', 'rebuild']),
  config: FunctionConfig,
  env: z.record(z.string(), z.string()),
  /** Secret values are write-only: only their names ever leave the server. */
  secretNames: z.array(z.string()),
  bundleHash: z.string(),
  active: z.boolean(),
});
export type VersionView = z.infer<typeof VersionView>;

export const FunctionSchedule = z.object({
  cron: z.string(),
  /** Absent: UTC. */
  tz: z.string().optional(),
  /** ISO time of the next tick. */
  next: z.string(),
});
export type FunctionSchedule = z.infer<typeof FunctionSchedule>;

export const FunctionView = z.object({
  name: FunctionName,
  url: z.string(),
  activeVersion: z.number().int().positive().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  active: VersionView.nullable(),
  /** The active version's cron schedule (null: none). Optional only for older gateways. */
  schedule: FunctionSchedule.nullable().optional(),
  /** The answering node's warm pool of it: pre-restored sandboxes now and the target (absent when the function is not active there). */
  pool: z.object({ size: z.number().int().min(0), target: z.number().int().min(0) }).optional(),
});
export type FunctionView = z.infer<typeof FunctionView>;

export const FunctionList = z.object({ functions: z.array(FunctionView) });
export type FunctionList = z.infer<typeof FunctionList>;

export const VersionList = z.object({ versions: z.array(VersionView) });
export type VersionList = z.infer<typeof VersionList>;

/**
 * One queued attempt in the log. `state` is where the invocation stands after
 * it: `completed`; `failed` (a sync run, never retried); `retrying` (an
 * async/schedule attempt failed, another follows); `dead` (its last attempt
 * failed: the dead letter).
 */
export const QueuedAttempt = z.object({
  mode: InvocationMode,
  attempt: z.number().int().positive(),
  maxAttempts: z.number().int().positive(),
  waitMs: z.number(),
  state: z.enum(['completed', 'failed', 'retrying', 'dead']),
});
export type QueuedAttempt = z.infer<typeof QueuedAttempt>;

export const InvocationLogEntry = z.object({
  id: z.string(),
  time: z.string(),
  version: z.number().int().positive(),
  method: z.string(),
  path: z.string(),
  status: z.number().int(),
  durationMs: z.number(),
  ok: z.boolean(),
  /** `stack`: the handler's own, when it threw (secret values redacted like the message). */
  error: z.object({ code: z.string(), message: z.string(), stack: z.string().optional() }).optional(),
  logs: z.array(LogLine),
  logsTruncated: z.boolean(),
  /** The request body's size (direct invocations). */
  requestBytes: z.number().int().min(0).optional(),
  /** The response body's size (streamed: the bytes that went out); `ttfbMs`, streamed only: the time to the first of them. */
  responseBytes: z.number().int().min(0).optional(),
  ttfbMs: z.number().optional(),
  /** Where the time on the node went (the trace's phases): waiting for a sandbox place, restoring it (0 on a pool hit or keepWarm reuse), the handler; and how the sandbox was had. Absent when no sandbox ran it. */
  timings: z
    .object({ acquireMs: z.number(), restoreMs: z.number(), handlerMs: z.number(), source: z.enum(['pool', 'keep-warm', 'restore']) })
    .optional(),
  /** Only for attempts run from the queue (absent: a direct HTTP invocation). */
  queue: QueuedAttempt.optional(),
});
export type InvocationLogEntry = z.infer<typeof InvocationLogEntry>;

export const LogsResponse = z.object({ entries: z.array(InvocationLogEntry) });
export type LogsResponse = z.infer<typeof LogsResponse>;

export const DeployEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('progress'), step: z.string(), detail: z.record(z.string(), z.unknown()).optional() }),
  z.object({ type: z.literal('result'), function: FunctionView }),
  z.object({ type: z.literal('error'), error: ErrorBody.shape.error }),
]);
export type DeployEvent = z.infer<typeof DeployEvent>;

export const BlobsMissingResponse = z.object({ missing: z.array(Sha256Hex) });
export type BlobsMissingResponse = z.infer<typeof BlobsMissingResponse>;

/** `PUT /v1/blobs/:sha256`: the blob is stored (the bytes hashed to its name). */
export const BlobStored = z.object({ sha256: Sha256Hex, size: z.number().int().min(0) });
export type BlobStored = z.infer<typeof BlobStored>;

export const DeleteResponse = z.object({ deleted: z.literal(true), name: FunctionName });

/** 202 answer to an async invocation (also in X-Fn-Invocation-Id, and Location points at its status). */
export const AsyncAccepted = z.object({ id: z.string() });
export type AsyncAccepted = z.infer<typeof AsyncAccepted>;

/** The handler's response as the status API shows it. */
export const InvocationResponse = z.object({
  status: z.number().int(),
  /** Lower-case names; repeated headers joined with ", ". */
  headers: z.record(z.string(), z.string()),
  /**
   * `json`: the parsed body (a JSON content type, application/json or any +json); `text`: a UTF-8
   * string (text types, XML, JavaScript, form data); `base64`: anything else;
   * `empty`: no body (null).
   */
  bodyEncoding: z.enum(['json', 'text', 'base64', 'empty']),
  body: z.unknown(),
});
export type InvocationResponse = z.infer<typeof InvocationResponse>;

/** `GET /v1/invocations/:id`: an invocation that went through the queue (direct ones only have their log entry). */
export const InvocationView = z.object({
  id: z.string(),
  function: FunctionName,
  /** queued (also between attempts, with `error` = the last failure), active, completed, failed (a sync run), dead (the dead letter). */
  status: InvocationStatusName,
  mode: InvocationMode,
  /** The version that ran; before that the version it is pinned to (schedule runs: the active one at their start). */
  version: z.number().int().positive().optional(),
  attempts: z.number().int().min(0),
  maxAttempts: z.number().int().positive(),
  enqueuedAt: z.string(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  /** The handler's response: present once it answered, whatever the HTTP status (a 500 of the handler is a completed invocation). */
  result: InvocationResponse.optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  logs: z.array(LogLine).optional(),
  logsTruncated: z.boolean().optional(),
  timings: z.object({ queueWaitMs: z.number(), acquireMs: z.number(), restoreMs: z.number(), handlerMs: z.number() }).optional(),
  /** The node that ran the last attempt (host:pid). */
  worker: z.string().optional(),
  /** Async invocations with X-Callback-Url: where the callback stands (docs/triggers.md). */
  callback: CallbackDelivery.optional(),
});
export type InvocationView = z.infer<typeof InvocationView>;

export const HealthResponse = z.object({
  ok: z.literal(true),
  functions: z.number().int(),
  engine: z.object({ liveSandboxes: z.number(), maxSandboxes: z.number(), freeCapacity: z.number() }),
});
export type HealthResponse = z.infer<typeof HealthResponse>;

/** `GET /healthz` when the node cannot take queued work (Redis is down): 503. */
export const HealthUnavailable = z.object({
  ok: z.literal(false),
  error: ErrorBody.shape.error,
  functions: z.number().int(),
  engine: HealthResponse.shape.engine,
});
export type HealthUnavailable = z.infer<typeof HealthUnavailable>;

// ---- ANY /fn/:name[/*] ----------------------------------------------------

/**
 * The request headers snapfn itself reads on an invocation (every other
 * header goes to the handler as is). Names in lower case: HTTP header names
 * are case-insensitive and this is how they arrive.
 */
export const InvokeHeaders = z.object({
  'x-fn-async': z
    .string()
    .regex(/^(1|0|[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$/, 'X-Fn-Async must be 1, true, 0 or false') // no /i: a flag does not survive into OpenAPI's pattern
    .optional()
    .describe('1 or true: answer 202 with the invocation id (AsyncAccepted) instead of waiting for the handler; needs the queue'),
  prefer: z.string().optional().describe('`respond-async` (RFC 7240) asks for an async invocation too; other preferences are passed to the handler'),
  'idempotency-key': z
    .string()
    .regex(/^[\x20-\x7e]{1,255}$/, 'Idempotency-Key must be 1-255 printable ASCII characters')
    .optional()
    .describe('Repeats with the same key are the first invocation (async: same id; sync: same result); passed on to the handler too; needs the queue'),
  'x-callback-url': z
    .string()
    .optional()
    .describe('Async only: POSTed a signed CallbackPayload when the invocation ends (hosts allowed by SNAPFN_CALLBACK_ALLOW only, else 400)'),
});
export type InvokeHeaders = z.infer<typeof InvokeHeaders>;

/** The query flag snapfn consumes; the rest of the query string is the handler's. */
export const InvokeQuery = z.object({
  async: z.string().optional().describe('1 or true: async, as X-Fn-Async (removed from the URL the handler sees); any other value is the handler\'s'),
});
