import type net from 'node:net';
import { EnvdHello, EnvdMessageSchema } from './envd-messages.ts';
import { dataFrame, DATA_CHUNK_BYTES, FRAME_DATA, FrameDecoder, jsonFrame, type EnvdMessage, type HostMessage, type RequestHead } from './protocol.ts';

export { EnvdHello } from './envd-messages.ts';

export class AfterRestoreFailedError extends Error {
  override readonly name = 'AfterRestoreFailedError';
}

/**
 * A restored sandbox whose afterRestore hook threw must not serve: it
 * fails here, in the driver, so the sandbox is discarded like any failed
 * restore (the function and its other sandboxes are unaffected).
 */
export function assertRestoredCleanly(hello: EnvdHello): void {
  const hook = hello.afterRestore;
  if (hook && !hook.ok) throw new AfterRestoreFailedError(`afterRestore failed: ${hook.error?.message ?? 'unknown error'}`);
}

/** What envd is told about an invocation besides the request (Lambda's context and Workers' env are built from it). */
export interface EnvdInvocation {
  id: string;
  functionName: string;
  version?: number;
  memoryMb: number;
  env: Record<string, string>;
}

export type EnvdResult = Extract<EnvdMessage, { type: 'result' }>;

/** An invocation in flight: its response head and streaming body once envd sends them, its end later. */
export interface EnvdReply {
  /** Absent when the invocation ended before a response existed (a throw, a load error): see `result`. */
  /**
   * `complete`: the whole body and the result came with the head (a small
   * response is one write from envd), so there is nothing left to stream.
   */
  head?: { status: number; headers: Array<[string, string]>; body: ReadableStream<Uint8Array>; complete: boolean };
  /** The end: logs, bytes, and whether the body stream completed. Rejects with EnvdClosedError or EnvdTimeoutError. */
  result: Promise<EnvdResult>;
}

export class EnvdClosedError extends Error {
  constructor(message = 'envd connection closed') {
    super(message);
    this.name = 'EnvdClosedError';
  }
}

export class EnvdTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`envd did not answer within ${timeoutMs} ms`);
    this.name = 'EnvdTimeoutError';
  }
}

/** Response bytes buffered on the host before the channel stops reading (backpressure to envd). */
const RESPONSE_HIGH_WATER_BYTES = 1024 * 1024;

type Waiter = { resolve: (m: EnvdMessage) => void; reject: (e: Error) => void };

interface Streaming {
  controller: ReadableStreamDefaultController<Uint8Array>;
  queuedBytes: number;
}

/**
 * One live channel to envd, in the framing of protocol.ts: control messages
 * as JSON frames, bodies as DATA frames in both directions. One invocation
 * at a time; a response body is a ReadableStream whose consumer sets the
 * pace (the channel stops reading while it is full).
 */
export class EnvdConnection {
  readonly #socket: net.Socket;
  readonly #decoder = new FrameDecoder();
  #nextId = 1;
  #waiting = new Map<number | 'hello', Waiter>();
  #early: EnvdMessage[] = [];
  #streams = new Map<number, Streaming>();
  /** Response bodies not yet handed to their invoke() caller (the result may already have closed them). */
  #bodies = new Map<number, ReadableStream<Uint8Array>>();
  #closed = false;
  #paused = false;
  #background: Promise<void> = Promise.resolve();

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on('data', (data: Buffer) => this.#onData(data));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#closed = true;
      for (const w of this.#waiting.values()) w.reject(new EnvdClosedError());
      this.#waiting.clear();
      for (const s of this.#streams.values()) s.controller.error(new EnvdClosedError('the sandbox went away during the response'));
      this.#streams.clear();
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  hello(timeoutMs: number): Promise<EnvdHello> {
    return this.#await('hello', timeoutMs) as Promise<EnvdHello>;
  }

  async ping(timeoutMs = 2000): Promise<{ invocations: number; rssBytes: number }> {
    const reply = await this.#request({ type: 'ping', id: this.#nextId }, timeoutMs);
    if (reply.type !== 'pong') throw new Error(`unexpected envd reply ${reply.type}`);
    return reply;
  }

  /**
   * Starts an invocation: the head goes out at once, the body (bytes or a
   * stream) after it in chunks. Resolves when envd answers with a response
   * head or ends the invocation early; everything until the end of the
   * response body is bounded by `hardTimeoutMs`, past which the channel is
   * closed (the driver kills the sandbox).
   */
  async invoke(
    request: Omit<RequestHead, 'hasBody'>,
    body: Uint8Array | ReadableStream<Uint8Array> | undefined,
    invocation: EnvdInvocation,
    limits: { timeoutMs: number; hardTimeoutMs: number; maxResponseBytes: number },
  ): Promise<EnvdReply> {
    if (this.#closed) throw new EnvdClosedError();
    const id = this.#nextId++;
    const { env, ...info } = invocation;
    const hasBody = body !== undefined && request.method !== 'GET' && request.method !== 'HEAD';
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new EnvdTimeoutError(limits.hardTimeoutMs));
        // envd stopped answering (a synchronous loop never yields): nothing more will come.
        this.close();
      }, limits.hardTimeoutMs);
    });
    expired.catch(() => {});
    const first = this.#await(id, limits.hardTimeoutMs + 1000);
    this.#send({ type: 'invoke', id, request: { ...request, hasBody }, env, timeoutMs: limits.timeoutMs, maxResponseBytes: limits.maxResponseBytes, invocation: info });
    if (hasBody) void this.#sendBody(id, body!);
    const result = new Promise<EnvdResult>((resolve, reject) => {
      const settle = (message: EnvdMessage) => {
        if (message.type === 'result') return resolve(message);
        reject(new Error(`unexpected envd reply ${message.type}`));
      };
      first.then((message) => {
        if (message.type === 'response') this.#await(id, 2 ** 31 - 1).then(settle, reject);
        else settle(message);
      }, reject);
    });
    const ended = Promise.race([result, expired]).finally(() => clearTimeout(timer));
    ended.catch(() => {});
    // ctx.waitUntil work may run on after the result: the sandbox is busy until it settles too.
    const busy = ended.then(
      (end) => (end.waitUntil ? this.#await(id, limits.timeoutMs + 1000).then(() => {}) : undefined),
      () => {},
    );
    this.#background = Promise.all([this.#background, busy.catch(() => {})]).then(() => {});
    const message = await Promise.race([first, expired]);
    const stream = this.#bodies.get(id);
    this.#bodies.delete(id);
    if (message.type !== 'response' || !stream) return { result: ended };
    // Frames that came in the head's read are all handled by now: a result among them ended the stream.
    const complete = !this.#streams.has(id);
    return { head: { status: message.status, headers: message.headers, body: stream, complete }, result: ended };
  }

