import type { OrchestratorStats } from '../orchestrator/types.ts';
import type { FunctionRecord, FunctionStore, VersionRecord } from '../registry/function-store.ts';
import type { GatewayDeps } from './env.ts';
import type { FunctionSchedule, FunctionView, VersionView } from '../schemas/api.ts';
import type { FunctionConfig } from '../schemas/function-config.ts';
import { nextTick, normalizeSchedule } from '../schemas/schedule.ts';

/** A version as the API shows it: secret names, never values (those are not even in VersionRecord). */
export function versionView(version: VersionRecord, activeVersion: number | null): VersionView {
  return {
    version: version.version,
    templateId: version.templateId,
    createdAt: version.createdAt,
    source: version.source,
    config: version.config,
    env: version.env,
    secretNames: version.secretNames,
    bundleHash: version.bundleHash,
    active: version.version === activeVersion,
  };
}

/**
 * The base of every URL an API view gives out: SNAPFN_PUBLIC_URL, else the
 * address the gateway listens on. Never the request's Host header: any
 * client can put any host there, and a view (or a deploy result a CI job
 * prints) would then send the next caller wherever that client chose.
 * `http://localhost` only when there is neither (app.request() in tests).
 */
export function publicBase(deps: Pick<GatewayDeps, 'config' | 'listenUrl'>): string {
  return deps.config.publicUrl ?? deps.listenUrl?.() ?? 'http://localhost';
}

export function functionUrl(origin: string, name: string): string {
  return `${origin}/fn/${name}`;
}

export function functionView(fn: FunctionRecord, active: VersionRecord | undefined, origin: string, stats?: OrchestratorStats): FunctionView {
  const size = stats?.pooled[fn.name];
  const target = stats?.poolTargets?.[fn.name];
  return {
    name: fn.name,
    url: functionUrl(origin, fn.name),
    activeVersion: fn.active,
    createdAt: fn.createdAt,
    updatedAt: fn.updatedAt,
    active: active ? versionView(active, fn.active) : null,
    schedule: active ? scheduleView(active.config) : null,
    ...(size !== undefined && target !== undefined ? { pool: { size, target } } : {}),
  };
}

/**
 * The active version's schedule. Computed from its config rather than read
 * from Redis: the config is what the scheduler is made to match, and the
 * next tick comes from the same parser BullMQ uses.
 */
export function scheduleView(config: FunctionConfig): FunctionSchedule | null {
  if (config.schedule === undefined) return null;
  const schedule = normalizeSchedule(config.schedule);
  return { ...schedule, next: nextTick(schedule).toISOString() };
}

/** `stats`: this node's engine, for the function's warm pool. */
export async function loadFunctionView(store: FunctionStore, fn: FunctionRecord, origin: string, stats?: OrchestratorStats): Promise<FunctionView> {
  const active = fn.active === null ? undefined : await store.version(fn.name, fn.active);
  return functionView(fn, active, origin, stats);
}
