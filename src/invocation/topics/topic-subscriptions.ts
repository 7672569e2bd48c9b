import type { Redis } from 'ioredis';

/*
 * Who subscribes to what, in Redis (the fan-out reads it on whichever node
 * takes the publish): a set of functions per topic, and per function the
 * topics it is in, so a new version's list replaces the old one exactly.
 * The function store stays the truth (`config.topics` of the active
 * version): FunctionQueues.serve re-applies it, as it does the schedule.
 */

const PREFIX = 'snapfn';
const ALL_TOPICS = `${PREFIX}:topics`;
const topicKey = (topic: string) => `${PREFIX}:topic:${topic}`;
const functionKey = (name: string) => `${PREFIX}:fn-topics:${name}`;

export interface TopicSummary {
  topic: string;
  subscribers: string[];
}

export class TopicSubscriptions {
  readonly #redis: Redis;

  /** `redis` stays the caller's. */
  constructor(redis: Redis) {
    this.#redis = redis;
  }

  /** `name` subscribes to exactly `topics` from now on (none: unsubscribed everywhere). One MULTI. */
  async apply(name: string, topics: readonly string[]): Promise<void> {
    const current = await this.#redis.smembers(functionKey(name));
    const wanted = new Set(topics);
    const tx = this.#redis.multi();
    for (const topic of current) if (!wanted.has(topic)) tx.srem(topicKey(topic), name);
    tx.del(functionKey(name));
    if (wanted.size > 0) {
      tx.sadd(functionKey(name), ...wanted);
      tx.sadd(ALL_TOPICS, ...wanted);
      for (const topic of wanted) tx.sadd(topicKey(topic), name);
    }
    await tx.exec();
  }

  async subscribers(topic: string): Promise<string[]> {
    return (await this.#redis.smembers(topicKey(topic))).sort();
  }

  /** Every topic with at least one subscriber; ones left empty are forgotten on the way. */
  async list(): Promise<TopicSummary[]> {
    const topics = (await this.#redis.smembers(ALL_TOPICS)).sort();
    const out: TopicSummary[] = [];
    for (const topic of topics) {
      const subscribers = await this.subscribers(topic);
      if (subscribers.length > 0) out.push({ topic, subscribers });
      else await this.#redis.srem(ALL_TOPICS, topic);
    }
    return out;
  }
}
