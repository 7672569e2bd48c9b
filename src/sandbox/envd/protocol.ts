/*
 * The envd protocol, defined once: every message between the host and envd,
 * and the framing they travel in. envd (runtime/envd/, bundled with this
 * module when the root filesystem is built) and the host
 * (envd-connection.ts) both import it, so a message one side sends and the
 * other does not know cannot type-check. Nothing here imports anything: the
 * bundle that goes into every sandbox stays small.
 *
 * Framing, both ways, on the one channel (a Unix socket or a virtio-serial
 * port): [u32 BE length of the rest][u8 kind][payload].
 *   kind 1, JSON: a UTF-8 JSON control message (the types below).
 *   kind 2, DATA: [u32 BE invocation id][raw bytes], one chunk of the
 *                 request body (host to envd) or of the response body
 *                 (envd to host) of that invocation. Bodies are never base64
 *                 and never one JSON string.
 */

export const FRAME_JSON = 1;
export const FRAME_DATA = 2;
const HEADER_BYTES = 5;
/** A body is cut into chunks of at most this size; a frame larger than MAX_FRAME_BYTES is a protocol error. */
export const DATA_CHUNK_BYTES = 64 * 1024;
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

export type Headers = Array<[string, string]>;

export interface LogLine {
  stream: 'stdout' | 'stderr';
  text: string;
  t: number;
}

export interface Failure {
  code: string;
  message: string;
  name?: string;
  stack?: string;
}

export interface RequestHead {
  method: string;
  url: string;
  headers: Headers;
  /** DATA frames and `request-end` follow when true. */
  hasBody: boolean;
}

export interface InvocationInfo {
  id: string;
  functionName: string;
  version?: number;
  memoryMb: number;
}

/** The function's afterRestore hook, as run before a hello. */
export interface HookRun {
  ok: boolean;
  ms: number;
  error?: Failure;
}

// ---- host -> envd ----------------------------------------------------------

export type HostMessage =
  | { type: 'ping'; id: number }
  | { type: 'invoke'; id: number; request: RequestHead; env: Record<string, string>; timeoutMs: number; maxResponseBytes: number; invocation: InvocationInfo }
  | { type: 'request-end'; id: number }
  /** The client went away: stop the response stream. */
  | { type: 'cancel'; id: number }
  | { type: 'rehearse'; id: number; timeoutMs?: number }
  | { type: 'warmup'; id: number }
  | { type: 'limits'; id: number; memoryMb: number | null }
  | { type: 'prepare-checkpoint'; id: number }
  /** virtio-serial only: the host speaks first (a port has no connect to see). */
  | { type: 'attach' };

// ---- envd -> host ----------------------------------------------------------

export interface Hello {
  type: 'hello';
  bootId: string;
  connectCount: number;
  invocations: number;
  handlerType: string;
  /** snapfn, workers or lambda (null when the module did not load). */
  handlerShape: string | null;
  handlerConfig: unknown;
  loadError: Failure | null;
  afterRestore: HookRun | null;
  nodeVersion: string;
}

export type EnvdMessage =
  | Hello
  | { type: 'pong'; id: number; invocations: number; rssBytes: number }
  /** The response's status and headers; its body follows as DATA frames, then `result`. */
  | { type: 'response'; id: number; status: number; headers: Headers }
  /**
   * The end of an invocation. After a `response`, `ok: false` means the
   * body stream failed part way (the client's response is cut).
   */
  | { type: 'result'; id: number; ok: boolean; error?: Failure; logs: LogLine[]; logsTruncated: boolean; bodyBytes: number; waitUntil?: boolean }
  | { type: 'settled'; id: number; state: 'settled' | 'timeout' }
  | { type: 'rehearsed'; id: number; ok: boolean; failures: Failure[] }
  | { type: 'warmed'; id: number }
  | { type: 'limits-set'; id: number }
  | { type: 'checkpoint-ready'; id: number }
  | { type: 'error'; id?: number; error: Failure };

// ---- framing ---------------------------------------------------------------

const encoder = new TextEncoder();

// One buffer per frame: a frame is one write, and under gVisor every write is a syscall the Sentry serves.

export function jsonFrame(message: HostMessage | EnvdMessage): Uint8Array {
  const payload = encoder.encode(JSON.stringify(message));
  const out = new Uint8Array(HEADER_BYTES + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length + 1);
  out[4] = FRAME_JSON;
  out.set(payload, HEADER_BYTES);
  return out;
}

/** One chunk of `id`'s body (at most DATA_CHUNK_BYTES: split larger ones first). */
export function dataFrame(id: number, chunk: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + 4 + chunk.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, chunk.length + 5);
  out[4] = FRAME_DATA;
  view.setUint32(HEADER_BYTES, id);
  out.set(chunk, HEADER_BYTES + 4);
  return out;
}

export type Frame = { kind: typeof FRAME_JSON; message: unknown } | { kind: typeof FRAME_DATA; id: number; chunk: Uint8Array };

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

/** Reassembles frames from a byte stream, whatever the chunking. */
export class FrameDecoder {
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;

  /** Adds bytes; returns every frame completed by them. Throws ProtocolError on a malformed stream. */
  push(bytes: Uint8Array): Frame[] {
    this.#pending.push(bytes);
    this.#pendingBytes += bytes.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.#pendingBytes < 4) return frames;
      const head = this.#peek(4);
      const length = new DataView(head.buffer, head.byteOffset, 4).getUint32(0);
      if (length < 1 || length > MAX_FRAME_BYTES) throw new ProtocolError(`frame length ${length} is out of range`);
      if (this.#pendingBytes < 4 + length) return frames;
      const frame = this.#take(4 + length).subarray(4);
      const kind = frame[0];
      if (kind === FRAME_JSON) {
        frames.push({ kind: FRAME_JSON, message: JSON.parse(new TextDecoder().decode(frame.subarray(1))) as unknown });
      } else if (kind === FRAME_DATA) {
        if (frame.length < 5) throw new ProtocolError('a data frame without an id');
        const id = new DataView(frame.buffer, frame.byteOffset + 1, 4).getUint32(0);
        frames.push({ kind: FRAME_DATA, id, chunk: frame.subarray(5) });
      } else {
        throw new ProtocolError(`unknown frame kind ${kind}`);
      }
    }
  }

  #peek(n: number): Uint8Array {
    const first = this.#pending[0]!;
    if (first.length >= n) return first.subarray(0, n);
    return this.#concat().subarray(0, n);
  }

  #take(n: number): Uint8Array {
    const all = this.#pending.length === 1 ? this.#pending[0]! : this.#concat();
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#pending = rest.length > 0 ? [rest] : [];
    this.#pendingBytes = rest.length;
    return out;
  }

  #concat(): Uint8Array {
    const all = new Uint8Array(this.#pendingBytes);
    let offset = 0;
    for (const part of this.#pending) {
      all.set(part, offset);
      offset += part.length;
    }
    this.#pending = [all];
    return all;
  }
}
