import crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import ignore, { type Ignore } from 'ignore';
import { z } from 'zod';
import type { ManifestEntry } from '../schemas/source-manifest.ts';
import { PayloadTooLargeError } from './deploy-errors.ts';

/** gitignore syntax, in the function directory; without one only `.git` is left out. */
export const IGNORE_FILE = '.fnignore';

export interface PackedDirectory {
  /** Relative path -> base64 contents, ready for DeployRequest.files. */
  files: Record<string, string>;
  bytes: number;
  /** Packages taken from a node_modules above `dir` (hoisted by a workspace or monorepo). */
  hoisted: string[];
}

export interface HashedDirectory {
  /** Ready for DeployRequest.manifest, sorted by path. */
  manifest: ManifestEntry[];
  bytes: number;
  hoisted: string[];
  /** A local file holding each digest's bytes, to upload it from. */
  fileOf: Map<string, string>;
}

interface LocalFile {
  rel: string;
  full: string;
  size: number;
  executable: boolean;
}

/** Never needed at run time, often large; `.git` is left out even when a .fnignore does not say so (the server drops it anyway). */
function skipped(name: string, inNodeModules: boolean): boolean {
  if (name === '.git' || name === '.DS_Store') return true;
  if (!inNodeModules) return false;
  return name === '.bin' || name === '.cache' || /\.(d\.[mc]?ts|map|md)$/.test(name);
}

const PackageJson = z
  .object({ dependencies: z.record(z.string(), z.string()).optional(), optionalDependencies: z.record(z.string(), z.string()).optional() })
  .loose();

/** What a package needs installed beside it; optional ones (sharp's prebuilt binaries) count when they are installed. */
async function dependenciesOf(packageDir: string): Promise<string[]> {
  const text = await fs.readFile(path.join(packageDir, 'package.json'), 'utf8').catch(() => undefined);
  if (text === undefined) return [];
  try {
    const parsed = PackageJson.parse(JSON.parse(text));
    return [...new Set([...Object.keys(parsed.dependencies ?? {}), ...Object.keys(parsed.optionalDependencies ?? {})])];
  } catch {
    return [];
  }
}

