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

/** How a queued invocation came in: a synchronous HTTP call that had to queue, an async call, a schedule tick. */
export const InvocationMode = z.enum(['sync', 'async', 'schedule']);
export type InvocationMode = z.infer<typeof InvocationMode>;

/** Where a queued invocation stands (see docs/queue.md). */
export const InvocationStatusName = z.enum(['queued', 'active', 'completed', 'failed', 'dead']);
export type InvocationStatusName = z.infer<typeof InvocationStatusName>;
