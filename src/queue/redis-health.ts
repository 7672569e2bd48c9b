import type { Redis } from 'ioredis';
import { QueueUnavailableError } from './errors.ts';

/*
 * Whether Redis is there, as one connection sees it. ioredis says at once
 * when a socket closes (Redis killed or restarted: the common case), but
 * not when Redis stops answering on an open socket (stopped, overloaded, a
 * network partition): a PING every second with a deadline catches that.
 * Callers use it to answer `503 queue_unavailable` in a bounded time instead
 * of waiting on commands that ioredis holds until Redis is back.
 */

export interface RedisHealthState {
  available: boolean;
  /** Why not (the last connection error, or the PING that timed out). */
  reason?: string;
  /** ms since the epoch of the last change. */
  since: number;
}

export interface RedisHealthOptions {
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
}

/** A promise that rejects when Redis has been unavailable for a while; cancel() when done with it. */
export interface Watch {
  readonly lost: Promise<never>;
  cancel(): void;
}

export class RedisHealth {
  readonly #redis: Redis;
  readonly #pingTimeoutMs: number;
  readonly #listeners = new Set<(available: boolean) => void>();
  readonly #timer: NodeJS.Timeout;
  #state: RedisHealthState;
  #lastError: string | undefined;
  #pinging = false;
  #closed = false;

  constructor(redis: Redis, options: RedisHealthOptions = {}) {
    this.#redis = redis;
    this.#pingTimeoutMs = options.pingTimeoutMs ?? 1500;
    this.#state = redis.status === 'ready' ? { available: true, since: Date.now() } : { available: false, reason: 'connecting to Redis', since: Date.now() };
    redis.on('ready', this.#onReady);
    redis.on('error', this.#onError);
    redis.on('close', this.#onClose);
    redis.on('end', this.#onClose);
    this.#timer = setInterval(() => void this.#ping(), options.pingIntervalMs ?? 1000);
    this.#timer.unref();
  }

  get available(): boolean {
    return this.#state.available;
  }

  state(): RedisHealthState {
    return { ...this.#state };
  }

  /** Called with the new availability on every change. Returns the unsubscribe function. */
  onChange(listener: (available: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves true as soon as Redis is available, false if it is not within `ms`. */
  async whenAvailable(ms: number): Promise<boolean> {
    if (this.available) return true;
    if (this.#closed || ms <= 0) return false;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => done(false), ms);
      const off = this.onChange((available) => available && done(true));
      const done = (ok: boolean) => {
        clearTimeout(timer);
        off();
        resolve(ok);
      };
    });
  }

  /**
   * `lost` rejects with QueueUnavailableError once Redis has been
   * unavailable for `graceMs` without a break (a restart that is over
   * within it goes unnoticed by the caller).
   */
  watch(what: string, graceMs: number): Watch {
    let reject!: (err: Error) => void;
    const lost = new Promise<never>((_, r) => (reject = r));
    lost.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const arm = (available: boolean) => {
      if (available) {
        clearTimeout(timer);
        timer = undefined;
      } else {
        timer ??= setTimeout(() => reject(this.unavailableError(what)), graceMs);
      }
    };
    const off = this.onChange(arm);
    arm(this.available);
    return {
      lost,
      cancel: () => {
        off();
        clearTimeout(timer);
      },
    };
  }

  unavailableError(what: string): QueueUnavailableError {
    return new QueueUnavailableError(`${what}: Redis is unavailable (${this.#state.reason ?? 'not connected'})`);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#redis.off('ready', this.#onReady);
    this.#redis.off('error', this.#onError);
    this.#redis.off('close', this.#onClose);
    this.#redis.off('end', this.#onClose);
    this.#listeners.clear();
  }

  #set(available: boolean, reason?: string): void {
    if (this.#state.available === available && (available || this.#state.reason === reason)) return;
    const changed = this.#state.available !== available;
    this.#state = { available, ...(reason ? { reason } : {}), since: changed ? Date.now() : this.#state.since };
    if (changed) for (const listener of [...this.#listeners]) listener(available);
  }

  readonly #onReady = () => {
    this.#lastError = undefined;
    this.#set(true);
  };

  readonly #onError = (err: Error) => {
    this.#lastError = err.message;
    if (!this.#state.available) this.#set(false, err.message);
  };

  readonly #onClose = () => {
    this.#set(false, this.#lastError ?? 'the connection to Redis closed');
  };

  async #ping(): Promise<void> {
    if (this.#pinging || this.#closed || this.#redis.status !== 'ready') return;
    this.#pinging = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      const answered = await Promise.race([
        this.#redis.ping().then(
          () => true,
          () => false,
        ),
        new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), this.#pingTimeoutMs))),
      ]);
      if (this.#closed) return;
      if (answered && this.#redis.status === 'ready') this.#set(true);
      else if (!answered) this.#set(false, `Redis did not answer PING within ${this.#pingTimeoutMs} ms`);
    } finally {
      clearTimeout(timer);
      this.#pinging = false;
    }
  }
}
