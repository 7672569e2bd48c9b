import fs from 'node:fs/promises';
import path from 'node:path';
import { SourceManifest, type ManifestEntry } from '../schemas/source-manifest.ts';
import { readJsonFile, writeFileAtomic } from './atomic-file.ts';
import type { BlobStore } from './blob-store.ts';

/**
 * A prepared function directory (what is mounted at /fn) kept by content:
 * its manifest under `<dir>/<hash>.json`, its files in the shared blob
 * store. Versions point at a source hash; a rebuild materializes it again.
 */
export class SourceStore {
  readonly #dir: string;
  readonly #blobs: BlobStore;

  constructor(dir: string, blobs: BlobStore) {
    this.#dir = dir;
    this.#blobs = blobs;
  }

  manifestFile(hash: string): string {
    return path.join(this.#dir, `${hash}.json`);
  }

  async has(hash: string): Promise<boolean> {
    return fs.access(this.manifestFile(hash)).then(
      () => true,
      () => false,
    );
  }

  /** Stores every file of `dir` as blobs and the manifest under `hash`. */
  async save(hash: string, dir: string): Promise<SourceManifest> {
    const entries: ManifestEntry[] = [];
    await walk(dir, '', async (rel, full, executable) => {
      const { hash: sha256, size } = await this.#blobs.putFile(full);
      entries.push({ path: rel, sha256, size, ...(executable ? { executable } : {}) });
    });
    entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    await fs.mkdir(this.#dir, { recursive: true });
    await writeFileAtomic(this.manifestFile(hash), JSON.stringify(entries));
    return entries;
  }

  async manifest(hash: string): Promise<SourceManifest | undefined> {
    const raw = await readJsonFile(this.manifestFile(hash));
    return raw === undefined ? undefined : SourceManifest.parse(raw);
  }

  /** Recreates the stored directory at `target` (which must not exist yet). */
  async materialize(hash: string, target: string): Promise<boolean> {
    const manifest = await this.manifest(hash);
    if (!manifest) return false;
    await fs.mkdir(target, { recursive: true });
    for (const entry of manifest) await this.#blobs.linkInto(entry.sha256, path.join(target, entry.path), entry.executable === true);
    return true;
  }
}

async function walk(dir: string, prefix: string, onFile: (rel: string, full: string, executable: boolean) => Promise<void>): Promise<void> {
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) await walk(full, rel, onFile);
    else if (entry.isFile()) await onFile(rel, full, ((await fs.stat(full)).mode & 0o111) !== 0);
  }
}
