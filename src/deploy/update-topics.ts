import { FunctionConfig } from '../schemas/function-config.ts';
import { ConflictError } from './deploy-errors.ts';
import { releaseDerived, type ReleaseDeps, type Released } from './activate.ts';

/**
 * New version from the active one subscribed to `topics` (none: to
 * nothing): same template, env and secrets, like a schedule change. The
 * subscriptions are part of the version's config, so a rollback brings back
 * that version's and a restart re-applies them (FunctionQueues.serve). The
 * same list in another order creates no version.
 */
export function updateTopics(deps: ReleaseDeps, name: string, topics: string[]): Promise<Released> {
  const { store } = deps;
  return store.lock(name, async () => {
    await store.require(name);
    const serving = await store.serving(name);
    if (!serving) throw new ConflictError(`${name} has no active version to subscribe`);
    const base = serving.version;
    const wanted = [...new Set(topics)].sort();
    if (wanted.join('\n') === [...(base.config.topics ?? [])].sort().join('\n')) return { fn: serving.fn, version: base };
    const { topics: _previous, ...rest } = base.config;
    const config = FunctionConfig.parse(wanted.length === 0 ? rest : { ...rest, topics: wanted });
    return releaseDerived(deps, name, base, { source: 'topics', config, env: base.env, secrets: await store.secretsOf(name, base.version) });
  });
}
