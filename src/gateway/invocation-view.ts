import type { InvocationStatus } from '../queue/job-data.ts';
import type { InvocationResponse, InvocationView } from '../schemas/api.ts';
import type { WireResponse } from '../schemas/invocation.ts';

const TEXT_TYPES = /^(text\/|application\/(xml|javascript|ecmascript|x-www-form-urlencoded|yaml|x-yaml|graphql)\b)|\+xml\b/;
const JSON_TYPES = /^application\/json\b|\+json\b/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A queued invocation as GET /v1/invocations/:id shows it; `redact` takes the version's secret values out of logs and messages. */
export function invocationView(status: InvocationStatus, redact: (text: string) => string): InvocationView {
  const result = status.result;
  const outcome = result?.outcome;
  const error = status.error ?? (outcome && !outcome.ok ? outcome.error : undefined);
  return {
    id: status.id,
    function: status.function,
    status: status.status,
    mode: status.mode,
    ...(status.version !== undefined ? { version: status.version } : {}),
    attempts: status.attempts,
    maxAttempts: status.maxAttempts,
    enqueuedAt: iso(status.enqueuedAt),
    ...(status.startedAt ? { startedAt: iso(status.startedAt) } : {}),
    ...(status.finishedAt ? { finishedAt: iso(status.finishedAt) } : {}),
    ...(outcome?.ok ? { result: responseView(outcome.response) } : {}),
    ...(error ? { error: { code: error.code, message: redact(error.message) } } : {}),
    ...(outcome ? { logs: outcome.logs.map((l) => ({ ...l, text: redact(l.text) })), logsTruncated: outcome.logsTruncated } : {}),
    ...(result
      ? {
          timings: { queueWaitMs: result.timings.queueWaitMs, acquireMs: result.timings.acquireMs, restoreMs: result.timings.restoreMs, handlerMs: result.timings.handlerMs },
          worker: result.worker,
        }
      : {}),
    ...(status.callback ? { callback: status.callback } : {}),
  };
}

/** Status, headers and body, the body decoded as far as its content type says it safely can be. */
export function responseView(response: WireResponse): InvocationResponse {
  const headers: Record<string, string> = {};
  for (const [name, value] of response.headers) {
    const key = name.toLowerCase();
    headers[key] = headers[key] === undefined ? value : `${headers[key]}, ${value}`;
  }
  return { status: response.status, headers, ...decodeBody(headers['content-type'] ?? '', response.bodyBase64) };
}

function decodeBody(contentType: string, base64: string): Pick<InvocationResponse, 'body' | 'bodyEncoding'> {
  if (base64 === '') return { bodyEncoding: 'empty', body: null };
  const type = contentType.toLowerCase().trim();
  const bytes = Buffer.from(base64, 'base64');
  let text: string | undefined;
  if (JSON_TYPES.test(type) || TEXT_TYPES.test(type)) {
    try {
      text = utf8.decode(bytes);
    } catch {
      // Says text, is not UTF-8: pass the bytes on untouched.
    }
  }
  if (text !== undefined && JSON_TYPES.test(type)) {
    try {
      return { bodyEncoding: 'json', body: JSON.parse(text) };
    } catch {
      return { bodyEncoding: 'text', body: text };
    }
  }
  if (text !== undefined) return { bodyEncoding: 'text', body: text };
  return { bodyEncoding: 'base64', body: base64 };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