  /** Resolves once every invocation so far has finished streaming and its waitUntil work has settled (or the channel is gone). */
  settled(): Promise<void> {
    return this.#background;
  }

  /** Warm envd's own code paths before a checkpoint (never runs the handler); runs the function's beforeSnapshot hook. */
  async warmup(timeoutMs = 30_000): Promise<void> {
    const reply = await this.#request({ type: 'warmup', id: this.#nextId }, timeoutMs);
    // The function's beforeSnapshot hook failing is the one error warm-up can have.
    if (reply.type === 'error') throw new Error(`${reply.error.code}: ${reply.error.message}`);
    if (reply.type !== 'warmed') throw new Error(`unexpected envd reply ${reply.type}`);
  }

  /**
   * Run envd's invocation path with its own stand-in handler (never the
   * user's), to fault in what the first real request would otherwise pay for
   * right after a restore.
   */
  async rehearse(timeoutMs = 10_000): Promise<void> {
    const reply = await this.#request({ type: 'rehearse', id: this.#nextId }, timeoutMs);
    if (reply.type !== 'rehearsed') throw new Error(`unexpected envd reply ${reply.type}`);
    if (!reply.ok) throw new Error(`envd rehearsal failed: ${JSON.stringify(reply.failures).slice(0, 300)}`);
  }

  /** QEMU guests: the function's memory limit, applied by envd to its own cgroup. May be sent before hello. */
  async applyLimits(memoryMb: number | null, timeoutMs: number): Promise<void> {
    const reply = await this.#request({ type: 'limits', id: this.#nextId, memoryMb }, timeoutMs);
    if (reply.type === 'error') throw new Error(`envd could not apply the sandbox limits: ${reply.error.message}`);
    if (reply.type !== 'limits-set') throw new Error(`unexpected envd reply ${reply.type}`);
  }

  /** virtio-serial: the host speaks first, since a port has no connect for the guest to see. */
  attach(): void {
    this.#send({ type: 'attach' });
  }

