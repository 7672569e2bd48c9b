import { InvalidInputError, NotFoundError } from '../errors.ts';
import type { VersionRecord } from '../registry/function-store.ts';
import type { EnvUpdateRequest } from '../schemas/api.ts';
import { FunctionConfig } from '../schemas/function-config.ts';
import { normalizeSchedule, type ScheduleSetting } from '../schemas/schedule.ts';
import { ConflictError } from './deploy-errors.ts';
import { releaseDerived, type ReleaseDeps, type Released } from './activate.ts';
import { activateOrRebuild } from './rebuild.ts';

export { activateVersion, type ReleaseDeps, type Released } from './activate.ts';

/**
 * Switches to `target`, or by default to the newest version older than the
 * active one. Its template may have been garbage-collected (only recent
 * versions keep theirs): it is then rebuilt from the stored bundle first.
 */
export function rollback(deps: ReleaseDeps, name: string, target?: number): Promise<Released> {
  return deps.store.lock(name, async () => {
    const fn = await deps.store.require(name);
    const versions = await deps.store.versions(name);
    let version: VersionRecord | undefined;
    if (target !== undefined) {
      version = versions.find((v) => v.version === target);
      if (!version) throw new NotFoundError(`${name} has no version ${target}`);
    } else {
      version = versions.filter((v) => fn.active === null || v.version < fn.active).at(-1);
      if (!version) throw new ConflictError(`${name} has no version before v${fn.active ?? '?'} to roll back to`);
    }
    if (fn.active === version.version) return { fn, version };
    return activateOrRebuild(deps, name, version);
  });
}

function applyPatch(current: Record<string, string>, patch: Record<string, string | null> | undefined): Record<string, string> {
  const next = { ...current };
  for (const [key, value] of Object.entries(patch ?? {})) {
    if (value === null) delete next[key];
    else next[key] = value;
  }
  return next;
}

/**
 * New version from the active one with env vars and secrets changed: same
 * template, so no rebuild. A `null` value deletes a variable.
 */
export function updateEnv(deps: ReleaseDeps, name: string, patch: EnvUpdateRequest): Promise<Released> {
  const { store } = deps;
  return store.lock(name, async () => {
    await store.require(name);
    const serving = await store.serving(name);
    if (!serving) throw new ConflictError(`${name} has no active version to update`);
    const base = serving.version;
    const env = applyPatch(base.env, patch.env);
    const secrets = applyPatch(await store.secretsOf(name, base.version), patch.secrets);
    const clash = Object.keys(secrets).find((key) => key in env);
    if (clash) throw new InvalidInputError(`${clash} cannot be both an env var and a secret`);
    return releaseDerived(deps, name, base, { source: 'env', config: base.config, env, secrets });
  });
}

/**
 * New version from the active one with another cron schedule (or none):
 * same template, env and secrets. The schedule is part of the version's
 * config, so a rollback brings back the schedule of that version and a
 * restart re-applies it. An unchanged schedule creates no version.
 */
export function updateSchedule(deps: ReleaseDeps, name: string, setting: ScheduleSetting | null): Promise<Released> {
  const { store } = deps;
  return store.lock(name, async () => {
    await store.require(name);
    const serving = await store.serving(name);
    if (!serving) throw new ConflictError(`${name} has no active version to schedule`);
    const base = serving.version;
    const current = base.config.schedule === undefined ? undefined : normalizeSchedule(base.config.schedule);
    const wanted = setting === null ? undefined : normalizeSchedule(setting);
    if (current?.cron === wanted?.cron && current?.tz === wanted?.tz) return { fn: serving.fn, version: base };
    const { schedule: _previous, ...rest } = base.config;
    const config = FunctionConfig.parse(wanted === undefined ? rest : { ...rest, schedule: wanted.tz === undefined ? wanted.cron : wanted });
    return releaseDerived(deps, name, base, { source: 'schedule', config, env: base.env, secrets: await store.secretsOf(name, base.version) });
  });
}

/** Stops serving and deletes everything stored for `name`. */
export function removeFunction({ engine, store, queue }: ReleaseDeps, name: string): Promise<void> {
  return store.lock(name, async () => {
    await store.require(name);
    // Queue first: no schedule tick or queued run may start on a function that is going away.
    await queue?.forget(name);
    await engine.deactivate(name);
    await store.remove(name);
  });
}
