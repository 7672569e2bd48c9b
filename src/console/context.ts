import type { GatewayDeps } from '../gateway/env.ts';
import type { FunctionRecord, VersionRecord } from '../registry/function-store.ts';
import type { FunctionSchedule, InvocationLogEntry } from '../schemas/api.ts';
import { scheduleView } from '../gateway/views.ts';
import type { HandlerInfo, HandlerShapes } from './handler-shape.ts';
import type { InvocationSeries, WindowSummary } from './time-series.ts';

/** What every console page reads from: the gateway's own deps plus the console's series and shape cache. */
export interface ConsoleContext {
  deps: GatewayDeps;
  series: InvocationSeries;
  shapes: HandlerShapes;
}

export interface FunctionRow {
  fn: FunctionRecord;
  version?: VersionRecord;
  handler?: HandlerInfo;
  schedule: FunctionSchedule | null;
  /** Pre-restored sandboxes wanted (the engine's target: fixed, or following the traffic) and there now. */
  poolTarget?: number;
  pooled: number;
  last?: InvocationLogEntry;
  hour: WindowSummary;
}

export async function functionRow(ctx: ConsoleContext, fn: FunctionRecord, pooled: Record<string, number>): Promise<FunctionRow> {
  const { store, config } = ctx.deps;
  const version = fn.active === null ? undefined : await store.version(fn.name, fn.active);
  const [handler, [last]] = await Promise.all([version ? ctx.shapes.of(version) : undefined, store.logs.tail(fn.name, 1)]);
  // What the engine is heading for (a fixed size, or what the traffic needs); the config when the engine does not say.
  const poolTarget = ctx.deps.engine.stats().poolTargets?.[fn.name] ?? version?.config.poolSize ?? config.poolSize;
  return {
    fn,
    ...(version ? { version } : {}),
    ...(handler ? { handler } : {}),
    schedule: version ? scheduleView(version.config) : null,
    ...(poolTarget !== undefined ? { poolTarget } : {}),
    pooled: pooled[fn.name] ?? 0,
    ...(last ? { last } : {}),
    hour: ctx.series.summary(fn.name, 60),
  };
}

export async function functionRows(ctx: ConsoleContext): Promise<FunctionRow[]> {
  const { pooled } = ctx.deps.engine.stats();
  return Promise.all((await ctx.deps.store.list()).map((fn) => functionRow(ctx, fn, pooled)));
}

export function driverName(ctx: ConsoleContext): string {
  const info = ctx.deps.engine.driverInfo?.();
  return info ? `${info.name} (${info.platform})` : 'unknown';
}
