import type { InvocationEngine } from '../orchestrator/types.ts';
import type { FunctionQueues } from '../queue/function-queues.ts';
import type { FunctionStore, FunctionRecord, VersionRecord } from '../registry/function-store.ts';

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
