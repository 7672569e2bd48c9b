import { NotFoundError } from '../errors.ts';
import type { InvocationEngine } from '../orchestrator/types.ts';
import type { FunctionStore, VersionRecord } from '../registry/function-store.ts';
import { activateVersion } from './release.ts';

export interface Reactivated {
  name: string;
  version: number;
  /** True when the template was gone (e.g. a driver upgrade changed template ids) and was rebuilt from the stored bundle. */
  rebuilt: boolean;
  error?: string;
}

/**
 * After a restart: makes every function's active version runnable again.
 * A template that no longer exists is rebuilt from the version's stored
 * bundle; if that gives a different template id, the result is a new
 * version (versions are immutable) with the same config, env and secrets.
 */
export async function reactivateAll(deps: { engine: InvocationEngine; store: FunctionStore }): Promise<Reactivated[]> {
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

async function reactivate(deps: { engine: InvocationEngine; store: FunctionStore }, name: string): Promise<Reactivated> {
  const { engine, store } = deps;
  return store.lock(name, async () => {
    const serving = await store.serving(name);
    if (!serving) throw new NotFoundError(`${name} has no active version`);
    try {
      await engine.activate(serving.deployment);
      return { name, version: serving.version.version, rebuilt: false };
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    const version = await rebuild(deps, name, serving.version);
    return { name, version: version.version, rebuilt: true };
  });
}

async function rebuild({ engine, store }: { engine: InvocationEngine; store: FunctionStore }, name: string, base: VersionRecord): Promise<VersionRecord> {
  const template = await engine.buildTemplate({ functionName: name, bundleFile: store.bundleFile(name, base.bundleHash), network: base.config.network });
  if (template.id === base.templateId) {
    await activateVersion({ engine, store }, name, base);
    return base;
  }
  const secrets = await store.secretsOf(name, base.version);
  const version = await store.addVersion(
    name,
    { templateId: template.id, source: 'rebuild', config: base.config, env: base.env, secrets, bundleHash: base.bundleHash, fingerprint: base.fingerprint },
    undefined,
  );
  return (await activateVersion({ engine, store }, name, version)).version;
}
