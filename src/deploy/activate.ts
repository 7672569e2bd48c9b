import type { InvocationEngine } from '../orchestrator/types.ts';
import type { FunctionQueues } from '../queue/function-queues.ts';
import type { FunctionStore, FunctionRecord, VersionRecord } from '../registry/function-store.ts';
import type { FunctionConfig } from '../schemas/function-config.ts';
import { deployFingerprint } from './fingerprint.ts';

export interface ReleaseDeps {
  engine: InvocationEngine;
  store: FunctionStore;
  /** Absent when the node runs without a queue (unit tests): nothing is mirrored to Redis. */
  queue?: FunctionQueues | undefined;
}

export interface Released {
  fn: FunctionRecord;
  version: VersionRecord;
}

/**
 * Makes `version` the one that serves: the engine first (so a template that
 * cannot load never becomes active), then the queue layer (limits, schedule,
 * published deployment: a Redis that is down fails the release before
 * anything switched on disk), then the pointer on disk. Call under
 * `store.lock(name)`.
 */
export async function activateVersion({ engine, store, queue }: ReleaseDeps, name: string, version: VersionRecord): Promise<Released> {
  const deployment = await store.deploymentOf(name, version);
  await engine.activate(deployment);
  await queue?.serve(deployment);
  const fn = await store.setActive(name, version.version);
  return { fn, version };
}

/** What a version made from another without a new bundle may change. */
export interface DerivedChange {
  source: 'env' | 'schedule' | 'topics';
  config: FunctionConfig;
  env: Record<string, string>;
  secrets: Record<string, string>;
}

/**
 * A new version of `name` from `base` that changes only its config, env or
 * secrets (same template and bundle: no build, nothing to store), made the
 * one that serves. Call under `store.lock(name)`.
 */
export async function releaseDerived(deps: ReleaseDeps, name: string, base: VersionRecord, change: DerivedChange): Promise<Released> {
  const { config, env, secrets } = change;
  const version = await deps.store.addVersion(
    name,
    {
      templateId: base.templateId,
      source: change.source,
      config,
      env,
      secrets,
      bundleHash: base.bundleHash,
      fingerprint: deployFingerprint({ bundleHash: base.bundleHash, config, env, secretNames: Object.keys(secrets) }),
    },
    // Same bundle as the base version: already stored.
    undefined,
  );
  return activateVersion(deps, name, version);
}
