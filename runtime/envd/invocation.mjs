// @ts-check
// One invocation inside envd: the request (its body streaming in from the
// host), the handler's shape, and the response streaming back chunk by
// chunk with the host's backpressure, bounded by the timeout and the
// response limit. The sink decides where the response goes: the host
// channel, or nowhere (rehearsals).

import { Buffer } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { CANCEL, END } from './channel.mjs';
import { invocationContext } from './invocation-context.mjs';
import { endCapture, newCapture } from './log-capture.mjs';

/** @typedef {import('../../src/sandbox/envd/protocol.ts').Failure} Failure */
/** @typedef {import('../../src/sandbox/envd/protocol.ts').RequestHead} RequestHead */
/** @typedef {import('../../src/sandbox/envd/protocol.ts').Headers} WireHeaders */

/**
 * @typedef {object} ResponseSink
 * @property {(status: number, headers: WireHeaders) => void} head
 * @property {(chunk: Uint8Array) => Promise<void>} data
 * @property {Promise<never>} cancelled  rejects when the host gives up on the invocation
 */

const FRAMING_HEADERS = new Set(['content-encoding', 'content-length', 'transfer-encoding', 'connection']);

/**
 * @param {unknown} err
 * @param {string} code
 * @returns {Failure}
 */
export function errorOf(err, code = 'handler_error') {
  if (err instanceof Error) return { code, message: err.message, name: err.name, stack: err.stack };
  return { code, message: String(err) };
}

class InvocationError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/**
 * A request whose body is fed by the host's DATA frames until `request-end`.
 * @param {RequestHead} head
 * @param {((sink: { push(chunk: any): void }) => () => void) | undefined} attach
 */
export function toRequest(head, attach) {
  if (!head.hasBody || head.method === 'GET' || head.method === 'HEAD' || !attach) {
    return new Request(head.url, { method: head.method, headers: head.headers });
  }
  /** @type {ReadableStreamDefaultController<Uint8Array>} */
  let controller;
  const body = new ReadableStream({ start: (c) => void (controller = c) });
  // Assigned below; attach may hand over chunks (and the end) before it returns.
  let detach = () => {};
  detach = attach({
    push(chunk) {
      if (chunk === END) {
        detach();
        controller.close();
      } else if (chunk === CANCEL) {
        detach();
        controller.error(new Error('the request was cancelled'));
      } else controller.enqueue(chunk);
    },
  });
  return new Request(head.url, /** @type {RequestInit} */ ({ method: head.method, headers: head.headers, body, duplex: 'half' }));
}

/** A handler's return value as a Response (snapfn's shape allows a JSON value, or nothing). */
function asResponse(/** @type {unknown} */ value) {
  if (value instanceof Response) return value;
  if (value === undefined) return new Response(null, { status: 204 });
  const json = JSON.stringify(value);
  if (json === undefined) throw new InvocationError('invalid_response', `handler returned a ${typeof value}, which is not JSON-serializable`);
  // The length lets a JSON body over the limit fail before anything is sent.
  return new Response(json, { headers: { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(json)) } });
}

/**
 * Sends the head, then the body as it comes, to `sink`. Resolves with the
 * number of body bytes; rejects with an InvocationError past the limit,
 * when the host cancels, or when `abort` fires (the timeout).
 * @param {Response} response @param {ResponseSink} sink @param {number} maxBytes @param {Promise<never>} abort
 */
async function stream(response, sink, maxBytes, abort) {
  const declared = Number(response.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) {
    response.body?.cancel().catch(() => {});
    throw new InvocationError('response_too_large', `the response body is ${declared} bytes, over the limit of ${maxBytes} (SNAPFN_MAX_RESPONSE_BYTES)`);
  }
  // The body is sent decoded (a fetch() Response passed through decompresses it): its framing headers no longer apply.
  sink.head(response.status, [...response.headers].filter(([name]) => !FRAMING_HEADERS.has(name.toLowerCase())));
  if (!response.body) return 0;
  const reader = response.body.getReader();
  let bytes = 0;
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), abort]);
      if (done) return bytes;
      const chunk = value instanceof Uint8Array ? value : Buffer.from(/** @type {any} */ (value));
      bytes += chunk.length;
      if (bytes > maxBytes) throw new InvocationError('response_too_large', `the response body is larger than ${maxBytes} bytes (SNAPFN_MAX_RESPONSE_BYTES)`);
      await Promise.race([sink.data(chunk), abort]);
    }
  } catch (err) {
    reader.cancel().catch(() => {});
    throw err;
  }
}

