// @ts-check
// stdout and stderr of the handler, captured per invocation (the host puts
// them in the invocation log). Outside an invocation they go to envd's own
// output, which the host keeps as the sandbox's log.

import { Buffer } from 'node:buffer';

const MAX_LOG_BYTES = Number(process.env.SNAPFN_MAX_LOG_BYTES ?? 64 * 1024);

/** @typedef {{ stream: 'stdout' | 'stderr', text: string, t: number }} LogLine */
/** @typedef {{ logs: LogLine[], bytes: number, truncated: boolean, start: number }} Capture */

/** @type {Capture | null} */
let capture = null;

export const realWrite = {
  stdout: process.stdout.write.bind(process.stdout),
  stderr: process.stderr.write.bind(process.stderr),
};

/** @param {'stdout' | 'stderr'} stream */
function captureWrite(stream) {
  return (/** @type {any} */ chunk, /** @type {any} */ encoding, /** @type {any} */ callback) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
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

/** Starts capturing; the returned function stops and hands back what was captured. */
export function startCapture() {
  const mine = { logs: [], bytes: 0, truncated: false, start: performance.now() };
  capture = mine;
  return () => {
    if (capture === mine) capture = null;
    return { logs: mine.logs, logsTruncated: mine.truncated };
  };
}
