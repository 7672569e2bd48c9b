import { toSnapfnError } from './error-response.ts';

const encoder = new TextEncoder();

export type SendLine = (value: unknown) => void;

/**
 * A streamed `application/x-ndjson` response fed by `produce`. `signal`
 * aborts when the client goes away; lines sent after that are dropped.
 */
export function ndjsonResponse(produce: (send: SendLine, signal: AbortSignal) => Promise<void>, status = 200): Response {
  const aborted = new AbortController();
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      const send: SendLine = (value) => {
        if (aborted.signal.aborted) return;
        try {
          controller.enqueue(encoder.encode(`${JSON.stringify(value)}\n`));
        } catch {
          aborted.abort();
        }
      };
      void produce(send, aborted.signal)
        .catch((err) => send({ type: 'error', error: toSnapfnError(err).toJSON().error }))
        .finally(() => {
          if (aborted.signal.aborted) return;
          try {
            controller.close();
          } catch {
            // already closed by a cancel
          }
        });
    },
    cancel() {
      aborted.abort();
    },
  });
  return new Response(stream, {
    status,
    headers: { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' },
  });
}
