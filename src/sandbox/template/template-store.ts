import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { Template } from '../driver.ts';
import { templateGate } from './template-gate.ts';

const TemplateMeta = z.object({
  id: z.string(),
  driver: z.string(),
  handlerConfig: z.unknown(),
  buildMs: z.number(),
  imageBytes: z.number(),
  rootfs: z.enum(['base', 'eval']).optional(),
  createdAt: z.string(),
});

/** Ids made by templateId(): anything else under the root (temp dirs, the trash) is never a template. */
const TEMPLATE_ID = /^[0-9a-f]{24}$/;
/** Where removed templates go before they are deleted; hidden, so load() and list() never see it. */
const TRASH = '.trash';

/** A published template as the collector sees it. */
export interface StoredTemplate {
  id: string;
  dir: string;
  createdAt: Date;
}

/**
 * Content-addressed template directories under `<root>/<id>/`. A template is
 * built in a temporary directory and renamed into place only when complete,
 * so a failed or interrupted build (whose partial image would break the next
 * checkpoint) is never mistaken for a template.
 */
export class TemplateStore {
  readonly root: string;
  readonly #building = new Map<string, Promise<Template>>();

  constructor(root: string) {
    this.root = root;
  }

  static templateId(parts: Array<string | Buffer>): string {
    const hash = crypto.createHash('sha256');
    for (const part of parts) {
      hash.update(part);
      hash.update('\0');
    }
    return hash.digest('hex').slice(0, 24);
  }

  dirOf(id: string): string {
    return path.join(this.root, id);
  }

  async load(id: string): Promise<Template | undefined> {
    const dir = this.dirOf(id);
    const raw = await fs.readFile(path.join(dir, 'template.json'), 'utf8').catch(() => undefined);
    if (raw === undefined) return undefined;
    const meta = TemplateMeta.parse(JSON.parse(raw));
    return { id: meta.id, driver: meta.driver, dir, handlerConfig: meta.handlerConfig, buildMs: meta.buildMs, imageBytes: meta.imageBytes, ...(meta.rootfs ? { rootfs: meta.rootfs } : {}) };
  }

  /**
   * Returns the existing template with this id, or runs `build` into a fresh
   * temporary directory and publishes it. Concurrent calls share one build.
   * Runs on the shared side of the template gate, so the collector never
   * removes a template while it is being looked up or built.
   */
  getOrBuild(id: string, build: (tmpDir: string) => Promise<Omit<Template, 'dir' | 'id'>>): Promise<Template> {
    const inFlight = this.#building.get(id);
    if (inFlight) return inFlight;
    const p = templateGate.shared(async () => {
      const existing = await this.load(id);
      if (existing) return existing;
      await fs.mkdir(this.root, { recursive: true });
      const tmp = path.join(this.root, `.tmp-${id}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
      await fs.mkdir(tmp, { recursive: true });
      try {
        const built = await build(tmp);
        const meta = { id, ...built, createdAt: new Date().toISOString() };
        await fs.writeFile(path.join(tmp, 'template.json'), JSON.stringify(meta, null, 2));
        await fs.rename(tmp, this.dirOf(id)).catch(async (err) => {
          if (!(await this.load(id))) throw err;
          await fs.rm(tmp, { recursive: true, force: true });
        });
        return (await this.load(id))!;
      } catch (err) {
        await fs.rm(tmp, { recursive: true, force: true });
        throw err;
      }
    });
    this.#building.set(id, p);
    void p.finally(() => this.#building.delete(id)).catch(() => {});
    return p;
  }

  /** Every published template (ids only; temporary build directories and the trash are skipped). */
  async list(): Promise<StoredTemplate[]> {
    const entries = await fs.readdir(this.root, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
    const found = await Promise.all(
      entries
        .filter((e) => e.isDirectory() && TEMPLATE_ID.test(e.name))
        .map(async (e): Promise<StoredTemplate | undefined> => {
          const dir = this.dirOf(e.name);
          const meta = await fs.stat(path.join(dir, 'template.json')).catch(() => undefined);
          // No template.json: not something this store published (or half-removed by hand); leave it alone.
          if (!meta) return undefined;
          return { id: e.name, dir, createdAt: meta.mtime };
        }),
    );
    return found.filter((t): t is StoredTemplate => t !== undefined).sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Disk space a template takes (allocated blocks). */
  sizeOf(id: string): Promise<number> {
    return dirBytes(this.dirOf(id));
  }

  /**
   * Moves a template into the trash (one rename: readers see it whole or not
   * at all). Returns false when it was already gone. The caller must hold
   * the exclusive side of the template gate; emptyTrash() deletes later.
   */
  async moveToTrash(id: string): Promise<boolean> {
    if (!TEMPLATE_ID.test(id)) throw new Error(`not a template id: ${JSON.stringify(id)}`);
    const trash = path.join(this.root, TRASH);
    await fs.mkdir(trash, { recursive: true });
    const target = path.join(trash, `${id}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
    try {
      await fs.rename(this.dirOf(id), target);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /** Deletes what is in the trash, including what an interrupted run left there. Needs no lock: nothing reads the trash. */
  async emptyTrash(): Promise<void> {
    const trash = path.join(this.root, TRASH);
    const entries = await fs.readdir(trash).catch(() => [] as string[]);
    await Promise.all(entries.map((e) => fs.rm(path.join(trash, e), { recursive: true, force: true })));
  }
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += await dirBytes(p);
    else {
      // Allocated blocks, not apparent size: QEMU images are sparse, and "bytes freed" should mean disk.
      const st = await fs.lstat(p).catch(() => undefined);
      total += st ? st.blocks * 512 : 0;
    }
  }
  return total;
}
