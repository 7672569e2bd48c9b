import fs from 'node:fs/promises';
import path from 'node:path';

/*
 * Templates are content-addressed directories that the driver looks up under
 * `$SNAPFN_HOME/templates`. With several nodes they must be built once and
 * seen everywhere: each node points that directory at one shared store
 * (SNAPFN_TEMPLATE_STORE: a hostPath, NFS or similar), with a symlink, so the
 * driver needs no option for it. Publication into the store is already
 * atomic (build in a temp dir, rename), which is what makes sharing safe.
 */

export class TemplateStoreLinkError extends Error {
  override readonly name = 'TemplateStoreLinkError';
}

/** Makes `<home>/templates` a symlink to `store` (creating both). Idempotent. */
export async function linkTemplateStore(home: string, store: string): Promise<void> {
  const target = path.resolve(store);
  const link = path.join(home, 'templates');
  await fs.mkdir(target, { recursive: true });
  await fs.mkdir(home, { recursive: true });
  const stat = await fs.lstat(link).catch(() => undefined);
  if (stat?.isSymbolicLink()) {
    if (path.resolve(path.dirname(link), await fs.readlink(link)) === target) return;
    await fs.unlink(link);
  } else if (stat?.isDirectory()) {
    // Templates built here before the store was configured: never delete them silently.
    const entries = (await fs.readdir(link)).filter((e) => !e.startsWith('.tmp-'));
    if (entries.length > 0) {
      throw new TemplateStoreLinkError(`${link} already holds ${entries.length} template(s); move them into ${target} (or remove them) to use the shared store`);
    }
    await fs.rm(link, { recursive: true, force: true });
  } else if (stat) {
    throw new TemplateStoreLinkError(`${link} exists and is not a directory`);
  }
  await fs.symlink(target, link, 'dir');
}
