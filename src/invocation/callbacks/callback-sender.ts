import http from 'node:http';
import https from 'node:https';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { redactor } from '../../secrets/redact.ts';
import { closeConnections, cutConnections } from '../../queue/redis-connection.ts';
import { endRetriesOnceCut } from '../../queue/worker-retries.ts';
import type { CallbackDelivery, CallbackPayload } from '../../schemas/invocation.ts';
import { CALLBACK_QUEUE, readCallbackState, writeCallbackState, type CallbackJob } from './callback-outbox.ts';
import type { CallbackSettings } from './callback-settings.ts';
import { SIGNATURE_HEADER, signCallback } from './callback-signature.ts';
import { checkCallbackUrl, guardedLookup } from './callback-target.ts';

/** What is read of a receiver's answer: its status matters, its body does not. */
const MAX_ANSWER_BYTES = 64 * 1024;

export interface CallbackSenderOptions {
  /** A connection of the caller's for the state records (not the worker's blocking one). */
  redis: Redis;
  settings: CallbackSettings;
  /** The version's secret values: an error message is redacted before it leaves, as in the log. */
  secretValuesOf: (name: string, version: number) => Promise<string[]>;
  connect: (name: string) => Redis;
  onError: (err: Error) => void;
}

/**
 * Sends callbacks from the callbacks queue (gateway nodes: they hold the
 * allow-list and the secret). 2xx is delivered; 408, 429, 5xx and network
 * failures are retried with backoff until the job's attempts run out;
 * any other answer (3xx included: redirects are not followed, they could
 * lead anywhere) and a denied address fail it at once.
 */
export class CallbackSender {
  readonly #worker: Worker<CallbackJob>;
  readonly #options: CallbackSenderOptions;
  readonly #connection: Redis;
  #cut = false;

  constructor(options: CallbackSenderOptions) {
    this.#options = options;
    this.#connection = options.connect('snapfn-callbacks');
    this.#connection.on('error', () => {}); // the queue's connection reports Redis trouble already
    this.#worker = new Worker<CallbackJob>(CALLBACK_QUEUE, (job) => this.#send(job), {
      connection: this.#connection,
      prefix: 'snapfn',
      concurrency: 8,
      runRetryDelay: 1000,
    });
    this.#worker.on('error', (err) => options.onError(err));
    endRetriesOnceCut(this.#worker, () => this.#cut);
  }

  async close(): Promise<void> {
    await this.#worker.close();
    await closeConnections(this.#connection);
  }

  /** Ends its connection now (a forced shutdown). */
  cut(): void {
    this.#cut = true;
    cutConnections(this.#connection);
  }

  async #send(job: Job<CallbackJob>): Promise<void> {
    const { settings, redis } = this.#options;
    const { payload, url } = job.data;
    const attempt = job.attemptsMade + 1;
    const last = attempt >= (job.opts.attempts ?? 1);
    const previous = await readCallbackState(redis, payload.id);
    const record = (state: Omit<CallbackDelivery, 'url' | 'attempts'>) => writeCallbackState(redis, payload.id, { url, attempts: attempt, ...state });
    if (previous?.state === 'delivered') return;
    let target: URL;
    try {
      // Again at send time: the allow-list may have changed since the invocation was accepted.
      target = checkCallbackUrl(url, settings.allow);
    } catch (err) {
      await record({ state: 'failed', lastError: (err as Error).message });
      throw new UnrecoverableError((err as Error).message);
    }
    const body = JSON.stringify(await this.#redacted(payload));
    let status: number;
    try {
      status = await post(target, body, {
        'content-type': 'application/json',
        'user-agent': 'snapfn-callback/1',
        'x-fn-invocation-id': payload.id,
        'x-fn-callback-attempt': String(attempt),
        ...(settings.secret ? { [SIGNATURE_HEADER]: signCallback(settings.secret, body) } : {}),
      }, settings);
    } catch (err) {
      const message = (err as Error).message;
      const denied = (err as { code?: string }).code === 'ECALLBACKDENIED';
      await record({ state: denied || last ? 'failed' : 'pending', lastError: message });
      throw denied ? new UnrecoverableError(message) : err;
    }
    if (status >= 200 && status < 300) {
      await record({ state: 'delivered', lastStatus: status, deliveredAt: new Date().toISOString() });
      return;
    }
    const retryable = status === 408 || status === 429 || status >= 500;
    await record({ state: retryable && !last ? 'pending' : 'failed', lastStatus: status });
    const message = `the receiver answered HTTP ${status}`;
    throw retryable ? new Error(message) : new UnrecoverableError(message);
  }

  async #redacted(payload: CallbackPayload): Promise<CallbackPayload> {
    if (!payload.error || payload.version === undefined) return payload;
    const redact = redactor(await this.#options.secretValuesOf(payload.function, payload.version).catch(() => []));
    return { ...payload, error: { code: payload.error.code, message: redact(payload.error.message) } };
  }
}

function post(url: URL, body: string, headers: Record<string, string>, settings: CallbackSettings): Promise<number> {
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(url, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      lookup: guardedLookup(settings.allow),
      timeout: settings.bounds.timeoutMs,
      agent: false,
    });
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${settings.bounds.timeoutMs} ms`)), settings.bounds.timeoutMs);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${settings.bounds.timeoutMs} ms`)));
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on('response', (res) => {
      let read = 0;
      res.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read > MAX_ANSWER_BYTES) res.destroy();
      });
      const done = () => {
        clearTimeout(timer);
        resolve(res.statusCode ?? 0);
      };
      res.on('end', done);
      res.on('close', done);
    });
    req.end(body);
  });
}
