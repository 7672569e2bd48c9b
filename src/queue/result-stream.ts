import type { Redis } from 'ioredis';
import { openResult, sealResult } from '../secrets/at-rest.ts';
import type { SecretsKey } from '../secrets/envelope.ts';
import type { InvocationResultEvent } from './invocation-processor.ts';
import { KEY_PREFIX } from './job-data.ts';

/*
 * How invocation logs get home from a worker-only node. The gateway owns the
 * invocation log; a node without it publishes each attempt's result (logs
 * included) to a Redis stream, and the gateway appends what it reads. A
 * consumer group makes each entry land once however many gateways read.
 * Capped: if no gateway reads for a long time, the oldest entries go.
 * With a secrets key the response in each entry is sealed (the gateway
 * only counts its bytes for the log), like in the job's return value.
 */

export const RESULT_STREAM_KEY = `${KEY_PREFIX}:invocation-results`;
const MAX_ENTRIES = 100_000;

export class ResultStream {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #secretsKey: SecretsKey | undefined;

  /** `redis` stays the caller's. Reading blocks its connection: give `consume` a dedicated one. */
  constructor(redis: Redis, options: { key?: string; secretsKey?: SecretsKey | undefined } = {}) {
    this.#redis = redis;
    this.#key = options.key ?? RESULT_STREAM_KEY;
    this.#secretsKey = options.secretsKey;
  }

  async publish(event: InvocationResultEvent): Promise<void> {
    const stored = this.#secretsKey ? { ...event, result: sealResult(this.#secretsKey, event.invocationId, event.result) } : event;
    await this.#redis.xadd(this.#key, 'MAXLEN', '~', String(MAX_ENTRIES), '*', 'event', JSON.stringify(stored));
  }

  /**
   * Hands every entry to `handle`, at least once: an entry whose handler
   * threw, or whose reader died, stays pending and is delivered again when
   * a consumer of the same name starts (its backlog is read first).
   * Runs until `signal` aborts.
   */
  async consume(group: string, consumer: string, handle: (event: InvocationResultEvent) => Promise<void>, signal: AbortSignal, blockMs = 2000): Promise<void> {
    await this.#redis.xgroup('CREATE', this.#key, group, '0', 'MKSTREAM').catch((err: Error) => {
      if (!err.message.includes('BUSYGROUP')) throw err;
    });
    // First our own unacknowledged entries (a previous run died mid-way), then new ones.
    let cursor = '0';
    while (!signal.aborted) {
      const reply = (await this.#redis.xreadgroup('GROUP', group, consumer, 'COUNT', 100, 'BLOCK', blockMs, 'STREAMS', this.#key, cursor)) as Array<[string, Array<[string, string[]]>]> | null;
      const entries = reply?.[0]?.[1] ?? [];
      if (cursor !== '>') cursor = entries.length === 0 ? '>' : entries[entries.length - 1]![0];
      for (const [id, fields] of entries) {
        const json = fields[fields.indexOf('event') + 1];
        try {
          if (json) await handle(this.#opened(JSON.parse(json) as InvocationResultEvent));
          await this.#redis.xack(this.#key, group, id);
        } catch {
          // Left pending: redelivered when a consumer of this name starts again.
        }
      }
    }
  }

  #opened(event: InvocationResultEvent): InvocationResultEvent {
    return { ...event, result: openResult(this.#secretsKey, event.invocationId, event.result) };
  }
}
