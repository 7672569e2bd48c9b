import { TemplateBuildError } from '../../errors.ts';
import type { ProgressFn, Template, TemplateSource } from '../driver.ts';
import type { EnvdHello } from '../envd/envd-connection.ts';
import { ensureRootfs } from '../rootfs/base-rootfs.ts';
import { assertNativeLibraries } from '../rootfs/native-libraries.ts';
import type { TemplateStore } from '../template/template-store.ts';
import type { EnvdSandbox } from './envd-sandbox.ts';

/** The driver a template is built by: its name, its store and its content hash of a source. */
export interface TemplateOwner {
  name: string;
  templates: TemplateStore;
  /** The template's content hash (it may need the root filesystem built first). */
  templateIdOf(source: TemplateSource): Promise<string>;
}

/** What a driver brings to a template build; the recipe itself is buildTemplate's. */
export interface TemplateRecipe<S extends EnvdSandbox> {
  /** SNAPFN_HOME where the guest's root filesystem flavor is built (the native-addon check reads it); absent: the driver's image is opaque. */
  rootfsHome?: string;
  /** Writes what the boot needs into the build directory (the bundle, disks). */
  prepare?(tmp: string, templateId: string): Promise<void>;
  /** Boots the sandbox from scratch and waits for envd's hello. */
  boot(tmp: string, templateId: string): Promise<{ sandbox: S; hello: EnvdHello }>;
  /** envd has been primed and has hung up: write the snapshot into `tmp`. */
  checkpoint(sandbox: S, tmp: string): Promise<void>;
  /** After the build sandbox is gone, before the template is published (Firecracker records its working set). */
  afterCheckpoint?(tmp: string, templateId: string, onProgress: ProgressFn): Promise<void>;
  imageBytes(tmp: string): Promise<number>;
  /** How long priming may take (TCG guests are slow). */
  primeTimeoutMs?: number;
}

/**
 * The one template build: boot, wait for envd, prime, hang up, checkpoint,
 * publish atomically (TemplateStore.getOrBuild: built in a temporary
 * directory, renamed into place only when complete). Never rebuilds a
 * template whose id exists.
 */
export async function buildTemplate<S extends EnvdSandbox>(owner: TemplateOwner, source: TemplateSource, recipe: TemplateRecipe<S>, onProgress: ProgressFn = () => {}): Promise<Template> {
  onProgress('rootfs');
  const id = await owner.templateIdOf(source);
  const rootfs = source.rootfs ?? 'base';
  return owner.templates.getOrBuild(id, async (tmp) => {
    const started = performance.now();
    if (recipe.rootfsHome) await assertNativeLibraries({ functionDir: source.sourceDir, rootfsDir: (await ensureRootfs(recipe.rootfsHome, rootfs)).dir });
    await recipe.prepare?.(tmp, id);
    onProgress('boot', { templateId: id });
    const { sandbox, hello } = await recipe.boot(tmp, id);
    try {
      if (hello.loadError) throw new TemplateBuildError(`${hello.loadError.code}: ${hello.loadError.message}`);
      onProgress('warm');
      await sandbox.prime(recipe.primeTimeoutMs);
      onProgress('checkpoint');
      await sandbox.prepareCheckpoint();
      await recipe.checkpoint(sandbox, tmp);
    } finally {
      await sandbox.destroy();
    }
    await recipe.afterCheckpoint?.(tmp, id, onProgress);
    const imageBytes = await recipe.imageBytes(tmp);
    onProgress('done', { templateId: id, imageBytes });
    return { driver: owner.name, handlerConfig: hello.handlerConfig, buildMs: Math.round(performance.now() - started), imageBytes, ...(rootfs === 'base' ? {} : { rootfs }) };
  });
}
