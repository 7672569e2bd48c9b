import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { Template } from '../driver.ts';

const TemplateMeta = z.object({
  id: z.string(),
  driver: z.string(),
  handlerConfig: z.unknown(),
  buildMs: z.number(),
  imageBytes: z.number(),
  rootfs: z.enum(['base', 'eval']).optional(),
  createdAt: z.string(),
});

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
   */
  getOrBuild(id: string, build: (tmpDir: string) => Promise<Omit<Template, 'dir' | 'id'>>): Promise<Template> {
    const inFlight = this.#building.get(id);
    if (inFlight) return inFlight;
    const p = (async () => {
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
    })();
    this.#building.set(id, p);
    void p.finally(() => this.#building.delete(id)).catch(() => {});
    return p;
  }
}
