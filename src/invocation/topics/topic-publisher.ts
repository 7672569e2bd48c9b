import crypto from 'node:crypto';
import type { FanOutTarget, InvocationQueue } from '../../queue/invocation-queue.ts';
import type { PublishAccepted, WireRequest } from '../../schemas/invocation.ts';
import type { TopicSubscriptions } from './topic-subscriptions.ts';

/** Headers a subscriber sees on a topic delivery, so it can tell one from an HTTP call and drop a redelivery. */
export const TOPIC_HEADERS = { trigger: 'x-fn-trigger', topic: 'x-fn-topic', messageId: 'x-fn-message-id' } as const;

/** The publisher's headers that are for snapfn (or its auth), not for the subscribers. */
const DROPPED = new Set(['authorization', 'host', 'content-length', 'connection', 'transfer-encoding', 'x-message-id', 'idempotency-key', 'cookie']);

export interface TopicMessage {
  headers: Array<[string, string]>;
  bodyBase64?: string;
  /** The publisher's id (X-Message-Id); a random one otherwise. */
  messageId?: string;
}

/**
 * Publishing: one invocation per subscriber, all queued in one MULTI or
 * none. Each is a `topic` mode job (retries, backoff and the dead letter as
 * async ones, TRIGGER_POLICIES) whose id derives from (function, topic,
 * message id), so a publish repeated with the same X-Message-Id, or resent
 * by ioredis after a reconnect, runs no subscriber twice. Subscribers run
 * their active version when the job starts, like schedule runs.
 */
export class TopicPublisher {
  readonly #queue: InvocationQueue;
  readonly #subscriptions: TopicSubscriptions;

  constructor(queue: InvocationQueue, subscriptions: TopicSubscriptions) {
    this.#queue = queue;
    this.#subscriptions = subscriptions;
  }

  async publish(topic: string, message: TopicMessage): Promise<PublishAccepted> {
    const messageId = message.messageId ?? crypto.randomUUID();
    const subscribers = await this.#subscriptions.subscribers(topic);
    const targets: FanOutTarget[] = subscribers.map((name) => ({
      functionName: name,
      idempotencyKey: `topic\0${topic}\0${messageId}`,
      data: { deployment: { name, version: 'active' }, request: deliveryRequest(name, topic, messageId, message), mode: 'topic' },
    }));
    const ids = await this.#queue.fanOut(targets);
    return { topic, messageId, invocations: subscribers.map((name, i) => ({ function: name, id: ids[i]! })) };
  }
}

function deliveryRequest(name: string, topic: string, messageId: string, message: TopicMessage): WireRequest {
  const headers = message.headers.filter(([k]) => !DROPPED.has(k.toLowerCase()) && !k.toLowerCase().startsWith('x-fn-'));
  headers.push([TOPIC_HEADERS.trigger, 'topic'], [TOPIC_HEADERS.topic, topic], [TOPIC_HEADERS.messageId, messageId]);
  return { method: 'POST', url: `http://localhost/fn/${name}`, headers, ...(message.bodyBase64 ? { bodyBase64: message.bodyBase64 } : {}) };
}
