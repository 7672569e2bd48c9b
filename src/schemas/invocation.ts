import { z } from 'zod';

/**
 * The wire form of an HTTP request as it travels gateway -> queue -> envd.
 * Bodies are base64 so the whole thing is JSON (BullMQ job data, envd frames).
 */
export const WireRequest = z.object({
  method: z.string().min(1).max(16),
  url: z.string().min(1),
  headers: z.array(z.tuple([z.string(), z.string()])),
  bodyBase64: z.string().optional(),
});
export type WireRequest = z.infer<typeof WireRequest>;

export const WireResponse = z.object({
  status: z.number().int().min(200).max(599),
  headers: z.array(z.tuple([z.string(), z.string()])),
  bodyBase64: z.string(),
});
export type WireResponse = z.infer<typeof WireResponse>;

export const LogLine = z.object({
  stream: z.enum(['stdout', 'stderr']),
  text: z.string(),
  /** ms since the invocation started */
  t: z.number(),
});
export type LogLine = z.infer<typeof LogLine>;

export const HandlerFailure = z.object({
  code: z.enum(['handler_error', 'timeout', 'sandbox_crashed', 'out_of_memory', 'restore_failed', 'invalid_response', 'response_too_large', 'cancelled']),
  message: z.string(),
  name: z.string().optional(),
  stack: z.string().optional(),
});
export type HandlerFailure = z.infer<typeof HandlerFailure>;

/** What one invocation produced, success or not. Logs are captured either way. */
export const InvocationOutcome = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), response: WireResponse, logs: z.array(LogLine), logsTruncated: z.boolean() }),
  z.object({ ok: z.literal(false), error: HandlerFailure, logs: z.array(LogLine), logsTruncated: z.boolean() }),
]);
export type InvocationOutcome = z.infer<typeof InvocationOutcome>;

/**
 * An ok outcome whose body is still on its way (a direct invocation that
 * asked to stream): `response.bodyBase64` is empty, the bytes come through
 * `body`, and `completion` is the outcome once the last byte is out (its
 * logs, and ok: false if the stream broke off). Never serialized.
 */
export type StreamingOutcome = Extract<InvocationOutcome, { ok: true }> & { body: ReadableStream<Uint8Array>; completion: Promise<InvocationOutcome> };

export function isStreaming(outcome: InvocationOutcome): outcome is StreamingOutcome {
  return outcome.ok && 'body' in outcome && (outcome as StreamingOutcome).body instanceof ReadableStream;
}

/** A WireRequest whose body streams in (direct invocations); `bodyBase64` is then absent. Never serialized. */
export type StreamingRequest = WireRequest & { bodyStream?: ReadableStream<Uint8Array> };

/**
 * How a queued invocation came in: a synchronous HTTP call that had to
 * queue, an async call, a schedule tick, a message published to a topic.
 * What each one means (attempts, end states) is src/invocation/policies.ts.
 */
export const InvocationMode = z.enum(['sync', 'async', 'schedule', 'topic']);
export type InvocationMode = z.infer<typeof InvocationMode>;

/** Every way an invocation starts: a direct HTTP call is `http`, the rest are queue modes. */
export const TriggerKind = z.enum(['http', ...InvocationMode.options]);
export type TriggerKind = z.infer<typeof TriggerKind>;

/** Topic names appear in URLs and Redis keys. */
export const TopicName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,127}$/, 'topic names are 1-128 chars of a-z, 0-9, ".", "_" and "-", starting with a letter or digit');
export type TopicName = z.infer<typeof TopicName>;

/** A function's subscriptions (`config.topics`, `PUT /v1/functions/:name/topics`). */
export const TopicList = z.array(TopicName).max(32, 'a function subscribes to at most 32 topics');

/** Where a callback stands (the invocation record shows it; `GET /v1/invocations/:id`). */
export const CallbackDelivery = z.object({
  url: z.string(),
  /** pending: not sent yet or between retries; delivered: the receiver answered 2xx; failed: out of attempts, or refused (4xx, a denied address). */
  state: z.enum(['pending', 'delivered', 'failed']),
  attempts: z.number().int().min(0),
  /** The receiver's last HTTP status. */
  lastStatus: z.number().int().optional(),
  lastError: z.string().optional(),
  deliveredAt: z.string().optional(),
});
export type CallbackDelivery = z.infer<typeof CallbackDelivery>;

/**
 * The body POSTed to a callback URL when an async or topic invocation
 * ends. Signed: `X-Snapfn-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
 * with SNAPFN_CALLBACK_SECRET (docs/triggers.md).
 */
export const CallbackPayload = z.object({
  id: z.string(),
  function: z.string(),
  version: z.number().int().positive().optional(),
  trigger: InvocationMode,
  /** completed: the handler answered (any HTTP status); dead: the last attempt failed. */
  outcome: z.enum(['completed', 'dead']),
  attempts: z.number().int().positive(),
  /** The handler's response (completed). */
  status: z.number().int().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  bodyBase64: z.string().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type CallbackPayload = z.infer<typeof CallbackPayload>;

/** Where a queued invocation stands (see docs/queue.md). */
export const InvocationStatusName = z.enum(['queued', 'active', 'completed', 'failed', 'dead']);
export type InvocationStatusName = z.infer<typeof InvocationStatusName>;

/** `PUT /v1/functions/:name/topics`: the function's subscriptions from now on (a new version, same template). */
export const TopicsRequest = z.object({ topics: TopicList }).strict();
export type TopicsRequest = z.infer<typeof TopicsRequest>;

/** `X-Message-Id` on a publish: the same id published again reaches no subscriber twice. */
export const MessageId = z.string().regex(/^[\x20-\x7e]{1,200}$/, 'a message id is 1-200 printable ASCII characters');

/** 202 answer to `POST /v1/topics/:topic`: one invocation per subscriber (none: nobody subscribes, the message is dropped). */
export const PublishAccepted = z.object({
  topic: TopicName,
  messageId: z.string(),
  invocations: z.array(z.object({ function: z.string(), id: z.string() })),
});
export type PublishAccepted = z.infer<typeof PublishAccepted>;

/** `GET /v1/topics`. */
export const TopicsView = z.object({ topics: z.array(z.object({ topic: TopicName, subscribers: z.array(z.string()) })) });
export type TopicsView = z.infer<typeof TopicsView>;