  /** Ask envd to hang up and go back to waiting for a socket (the next restore's). */
  async prepareCheckpoint(timeoutMs = 5000): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      if (this.#closed) resolve();
      else this.#socket.once('close', () => resolve());
    });
    await this.#request({ type: 'prepare-checkpoint', id: this.#nextId }, timeoutMs);
    await closed;
  }

  close(): void {
    this.#socket.destroy();
  }

  #send(message: HostMessage): boolean {
    return this.#socket.write(jsonFrame(message));
  }

  async #sendBody(id: number, body: Uint8Array | ReadableStream<Uint8Array>): Promise<void> {
    const write = async (chunk: Uint8Array) => {
      for (let offset = 0; offset < chunk.length; offset += DATA_CHUNK_BYTES) {
        if (this.#closed) return;
        const ok = this.#socket.write(dataFrame(id, chunk.subarray(offset, offset + DATA_CHUNK_BYTES)));
        if (!ok) await this.#drainedOrClosed();
      }
    };
    try {
      if (body instanceof Uint8Array) await write(body);
      else for await (const chunk of body) await write(chunk);
      if (!this.#closed) this.#send({ type: 'request-end', id });
    } catch {
      // The client's body broke off: the handler's request body errors.
      if (!this.#closed) this.#send({ type: 'cancel', id });
    }
  }

  /**
   * A socket destroyed while full never emits 'drain': waiting for it alone
   * left a request body unread for good once its sandbox was gone (the
   * handler answered without reading it), and the HTTP server then cut the
   * client's upload off (EPIPE instead of the 200 already sent). Once closed,
   * the rest of the body is read and dropped (write() returns at once).
   */
  #drainedOrClosed(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#socket.off('drain', done);
        this.#socket.off('close', done);
        resolve();
      };
      this.#socket.once('drain', done);
      this.#socket.once('close', done);
    });
  }

  /** Sends `msg` under the next id; replies are matched to requests by it. */
  #request(msg: Exclude<HostMessage, { type: 'attach' }>, timeoutMs: number): Promise<EnvdMessage> {
    if (this.#closed) return Promise.reject(new EnvdClosedError());
    const id = this.#nextId++;
    const reply = this.#await(id, timeoutMs);
    this.#send({ ...msg, id } as HostMessage);
    return reply;
  }

  #await(key: number | 'hello', timeoutMs: number): Promise<EnvdMessage> {
    const early = this.#early.findIndex((r) => (key === 'hello' ? r.type === 'hello' : 'id' in r && r.id === key));
    if (early >= 0) return Promise.resolve(this.#early.splice(early, 1)[0]!);
    if (this.#closed) return Promise.reject(new EnvdClosedError());
    return new Promise<EnvdMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(key);
        reject(new EnvdTimeoutError(timeoutMs));
      }, timeoutMs);
      this.#waiting.set(key, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  #openStream(id: number): void {
    let streaming!: Streaming;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        streaming = { controller, queuedBytes: 0 };
        this.#streams.set(id, streaming);
      },
      pull: () => {
        streaming.queuedBytes = 0;
        this.#resume();
      },
      cancel: () => {
        // The client went away: envd stops the handler's stream and ends the invocation.
        this.#streams.delete(id);
        this.#resume();
        if (!this.#closed) this.#send({ type: 'cancel', id });
      },
    });
    this.#bodies.set(id, body);
  }

  #resume(): void {
    if (this.#paused) {
      this.#paused = false;
      this.#socket.resume();
    }
  }

  #onData(data: Buffer): void {
    let frames;
    try {
      frames = this.#decoder.push(data);
    } catch (err) {
      // A channel we cannot read is a sandbox we cannot trust: drop it.
      for (const w of this.#waiting.values()) w.reject(new Error(`malformed envd frame: ${(err as Error).message}`));
      this.close();
      return;
    }
    for (const frame of frames) {
      if (frame.kind === FRAME_DATA) {
        const stream = this.#streams.get(frame.id);
        if (!stream) continue;
        // The decoder's chunk is a view into a buffer it may reuse.
        stream.controller.enqueue(new Uint8Array(frame.chunk));
        stream.queuedBytes += frame.chunk.length;
        if (stream.queuedBytes >= RESPONSE_HIGH_WATER_BYTES && !this.#paused) {
          this.#paused = true;
          this.#socket.pause();
        }
        continue;
      }
      const parsed = EnvdMessageSchema.safeParse(frame.message);
      if (!parsed.success) {
        // A reply we cannot read fails its request now instead of timing out.
        const id = (frame.message as { id?: unknown } | undefined)?.id;
        const waiter = typeof id === 'number' ? this.#waiting.get(id) : undefined;
        if (waiter) {
          this.#waiting.delete(id as number);
          waiter.reject(new Error(`malformed envd reply: ${JSON.stringify(frame.message).slice(0, 200)}`));
        }
        continue;
      }
      const message = parsed.data as EnvdMessage;
      if (message.type === 'response') this.#openStream(message.id);
      if (message.type === 'result') {
        const stream = this.#streams.get(message.id);
        this.#streams.delete(message.id);
        if (stream) {
          if (message.ok) stream.controller.close();
          else stream.controller.error(new Error(`${message.error?.code ?? 'handler_error'}: ${message.error?.message ?? 'the response stream failed'}`));
        }
      }
      const key = message.type === 'hello' ? 'hello' : 'id' in message && message.id !== undefined ? message.id : undefined;
      if (key === undefined) continue;
      const waiter = this.#waiting.get(key);
      if (waiter) {
        this.#waiting.delete(key);
        waiter.resolve(message);
      } else {
        this.#early.push(message);
      }
    }
  }
}
