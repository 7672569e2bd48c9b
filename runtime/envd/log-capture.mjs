// @ts-check
// stdout and stderr of the handler, captured per invocation (the host puts
// them in the invocation log). Outside an invocation they go to envd's own
// output, which the host keeps as the sandbox's log.

import { Buffer } from 'node:buffer';
import { invocationContext } from './invocation-context.mjs';

const MAX_LOG_BYTES = Number(process.env.SNAPFN_MAX_LOG_BYTES ?? 64 * 1024);

/** @typedef {{ stream: 'stdout' | 'stderr', text: string, t: number }} LogLine */
/** @typedef {import('./invocation-context.mjs').Capture} Capture */

/** The capture of envd's own hooks, which run one at a time outside any invocation. */
/** @type {Capture | null} */
let hookCapture = null;

/** The current invocation's capture; output after it ended (waitUntil work) goes to envd's own log. */
function current() {
  const capture = invocationContext.getStore()?.capture ?? hookCapture;
  return capture && !capture.closed ? capture : null;
}

export const realWrite = {
  stdout: process.stdout.write.bind(process.stdout),
  stderr: process.stderr.write.bind(process.stderr),
};

/** @param {'stdout' | 'stderr'} stream */
function captureWrite(stream) {
  return (/** @type {any} */ chunk, /** @type {any} */ encoding, /** @type {any} */ callback) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    const capture = current();
    if (capture) {
      if (capture.bytes + text.length > MAX_LOG_BYTES) {
        const room = Math.max(0, MAX_LOG_BYTES - capture.bytes);
        if (room > 0) capture.logs.push({ stream, text: text.slice(0, room), t: performance.now() - capture.start });
        capture.bytes = MAX_LOG_BYTES;
        capture.truncated = true;
      } else {
        capture.bytes += text.length;
        capture.logs.push({ stream, text, t: performance.now() - capture.start });
      }
    } else {
      realWrite[stream](chunk, encoding);
    }
    const cb = typeof encoding === 'function' ? encoding : callback;
    if (typeof cb === 'function') cb();
    return true;
  };
}

export function installLogCapture() {
  process.stdout.write = /** @type {any} */ (captureWrite('stdout'));
  process.stderr.write = /** @type {any} */ (captureWrite('stderr'));
}

/** A capture for one invocation (run the invocation in invocationContext with it). */
export function newCapture() {
  return /** @type {Capture} */ ({ logs: [], bytes: 0, truncated: false, start: performance.now(), closed: false });
}

/** Ends a capture and hands back what it holds. */
export function endCapture(/** @type {Capture} */ capture) {
  capture.closed = true;
  return { logs: capture.logs, logsTruncated: capture.truncated };
}

/** Captures a hook's output (hooks never run concurrently); the returned function stops it. */
export function startCapture() {
  const mine = newCapture();
  hookCapture = mine;
  return () => {
    if (hookCapture === mine) hookCapture = null;
    return endCapture(mine);
  };
}