async function isDirectory(p: string): Promise<boolean> {
  return fs.stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

/** Where Node would find package `name` from `fromDir`: the nearest node_modules/<name> walking up. */
async function locatePackage(name: string, fromDir: string): Promise<string | undefined> {
  let dir = fromDir;
  for (;;) {
    const candidate = path.join(dir, 'node_modules', name);
    if (await isDirectory(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

async function ignoreRules(root: string): Promise<Ignore> {
  const text = await fs.readFile(path.join(root, IGNORE_FILE), 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
  return ignore().add(text ?? '.git');
}

class Lister {
  readonly files: LocalFile[] = [];
  bytes = 0;
  readonly #maxBytes: number;
  readonly #ignore: Ignore;
  readonly #visited = new Set<string>();

  constructor(maxBytes: number, rules: Ignore) {
    this.#maxBytes = maxBytes;
    this.#ignore = rules;
  }

  ignores(rel: string, isDir: boolean): boolean {
    return this.#ignore.ignores(isDir ? `${rel}/` : rel);
  }

  async addTree(dir: string, prefix: string, inNodeModules: boolean): Promise<void> {
    const real = await fs.realpath(dir);
    // Symlinked packages (pnpm, npm link) can form cycles.
    if (this.#visited.has(`${real}\0${prefix}`)) return;
    this.#visited.add(`${real}\0${prefix}`);
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      if (skipped(entry.name, inNodeModules)) continue;
      const full = path.join(dir, entry.name);
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      const stat = entry.isSymbolicLink() ? await fs.stat(full).catch(() => undefined) : await fs.stat(full);
      if (!stat) continue;
      if (stat.isDirectory()) {
        if (!this.ignores(rel, true)) await this.addTree(full, rel, inNodeModules || entry.name === 'node_modules');
      } else if (stat.isFile() && !this.ignores(rel, false)) {
        this.bytes += stat.size;
        if (this.bytes > this.#maxBytes) {
          throw new PayloadTooLargeError(`the directory is larger than ${this.#maxBytes} bytes (list what the function does not need in ${IGNORE_FILE}, or raise SNAPFN_MAX_DEPLOY_BYTES on the server)`);
        }
        this.files.push({ rel, full, size: stat.size, executable: (stat.mode & 0o111) !== 0 });
      }
    }
  }
}

/**
 * The files of a handler directory: everything but what its .fnignore
 * lists (default `.git`), its node_modules included. Dependencies its
 * package.json declares that are not in its own node_modules but hoisted
 * above it (npm workspaces, this repository's examples) are added as
 * node_modules/<name>, transitively, so Node finds them in the sandbox.
 */
async function listDirectory(dir: string, maxBytes: number): Promise<{ files: LocalFile[]; bytes: number; hoisted: string[] }> {
  const root = path.resolve(dir);
  if (!(await isDirectory(root))) throw new Error(`${dir} is not a directory`);
  const lister = new Lister(maxBytes, await ignoreRules(root));
  await lister.addTree(root, '', false);
  const hoisted: string[] = [];
  const pending = (await dependenciesOf(root)).map((name) => ({ name, from: root }));
  const seen = new Set<string>();
  const packedRoots: string[] = [];
  while (pending.length > 0) {
    const { name, from } = pending.shift()!;
    if (seen.has(name) || (await isDirectory(path.join(root, 'node_modules', name)))) continue;
    seen.add(name);
    if (lister.ignores(`node_modules/${name}`, true)) continue;
    const location = await locatePackage(name, from);
    // Not installed anywhere (an optional dependency for another platform, or missing): the server reports an import that does not resolve.
    if (!location) continue;
    // Nested in a directory already packed (a package's own node_modules): it came along with it.
    if (location.startsWith(root + path.sep) || packedRoots.some((r) => location.startsWith(r + path.sep))) continue;
    packedRoots.push(location);
    await lister.addTree(location, `node_modules/${name}`, true);
    hoisted.push(name);
    for (const dep of await dependenciesOf(location)) pending.push({ name: dep, from: location });
  }
  lister.files.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return { files: lister.files, bytes: lister.bytes, hoisted };
}

async function sha256Of(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Runs `work` on every item, `limit` at a time. */
async function eachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]!);
  });
  await Promise.all(lanes);
}

/** The directory as a manifest of content hashes (files streamed, never held whole): what `fn deploy` uploads by. */
export async function hashDirectory(dir: string, options: { maxBytes?: number } = {}): Promise<HashedDirectory> {
  const listed = await listDirectory(dir, options.maxBytes ?? Number.MAX_SAFE_INTEGER);
  const manifest: ManifestEntry[] = listed.files.map((f) => ({ path: f.rel, sha256: '', size: f.size, ...(f.executable ? { executable: true } : {}) }));
  await eachLimited([...manifest.keys()], 8, async (i) => {
    manifest[i]!.sha256 = await sha256Of(listed.files[i]!.full);
  });
  const fileOf = new Map<string, string>();
  for (const [i, entry] of manifest.entries()) if (!fileOf.has(entry.sha256)) fileOf.set(entry.sha256, listed.files[i]!.full);
  return { manifest, bytes: listed.bytes, hoisted: listed.hoisted, fileOf };
}

/** The directory as inline base64 files (DeployRequest.files), for small functions and simple clients. */
export async function packDirectory(dir: string, options: { maxBytes: number }): Promise<PackedDirectory> {
  const listed = await listDirectory(dir, options.maxBytes);
  const files: Record<string, string> = {};
  for (const file of listed.files) files[file.rel] = (await fs.readFile(file.full)).toString('base64');
  return { files, bytes: listed.bytes, hoisted: listed.hoisted };
}
