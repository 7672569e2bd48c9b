import { InvalidInputError } from '../errors.ts';
import type { WireRequest } from '../schemas/invocation.ts';
import { normalizeSchedule, ScheduleSetting, type CronSchedule } from '../schemas/schedule.ts';
import { zodMessage } from '../schemas/zod-message.ts';
import { schedulerId } from './invocation-ids.ts';
import type { InvocationQueue } from './invocation-queue.ts';
import type { InvocationJobData } from './job-data.ts';

/** Headers a handler sees on a scheduled run, so it can tell one from an HTTP call. */
export const SCHEDULE_HEADERS = { trigger: 'x-fn-trigger', schedule: 'x-fn-schedule' } as const;

export interface ScheduleOptions {
  /** A failed run is retried this many times in total before it is dead-lettered (default 1: the next tick is the retry). */
  attempts?: number;
  backoffMs?: number;
}

export interface ScheduleView extends CronSchedule {
  /** ms timestamp of the next tick, when BullMQ knows it. */
  next?: number;
}

/**
 * Cron schedules as BullMQ job schedulers, one per function queue. They live
 * in Redis, so they survive restarts of every node; each tick becomes one
 * job with a deterministic id (`repeat:cron-<fn>:<tick ms>`), so several
 * nodes never run a tick twice. Runs target the function's active version,
 * so a deploy does not have to touch the schedule.
 */
export class Schedules {
  readonly #queue: InvocationQueue;

  constructor(queue: InvocationQueue) {
    this.#queue = queue;
  }

  /** Creates or replaces the function's schedule. */
  async set(functionName: string, setting: ScheduleSetting, options: ScheduleOptions = {}): Promise<ScheduleView> {
    const parsed = ScheduleSetting.safeParse(setting);
    if (!parsed.success) throw new InvalidInputError(zodMessage(parsed.error, 'schedule'));
    const schedule = normalizeSchedule(parsed.data);
    const r = this.#queue.retention;
    const data: InvocationJobData = {
      deployment: { name: functionName, version: 'active' },
      request: scheduledRequest(functionName, schedule),
      mode: 'schedule',
    };
    const job = await this.#queue.bullQueue(functionName).upsertJobScheduler(
      schedulerId(functionName),
      // Without a zone cron-parser uses the local one of whichever node computes the next tick: pin UTC.
      { pattern: schedule.cron, tz: schedule.tz ?? 'UTC' },
      {
        name: 'invoke',
        data,
        opts: {
          attempts: Math.max(1, options.attempts ?? 1),
          backoff: { type: 'exponential', delay: options.backoffMs ?? 1000 },
          removeOnComplete: { age: r.completedAgeSeconds, count: r.completedCount },
          removeOnFail: { age: r.failedAgeSeconds, count: r.failedCount },
        },
      },
    );
    return { ...schedule, next: job.timestamp + (job.delay ?? 0) };
  }

  async get(functionName: string): Promise<ScheduleView | undefined> {
    const s = await this.#queue.bullQueue(functionName).getJobScheduler(schedulerId(functionName));
    if (!s?.pattern) return undefined;
    return { cron: s.pattern, ...(s.tz && s.tz !== 'UTC' ? { tz: s.tz } : {}), ...(s.next ? { next: s.next } : {}) };
  }

  /** Stops future ticks (a run already started finishes). Returns whether there was a schedule. */
  async remove(functionName: string): Promise<boolean> {
    return this.#queue.bullQueue(functionName).removeJobScheduler(schedulerId(functionName));
  }

  /** Make Redis match a function's `config.schedule` (set, replaced or removed). */
  async apply(functionName: string, setting: ScheduleSetting | undefined): Promise<ScheduleView | undefined> {
    if (setting === undefined) {
      await this.remove(functionName);
      return undefined;
    }
    const wanted = normalizeSchedule(setting);
    const current = await this.get(functionName);
    // Re-upserting an unchanged schedule would only reshuffle its next job.
    if (current && current.cron === wanted.cron && (current.tz ?? 'UTC') === (wanted.tz ?? 'UTC')) return current;
    return this.set(functionName, wanted);
  }
}

function scheduledRequest(functionName: string, schedule: CronSchedule): WireRequest {
  return {
    method: 'GET',
    url: `http://localhost/fn/${functionName}`,
    headers: [
      [SCHEDULE_HEADERS.trigger, 'schedule'],
      [SCHEDULE_HEADERS.schedule, schedule.tz ? `${schedule.cron} (${schedule.tz})` : schedule.cron],
    ],
  };
}
