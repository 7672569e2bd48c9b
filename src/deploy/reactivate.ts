import { NotFoundError } from '../errors.ts';
import type { ReleaseDeps } from './activate.ts';
import { rebuild } from './rebuild.ts';

export interface Reactivated {
  name: string;
  version: number;
  /** True when the template was gone (e.g. a driver upgrade changed template ids) and was rebuilt from the stored bundle. */
  rebuilt: boolean;
  error?: string;
}

/**
 * After a restart: makes every function's active version runnable again,
 * and serves its queue (limits, schedule, queued invocations) again.
 * A template that no longer exists is rebuilt from the version's stored
 * bundle; if that gives a different template id, the result is a new
 * version (versions are immutable) with the same config, env and secrets.
 */
export async function reactivateAll(deps: ReleaseDeps): Promise<Reactivated[]> {
  const results: Reactivated[] = [];
  for (const fn of await deps.store.list()) {
    if (fn.active === null) continue;
    try {
      results.push(await reactivate(deps, fn.name));
    } catch (err) {
      results.push({ name: fn.name, version: fn.active, rebuilt: false, error: (err as Error).message });
    }
  }
  return results;
}

async function reactivate(deps: ReleaseDeps, name: string): Promise<Reactivated> {
  const { engine, store, queue } = deps;
  return store.lock(name, async () => {
    const serving = await store.serving(name);
    if (!serving) throw new NotFoundError(`${name} has no active version`);
    let activated = false;
    try {
      await engine.activate(serving.deployment);
      activated = true;
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    if (activated) {
      await queue?.serve(serving.deployment);
      return { name, version: serving.version.version, rebuilt: false };
    }
    const { version } = await rebuild(deps, name, serving.version);
    return { name, version: version.version, rebuilt: true };
  });
}
