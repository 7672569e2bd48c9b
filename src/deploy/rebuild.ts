import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { NotFoundError } from '../errors.ts';
import type { FunctionStore, VersionRecord } from '../registry/function-store.ts';
import { hashSourceDir, singleModuleSource } from '../sandbox/template/function-source.ts';
import { templateGate } from '../sandbox/template/template-gate.ts';
import { activateVersion, type ReleaseDeps, type Released } from './activate.ts';

/**
 * Activates `version`; when its template is gone (garbage-collected, or a
 * driver upgrade changed template ids) rebuilds it from the version's stored
 * bundle first. Bundles are kept for every version for exactly this reason.
 * Call under `store.lock(name)`.
 */
export function activateOrRebuild(deps: ReleaseDeps, name: string, version: VersionRecord): Promise<Released & { rebuilt: boolean }> {
  // Shared side of the template gate from the check to the activation: the collector cannot take the template in between.
  return templateGate.shared(async () => {
    try {
      await deps.engine.activate(await deps.store.deploymentOf(name, version));
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      return { ...(await rebuild(deps, name, version)), rebuilt: true };
    }
    return { ...(await activateVersion(deps, name, version)), rebuilt: false };
  });
}

/**
 * Builds `base`'s template again through the normal build path. The same
 * driver gives the same (content-addressed) id, and `base` itself becomes
 * active; a different id means a new version (versions are immutable) with
 * the same bundle, config, env and secrets.
 */
export async function rebuild(deps: ReleaseDeps, name: string, base: VersionRecord): Promise<Released> {
  const { engine, store } = deps;
  const template = await withStoredSource(store, name, base.bundleHash, (source) => engine.buildTemplate({ functionName: name, ...source, network: base.config.network }));
  if (template.id === base.templateId) return activateVersion(deps, name, base);
  const secrets = await store.secretsOf(name, base.version);
  const version = await store.addVersion(
    name,
    { templateId: template.id, source: 'rebuild', config: base.config, env: base.env, secrets, bundleHash: base.bundleHash, fingerprint: base.fingerprint },
    undefined,
  );
  return activateVersion(deps, name, version);
}

/**
 * A version's function directory, recreated from the source store for the
 * length of `work`; a version deployed before whole directories were kept
 * has its single-file bundle instead.
 */
async function withStoredSource<T>(store: FunctionStore, name: string, hash: string, work: (source: { sourceDir: string; sourceHash: string }) => Promise<T>): Promise<T> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), `snapfn-rebuild-${name}-`));
  try {
    const sourceDir = path.join(tmp, 'src');
    if (await store.sources.materialize(hash, sourceDir)) return await work({ sourceDir, sourceHash: await hashSourceDir(sourceDir) });
    const legacy = store.legacyBundleFile(name, hash);
    if (!(await fs.access(legacy).then(() => true, () => false))) throw new NotFoundError(`the source ${hash} of ${name} is not stored`);
    return await work(await singleModuleSource(legacy, path.join(tmp, 'legacy')));
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}