/**
 * @typedef {object} InvocationEnd
 * @property {boolean} ok
 * @property {Failure} [error]
 * @property {boolean} started  whether a response head was sent
 * @property {number} bodyBytes
 * @property {Array<{stream: 'stdout' | 'stderr', text: string, t: number}>} logs
 * @property {boolean} logsTruncated
 * @property {Promise<'settled' | 'timeout'>} [background]  ctx.waitUntil work still running
 */

/**
 * Runs `call` as one invocation.
 * @param {{ timeoutMs: number, maxResponseBytes: number, env: Record<string, string>, baseEnv: Record<string, string | undefined> }} limits
 * @param {(invocation: any) => unknown} call
 * @param {any} info what the host said about the invocation (id, functionName, version, memoryMb, schedule)
 * @param {ResponseSink} sink
 * @returns {Promise<InvocationEnd>}
 */
export function runInvocation(limits, call, info, sink) {
  const capture = newCapture();
  // Its own copy: a handler writing process.env changes its invocation's only.
  const env = { ...limits.baseEnv, ...limits.env };
  return invocationContext.run({ capture, env }, () => invoke(limits, call, info, sink, () => endCapture(capture)));
}

/**
 * @param {{ timeoutMs: number, maxResponseBytes: number, env: Record<string, string> }} limits
 * @param {(invocation: any) => unknown} call
 * @param {any} info
 * @param {ResponseSink} sink
 * @param {() => { logs: any[], logsTruncated: boolean }} stop
 * @returns {Promise<InvocationEnd>}
 */
async function invoke(limits, call, info, sink, stop) {
  /** @type {Promise<unknown>[]} */
  const background = [];
  const deadline = Date.now() + limits.timeoutMs;
  const invocation = {
    id: info.id ?? randomUUID(),
    functionName: info.functionName ?? 'function',
    version: info.version,
    memoryMb: info.memoryMb ?? 256,
    deadline,
    env: limits.env,
    schedule: info.schedule,
    waitUntil: (/** @type {unknown} */ promise) => void background.push(Promise.resolve(promise)),
  };
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  // The host kills the whole sandbox at the hard deadline; this softer one
  // turns a handler stuck on a promise (or a stalled stream) into a clean error first.
  const timeout = /** @type {Promise<never>} */ (
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new InvocationError('timeout', `handler did not finish within ${limits.timeoutMs} ms`)), limits.timeoutMs);
    })
  );
  const abort = Promise.race([timeout, sink.cancelled]);
  abort.catch(() => {});
  let started = false;
  const watched = { ...sink, head: (/** @type {number} */ s, /** @type {WireHeaders} */ h) => ((started = true), sink.head(s, h)) };
  try {
    const value = await Promise.race([Promise.resolve().then(() => call(invocation)), abort]);
    const bodyBytes = await stream(asResponse(value), watched, limits.maxResponseBytes, abort);
    return { ok: true, started, bodyBytes, ...stop(), background: backgroundOf(background, deadline) };
  } catch (err) {
    const known = /** @type {any} */ (err)?.code;
    const code = ['timeout', 'invalid_response', 'response_too_large', 'cancelled'].includes(known) ? known : 'handler_error';
    return { ok: false, error: errorOf(err, code), started, bodyBytes: 0, ...stop(), background: backgroundOf(background, deadline) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * ctx.waitUntil work, settled after the response was sent (rejections are
 * logged, not raised) and bounded by the invocation's deadline. Promises
 * added later, from inside the first ones, count too.
 * @param {Promise<unknown>[]} list @param {number} deadline
 * @returns {Promise<'settled' | 'timeout'> | undefined}
 */
function backgroundOf(list, deadline) {
  if (list.length === 0) return undefined;
  const drain = async () => {
    for (let i = 0; i < list.length; i++) {
      await list[i]?.catch((err) => process.stderr.write(`waitUntil: ${err?.stack ?? err}\n`));
    }
  };
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  const expired = new Promise((resolve) => {
    timer = setTimeout(() => resolve('timeout'), Math.max(0, deadline - Date.now()));
  });
  return /** @type {Promise<'settled' | 'timeout'>} */ (Promise.race([drain().then(() => 'settled'), expired]).finally(() => clearTimeout(timer)));
}

/** A sink that reads the whole body and keeps nothing (rehearsals, warm-up). */
export function discardingSink() {
  return { head() {}, async data() {}, cancelled: /** @type {Promise<never>} */ (new Promise(() => {})) };
}

/** Rejects with a `cancelled` InvocationError once `signal` is called. */
export function cancellation() {
  /** @type {() => void} */
  let cancel = () => {};
  const cancelled = /** @type {Promise<never>} */ (
    new Promise((_, reject) => {
      cancel = () => reject(new InvocationError('cancelled', 'the host cancelled the invocation (its client went away)'));
    })
  );
  cancelled.catch(() => {});
  return { cancelled, cancel };
}
