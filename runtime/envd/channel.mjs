// @ts-check
// envd's end of the host channel: frames of src/sandbox/envd/protocol.ts over
// a byte stream (a Unix socket, or the virtio-serial port). Control messages
// are handed to `onMessage` strictly one after another (one invocation at a
// time); body chunks go straight to the sink of their invocation, so a
// request body streams in while its invocation runs.

import { DATA_CHUNK_BYTES, FRAME_DATA, FrameDecoder, dataFrame, jsonFrame } from '../../src/sandbox/envd/protocol.ts';

/** @typedef {import('../../src/sandbox/envd/protocol.ts').EnvdMessage} EnvdMessage */
/** @typedef {import('../../src/sandbox/envd/protocol.ts').HostMessage} HostMessage */

/**
 * @typedef {object} ByteStream
 * @property {(event: string, listener: (...args: any[]) => void) => any} on
 * @property {(event: string, listener: (...args: any[]) => void) => any} once
 * @property {(bytes: Uint8Array) => boolean} write
 * @property {(callback?: () => void) => any} end
 * @property {() => any} destroy
 */

export class Channel {
  /**
   * @param {ByteStream} stream
   * @param {{ onMessage: (message: HostMessage, channel: Channel) => Promise<void>, onError: (err: unknown) => void }} handlers
   */
  constructor(stream, handlers) {
    this.stream = stream;
    this.closed = false;
    this.corked = false;
    /** @type {Map<number, { push(chunk: any): void }>} */
    this.sinks = new Map();
    // A body's frames follow its invoke message at once, before the (queued)
    // invocation has attached its sink: they wait here for it.
    /** @type {Map<number, any[]>} */
    this.early = new Map();
    const decoder = new FrameDecoder();
    let chain = Promise.resolve();
    stream.on('data', (/** @type {Uint8Array} */ bytes) => {
      let frames;
      try {
        frames = decoder.push(bytes);
      } catch (err) {
        handlers.onError(err);
        this.close();
        return;
      }
      for (const frame of frames) {
        if (frame.kind === FRAME_DATA) {
          this.#deliver(frame.id, frame.chunk);
          continue;
        }
        const message = /** @type {HostMessage} */ (frame.message);
        // Ends and cancels reach their invocation at once, not after it.
        if (message.type === 'request-end' || message.type === 'cancel') {
          this.#deliver(message.id, message.type === 'cancel' ? CANCEL : END);
          continue;
        }
        // Invocations run side by side (up to the function's concurrency, which
        // the host enforces); everything else is handled strictly in order.
        if (message.type === 'invoke') handlers.onMessage(message, this).catch(handlers.onError);
        else chain = chain.then(() => handlers.onMessage(message, this)).catch(handlers.onError);
      }
    });
    stream.on('close', () => {
      this.closed = true;
      for (const sink of this.sinks.values()) sink.push(CANCEL);
    });
    stream.on('error', () => {});
  }

  /** @param {EnvdMessage} message */
  send(message) {
    if (this.closed) return true;
    this.#batch();
    return this.stream.write(jsonFrame(message));
  }

  /**
   * Writes within one turn of the event loop leave as one: a small
   * response's head, body and result are one write, not three (each write
   * is a syscall, and under gVisor a syscall is served by the Sentry).
   */
  #batch() {
    const socket = /** @type {any} */ (this.stream);
    if (this.corked || typeof socket.cork !== 'function') return;
    this.corked = true;
    socket.cork();
    setImmediate(() => {
      this.corked = false;
      socket.uncork();
    });
  }

  /**
   * One body chunk of invocation `id`, cut to frame size; resolves once the
   * stream has room again, so a slow host slows the producer.
   * @param {number} id
   * @param {Uint8Array} chunk
   */
  async sendData(id, chunk) {
    for (let offset = 0; offset < chunk.length; offset += DATA_CHUNK_BYTES) {
      if (this.closed) return;
      this.#batch();
      const ok = this.stream.write(dataFrame(id, chunk.subarray(offset, offset + DATA_CHUNK_BYTES)));
      if (!ok) await new Promise((resolve) => this.stream.once('drain', resolve));
    }
  }

  /**
   * Where DATA frames and the end or cancel of invocation `id` go (those
   * that came before are handed over at once).
   * @param {number} id
   * @param {{ push(chunk: Uint8Array | typeof END | typeof CANCEL): void }} sink
   */
  attach(id, sink) {
    this.sinks.set(id, sink);
    const early = this.early.get(id);
    this.early.delete(id);
    for (const item of early ?? []) sink.push(item);
    return () => this.sinks.delete(id);
  }

  /** @param {number} id @param {any} item */
  #deliver(id, item) {
    const sink = this.sinks.get(id);
    if (sink) return sink.push(item);
    let list = this.early.get(id);
    if (!list) this.early.set(id, (list = []));
    list.push(item);
  }

  close() {
    this.closed = true;
    this.stream.end(() => this.stream.destroy());
  }
}

/** Pushed to a sink: the host sent the whole body. */
export const END = Symbol('end');
/** Pushed to a sink: the host gave up on the invocation (its client left) or the channel closed. */
export const CANCEL = Symbol('cancel');
