import type net from 'node:net';
import { z } from 'zod';
import { InvocationOutcome, type WireRequest } from '../../schemas/invocation.ts';

/** What envd says first on every connection (after boot and after each restore). */
export const EnvdHello = z.object({
  type: z.literal('hello'),
  bootId: z.string(),
  connectCount: z.number(),
  invocations: z.number(),
  handlerType: z.string(),
  /** snapfn, workers or lambda (null when the module did not load). */
  handlerShape: z.string().nullable().optional(),
  handlerConfig: z.unknown(),
  loadError: z.object({ code: z.string(), message: z.string(), stack: z.string().optional() }).nullable(),
  /** The function's afterRestore hook, run before this hello (absent after boot, or without a hook). */
  afterRestore: z
    .object({ ok: z.boolean(), ms: z.number(), error: z.object({ code: z.string(), message: z.string(), stack: z.string().optional() }).optional() })
    .nullable()
    .optional(),
  nodeVersion: z.string(),
});
export type EnvdHello = z.infer<typeof EnvdHello>;

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

const Reply = z.union([
  EnvdHello,
  z.object({ type: z.literal('pong'), id: z.number(), invocations: z.number(), rssBytes: z.number() }),
  z.object({ type: z.literal('result'), id: z.number(), outcome: InvocationOutcome, waitUntil: z.boolean().optional() }),
  z.object({ type: z.literal('settled'), id: z.number(), state: z.enum(['settled', 'timeout']) }),
  z.object({ type: z.literal('checkpoint-ready'), id: z.number() }),
  z.object({ type: z.literal('warmed'), id: z.number() }),
  z.object({ type: z.literal('rehearsed'), id: z.number(), ok: z.boolean(), outcomes: z.array(InvocationOutcome) }),
  z.object({ type: z.literal('error'), id: z.number().optional(), error: z.object({ code: z.string(), message: z.string() }) }),
]);
type Reply = z.infer<typeof Reply>;

/** What envd is told about an invocation besides the request (Lambda's context and Workers' env are built from it). */
export interface EnvdInvocation {
  id: string;
  functionName: string;
  version?: number;
  memoryMb: number;
  env: Record<string, string>;
}

export class EnvdClosedError extends Error {
  constructor(message = 'envd connection closed') {
    super(message);
    this.name = 'EnvdClosedError';
  }
}

/** One live connection to envd: newline-delimited JSON, one request at a time. */
export class EnvdConnection {
  readonly #socket: net.Socket;
  #buffered = '';
  #nextId = 1;
  #waiting = new Map<number | 'hello', { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  #early: Reply[] = [];
  #closed = false;
  #background: Promise<void> = Promise.resolve();

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (data: string) => this.#onData(data));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#closed = true;
      for (const w of this.#waiting.values()) w.reject(new EnvdClosedError());
      this.#waiting.clear();
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  hello(timeoutMs: number): Promise<EnvdHello> {
    return this.#await('hello', timeoutMs) as Promise<EnvdHello>;
  }

  async ping(timeoutMs = 2000): Promise<{ invocations: number; rssBytes: number }> {
    const reply = await this.#request({ type: 'ping' }, timeoutMs);
    if (reply.type !== 'pong') throw new Error(`unexpected envd reply ${reply.type}`);
    return reply;
  }

  /**
   * Resolves with the outcome, or rejects with EnvdClosedError / a timeout
   * Error. Work the handler handed to ctx.waitUntil goes on after it:
   * `settled()` says when it is done.
   */
  async invoke(request: WireRequest, invocation: EnvdInvocation, timeoutMs: number, hardTimeoutMs: number): Promise<InvocationOutcome> {
    const { env, ...info } = invocation;
    const id = this.#nextId;
    const reply = await this.#request({ type: 'invoke', request, env, timeoutMs, invocation: info }, hardTimeoutMs);
    if (reply.type !== 'result') throw new Error(`unexpected envd reply ${reply.type}`);
    if (reply.waitUntil) {
      // envd bounds it by the invocation's deadline; the grace covers a sandbox too busy to say so.
      const settled = this.#await(id, timeoutMs + 1000).then(
        () => {},
        () => {},
      );
      this.#background = Promise.all([this.#background, settled]).then(() => {});
    }
    return reply.outcome;
  }

  /** Resolves once the waitUntil work of every invocation so far has settled (or the connection is gone). */
  settled(): Promise<void> {
    return this.#background;
  }

  /** Warm envd's own code paths before a checkpoint (never runs the handler). */
  async warmup(timeoutMs = 10_000): Promise<void> {
    const reply = await this.#request({ type: 'warmup' }, timeoutMs);
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
    const reply = await this.#request({ type: 'rehearse' }, timeoutMs);
    if (reply.type !== 'rehearsed') throw new Error(`unexpected envd reply ${reply.type}`);
    if (reply.ok !== true) throw new Error(`envd rehearsal failed: ${JSON.stringify(reply.outcomes).slice(0, 300)}`);
  }

  /** Ask envd to hang up and go back to waiting for a socket (the next restore's). */
  async prepareCheckpoint(timeoutMs = 5000): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      if (this.#closed) resolve();
      else this.#socket.once('close', () => resolve());
    });
    await this.#request({ type: 'prepare-checkpoint' }, timeoutMs);
    await closed;
  }

  close(): void {
    this.#socket.destroy();
  }

  #request(msg: Record<string, unknown>, timeoutMs: number): Promise<Reply> {
    if (this.#closed) return Promise.reject(new EnvdClosedError());
    const id = this.#nextId++;
    const reply = this.#await(id, timeoutMs);
    this.#socket.write(JSON.stringify({ ...msg, id }) + '\n');
    return reply;
  }

  #await(key: number | 'hello', timeoutMs: number): Promise<Reply> {
    const early = this.#early.findIndex((r) => (key === 'hello' ? r.type === 'hello' : 'id' in r && r.id === key));
    if (early >= 0) return Promise.resolve(this.#early.splice(early, 1)[0]!);
    if (this.#closed) return Promise.reject(new EnvdClosedError());
    return new Promise<Reply>((resolve, reject) => {
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

  #onData(data: string): void {
    this.#buffered += data;
    let nl: number;
    while ((nl = this.#buffered.indexOf('\n')) >= 0) {
      const line = this.#buffered.slice(0, nl);
      this.#buffered = this.#buffered.slice(nl + 1);
      if (!line) continue;
      const json = safeJson(line);
      const parsed = Reply.safeParse(json);
      if (!parsed.success) {
        // A reply we cannot read fails its request now instead of timing out.
        const id = (json as { id?: unknown } | undefined)?.id;
        const waiter = typeof id === 'number' ? this.#waiting.get(id) : undefined;
        if (waiter) {
          this.#waiting.delete(id as number);
          waiter.reject(new Error(`malformed envd reply: ${line.slice(0, 200)}`));
        }
        continue;
      }
      const reply = parsed.data;
      const key = reply.type === 'hello' ? 'hello' : 'id' in reply && reply.id !== undefined ? reply.id : undefined;
      if (key === undefined) continue;
      const waiter = this.#waiting.get(key);
      if (waiter) {
        this.#waiting.delete(key);
        waiter.resolve(reply);
      } else {
        this.#early.push(reply);
      }
    }
  }
}

export class EnvdTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`envd did not answer within ${timeoutMs} ms`);
    this.name = 'EnvdTimeoutError';
  }
}

function safeJson(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}
