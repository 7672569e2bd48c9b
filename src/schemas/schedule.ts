import cronParser from 'cron-parser';
import { z } from 'zod';

/*
 * Cron schedules of functions. Validated with the very parser BullMQ's job
 * schedulers use (cron-parser), so anything the API and CLI accept is
 * something the queue can actually schedule, and the reverse.
 */

const FIELD_NAMES_5 = 'minute hour day-of-month month day-of-week';
const FIELD_NAMES_6 = 'second minute hour day-of-month month day-of-week';

/** Why `expression` is not a usable cron pattern, or undefined if it is. */
export function cronProblem(expression: string, tz?: string): string | undefined {
  const fields = expression.trim().split(/\s+/).filter(Boolean);
  // cron-parser reads "" as "* * * * *" and also takes @aliases: both too
  // surprising for an API, so the field count is checked before parsing.
  if (fields.length !== 5 && fields.length !== 6) {
    return `a cron expression has 5 fields (${FIELD_NAMES_5}) or 6 (${FIELD_NAMES_6}), got ${fields.length}`;
  }
  try {
    const it = cronParser.parseExpression(fields.join(' '), tz === undefined ? {} : { tz });
    // Parsing alone accepts some impossible dates; asking for a tick does not.
    it.next();
    return undefined;
  } catch (err) {
    return `invalid cron expression "${expression}": ${(err as Error).message}`;
  }
}

export function timeZoneProblem(tz: string): string | undefined {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return undefined;
  } catch {
    return `unknown time zone "${tz}" (use an IANA name such as Europe/Berlin or UTC)`;
  }
}

export const TimeZone = z
  .string()
  .min(1)
  .max(64)
  .superRefine((tz, ctx) => {
    const problem = timeZoneProblem(tz);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  })
  .describe('IANA time zone of the cron pattern (default UTC)');

export const CronExpression = z
  .string()
  .max(256)
  .superRefine((expr, ctx) => {
    const problem = cronProblem(expr);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  })
  .describe('cron pattern: 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), e.g. "*/2 * * * * *"');

export const CronSchedule = z
  .object({ cron: CronExpression, tz: TimeZone.optional() })
  .strict()
  .superRefine((s, ctx) => {
    // A pattern can be valid in UTC and still fail in a zone (DST gaps are fine, bad zones are not).
    if (s.tz !== undefined && timeZoneProblem(s.tz) === undefined) {
      const problem = cronProblem(s.cron, s.tz);
      if (problem) ctx.addIssue({ code: 'custom', path: ['cron'], message: problem });
    }
  });
export type CronSchedule = z.infer<typeof CronSchedule>;

/** What `config.schedule` accepts: a bare pattern, or a pattern with a time zone. */
export const ScheduleSetting = z.union([CronExpression, CronSchedule]);
export type ScheduleSetting = z.infer<typeof ScheduleSetting>;

/** The one shape the queue works with. */
export function normalizeSchedule(setting: ScheduleSetting): CronSchedule {
  const s = typeof setting === 'string' ? { cron: setting } : setting;
  return { cron: s.cron.trim().split(/\s+/).join(' '), ...(s.tz === undefined ? {} : { tz: s.tz }) };
}

/** When `schedule` fires next, as BullMQ will compute it (same parser, UTC unless a zone is given). */
export function nextTick(schedule: CronSchedule, after: Date = new Date()): Date {
  return cronParser.parseExpression(schedule.cron, { tz: schedule.tz ?? 'UTC', currentDate: after }).next().toDate();
}
