/**
 * Which templates the function registry still needs. Versions are never
 * deleted (their bundles stay too), but keeping every version's template
 * would grow the disk with every deploy; so only these are kept:
 *
 *   - the active version's template, and
 *   - the templates of the `keepVersions` newest *other* versions (by
 *     number; newer than the active one too, since after a rollback those
 *     are the likely way forward): the instant rollback targets.
 *
 * Rolling back to any other version rebuilds its template from the stored
 * bundle (src/deploy/rebuild.ts); within the kept ones it is instant.
 * Versions that share a template (env and schedule changes) count one each:
 * "the last N versions can be rolled back to instantly" is the promise.
 */

export interface RetainedFunction {
  name: string;
  active: number | null;
  versions: ReadonlyArray<{ version: number; templateId: string }>;
}

/** Why a template is live; the first reason found wins. */
export type LiveReason = `active:${string}` | `kept:${string}` | 'eval' | 'in-use' | 'published' | 'too-young';

export function retainedTemplates(functions: Iterable<RetainedFunction>, keepVersions: number): Map<string, LiveReason> {
  if (!Number.isInteger(keepVersions) || keepVersions < 0) throw new RangeError(`keepVersions must be a whole number >= 0, got ${keepVersions}`);
  const live = new Map<string, LiveReason>();
  for (const fn of functions) {
    const byNumber = [...fn.versions].sort((a, b) => b.version - a.version);
    const active = byNumber.find((v) => v.version === fn.active);
    if (active) live.set(active.templateId, `active:${fn.name}@v${active.version}`);
    for (const v of byNumber.filter((v) => v !== active).slice(0, keepVersions)) {
      if (!live.has(v.templateId)) live.set(v.templateId, `kept:${fn.name}@v${v.version}`);
    }
  }
  return live;
}
