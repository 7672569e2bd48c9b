import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { PayloadTooLargeError } from './deploy-errors.ts';

export interface PackedDirectory {
  /** Relative path -> base64 contents, ready for DeployRequest.files. */
  files: Record<string, string>;
  bytes: number;
  /** Packages taken from a node_modules above `dir` (hoisted by a workspace or monorepo). */
  hoisted: string[];
}

/** Never needed to bundle, often large. */
function skipped(name: string, inNodeModules: boolean): boolean {
  if (name === '.git' || name === '.DS_Store') return true;
  if (!inNodeModules) return false;
  return name === '.bin' || name === '.cache' || /\.(d\.[mc]?ts|map|md)$/.test(name);
}

const Manifest = z.object({ dependencies: z.record(z.string(), z.string()).optional() }).loose();

async function dependenciesOf(packageDir: string): Promise<string[]> {
  const text = await fs.readFile(path.join(packageDir, 'package.json'), 'utf8').catch(() => undefined);
  if (text === undefined) return [];
  try {
    return Object.keys(Manifest.parse(JSON.parse(text)).dependencies ?? {});
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

class Packer {
  readonly files: Record<string, string> = {};
  bytes = 0;
  readonly #maxBytes: number;
  readonly #visited = new Set<string>();

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
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
      const stat = entry.isSymbolicLink() ? await fs.stat(full).catch(() => undefined) : entry;
      if (!stat) continue;
      if (stat.isDirectory()) await this.addTree(full, rel, inNodeModules || entry.name === 'node_modules');
      else if (stat.isFile()) await this.addFile(full, rel);
    }
  }

  async addFile(full: string, rel: string): Promise<void> {
    const data = await fs.readFile(full);
    this.bytes += data.length;
    if (this.bytes > this.#maxBytes) throw new PayloadTooLargeError(`the directory is larger than the bundle limit of ${this.#maxBytes} bytes (skip files you do not need, or raise SNAPFN_MAX_BUNDLE_BYTES on the server)`);
    this.files[rel] = data.toString('base64');
  }
}

/**
 * Packs a handler directory for upload: everything but .git, including its
 * node_modules. Dependencies its package.json declares that are not in its
 * own node_modules but hoisted above it (npm workspaces, this repository's
 * examples) are copied in as node_modules/<name>, transitively, so the
 * server can bundle the upload on its own.
 */
export async function packDirectory(dir: string, options: { maxBytes: number }): Promise<PackedDirectory> {
  const root = path.resolve(dir);
  if (!(await isDirectory(root))) throw new Error(`${dir} is not a directory`);
  const packer = new Packer(options.maxBytes);
  await packer.addTree(root, '', false);
  const hoisted: string[] = [];
  const pending = (await dependenciesOf(root)).map((name) => ({ name, from: root }));
  const seen = new Set<string>();
  const packedRoots: string[] = [];
  while (pending.length > 0) {
    const { name, from } = pending.shift()!;
    if (seen.has(name) || (await isDirectory(path.join(root, 'node_modules', name)))) continue;
    seen.add(name);
    const location = await locatePackage(name, from);
    // Not installed anywhere: leave it to esbuild to report the unresolved import, if it is imported at all.
    if (!location) continue;
    // Nested in a directory already packed (a package's own node_modules): it came along with it.
    if (location.startsWith(root + path.sep) || packedRoots.some((r) => location.startsWith(r + path.sep))) continue;
    packedRoots.push(location);
    await packer.addTree(location, `node_modules/${name}`, true);
    hoisted.push(name);
    for (const dep of await dependenciesOf(location)) pending.push({ name: dep, from: location });
  }
  return { files: packer.files, bytes: packer.bytes, hoisted };
}
