import type { FunctionStore } from '../registry/function-store.ts';
import type { InvocationLogEntry } from '../schemas/api.ts';
import { FunctionName } from '../schemas/function-config.ts';

export type ModeFilter = '' | 'direct' | 'sync' | 'async' | 'schedule' | 'topic';
export type OutcomeFilter = '' | 'ok' | 'error';
export const RANGES = { '15m': 15 * 60_000, '1h': 3600_000, '24h': 86_400_000, '7d': 7 * 86_400_000, all: Infinity } as const;
export type RangeName = keyof typeof RANGES;

export interface InvocationFilter {
  function: string;
  outcome: OutcomeFilter;
  mode: ModeFilter;
  range: RangeName;
  /** Custom bounds (datetime-local values, read as UTC); they override `range`. */
  from: string;
  to: string;
  limit: number;
}

export interface LoggedInvocation {
  fn: string;
  entry: InvocationLogEntry;
}

/** Entries read per function: the log keeps about 2 MiB per function, a few thousand entries at most. */
const READ_PER_FUNCTION = 5000;

function pick<T extends string>(value: string | undefined, allowed: readonly T[], fallback: T): T {
  return allowed.includes(value as T) ? (value as T) : fallback;
}

/** The filter from the query string; anything unrecognized falls back to its default instead of failing the page. */
export function parseFilter(query: Record<string, string | undefined>): InvocationFilter {
  const fn = query.function ?? '';
  const limit = Number(query.limit);
  return {
    function: FunctionName.safeParse(fn).success ? fn : '',
    outcome: pick(query.outcome, ['', 'ok', 'error'], ''),
    mode: pick(query.mode, ['', 'direct', 'sync', 'async', 'schedule', 'topic'], ''),
    range: pick(query.range, Object.keys(RANGES) as RangeName[], '24h'),
    from: validLocalTime(query.from) ? query.from! : '',
    to: validLocalTime(query.to) ? query.to! : '',
    limit: Number.isInteger(limit) && limit >= 1 && limit <= 1000 ? limit : 100,
  };
}

function validLocalTime(value: string | undefined): boolean {
  return value !== undefined && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(value) && !Number.isNaN(Date.parse(`${value}Z`));
}

export function modeOf(entry: InvocationLogEntry): Exclude<ModeFilter, ''> {
  return entry.queue?.mode ?? 'direct';
}

export function matches(filter: InvocationFilter, entry: InvocationLogEntry, now = Date.now()): boolean {
  if (filter.outcome === 'ok' && !entry.ok) return false;
  if (filter.outcome === 'error' && entry.ok) return false;
  if (filter.mode && modeOf(entry) !== filter.mode) return false;
  const t = Date.parse(entry.time);
  const from = filter.from ? Date.parse(`${filter.from}Z`) : filter.to ? -Infinity : now - RANGES[filter.range];
  const to = filter.to ? Date.parse(`${filter.to}Z`) : Infinity;
  return t >= from && t <= to;
}

/** The newest matching invocations across the chosen functions, newest first, and how many matched in all. */
export async function queryInvocations(store: FunctionStore, filter: InvocationFilter): Promise<{ items: LoggedInvocation[]; matched: number }> {
  const names = filter.function ? [filter.function] : (await store.list()).map((f) => f.name);
  const now = Date.now();
  const all = (
    await Promise.all(names.map(async (fn) => (await store.logs.tail(fn, READ_PER_FUNCTION).catch(() => [])).map((entry) => ({ fn, entry }))))
  ).flat();
  const hits = all.filter((i) => matches(filter, i.entry, now)).sort((a, b) => b.entry.time.localeCompare(a.entry.time));
  return { items: hits.slice(0, filter.limit), matched: hits.length };
}

/** Every logged attempt of one invocation (queued ones have one entry per attempt), oldest first. */
export async function findInvocation(store: FunctionStore, fn: string, id: string): Promise<InvocationLogEntry[]> {
  return (await store.logs.tail(fn, READ_PER_FUNCTION)).filter((e) => e.id === id);
}
