import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { withNativeRuntimeLibraries } from './native-runtime.ts';
import { ensureReseedAddon, RESEED_ADDON_GUEST_NAME } from './reseed-addon.ts';
import { RANDOMNESS_GUEST_NAME, runtimeBundle } from './runtime-bundles.ts';
import { copyExtras, evalExtras, hashExtras, resolveExtras, type RootfsExtras } from './rootfs-extras.ts';


/** The read-only root filesystem every sandbox starts from: Node, its libraries, envd and its addon. */
export interface BaseRootfs {
  /** Content hash of node, its libraries and envd. */
  readonly hash: string;
  readonly dir: string;
}

const GUEST_ENVD_PATH = '/opt/snapfn/envd.mjs';
export const GUEST_PATHS = {
  envd: GUEST_ENVD_PATH,
  node: '/usr/bin/node',
  socketDir: '/run/snapfn',
  bundleDir: '/fn',
} as const;

async function sha256File(file: string, hash: crypto.Hash): Promise<void> {
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
}

/** The shared libraries `node` needs, as absolute host paths (ldd output). */
async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await execa('ldd', [binary]);
  const libs = new Set<string>();
  for (const line of stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1]) libs.add(m[1]);
  }
  return [...libs].sort();
}

/**
 * Which root filesystem a template runs on: `base` (node and envd) or `eval`
 * (base plus bash, python3 and command-line tools for code evaluation).
 */
export type RootfsFlavor = 'base' | 'eval';
const FLAVORS: Record<RootfsFlavor, () => Promise<RootfsExtras | undefined>> = { base: async () => undefined, eval: evalExtras };

const cache = new Map<string, Promise<BaseRootfs>>();

/**
 * Builds (once per content hash) the base root filesystem under `home/rootfs/<hash>`.
 * A changed node binary or envd gives a new hash, and so new templates.
 */
export function ensureBaseRootfs(home: string): Promise<BaseRootfs> {
  return ensureRootfs(home, 'base');
}

/** Like ensureBaseRootfs for any flavor; `base` hashes exactly as it always did. */
export function ensureRootfs(home: string, flavor: RootfsFlavor): Promise<BaseRootfs> {
  const key = `${flavor}\0${home}`;
  let p = cache.get(key);
  if (!p) {
    p = FLAVORS[flavor]().then((extras) => buildBaseRootfs(home, extras));
    cache.set(key, p);
    p.catch(() => cache.delete(key));
  }
  return p;
}

async function buildBaseRootfs(home: string, extras?: RootfsExtras): Promise<BaseRootfs> {
  const nodeBinary = await fs.realpath(process.execPath);
  // Native addons load more of glibc and the C++ runtime than node itself does.
  const libs = await withNativeRuntimeLibraries(await sharedLibraries(nodeBinary));
  const hash = crypto.createHash('sha256');
  hash.update('base-rootfs-v1\0');
  await sha256File(nodeBinary, hash);
  for (const lib of libs) {
    hash.update(lib + '\0');
    await sha256File(lib, hash);
  }
  const envd = await runtimeBundle('envd.mjs');
  hash.update(`envd-bundle\0${envd.sha256}\0`);
  const addon = await ensureReseedAddon();
  hash.update(`envd/${RESEED_ADDON_GUEST_NAME}\0`);
  await sha256File(addon, hash);
  const randomness = await runtimeBundle(RANDOMNESS_GUEST_NAME);
  hash.update(`envd/${RANDOMNESS_GUEST_NAME}\0${randomness.sha256}\0`);
  const resolved = extras ? await resolveExtras(extras) : undefined;
  if (resolved) await hashExtras(resolved, hash);
  const digest = hash.digest('hex').slice(0, 16);

  const dir = path.join(home, 'rootfs', digest);
  try {
    await fs.access(path.join(dir, '.complete'));
    return { hash: digest, dir };
  } catch {
    // not built yet
  }
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  await fs.rm(tmp, { recursive: true, force: true });
  for (const d of ['usr/bin', 'opt/snapfn', 'tmp', 'run/snapfn', 'fn', 'etc', 'proc', 'dev', 'sys', 'root']) {
    await fs.mkdir(path.join(tmp, d), { recursive: true });
  }
  await fs.chmod(path.join(tmp, 'tmp'), 0o1777);
  await fs.copyFile(nodeBinary, path.join(tmp, GUEST_PATHS.node));
  await fs.chmod(path.join(tmp, GUEST_PATHS.node), 0o755);
  for (const lib of libs) {
    const target = path.join(tmp, lib);
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.copyFile(lib, target);
  }
  await fs.writeFile(path.join(tmp, GUEST_PATHS.envd), envd.code);
  await fs.copyFile(addon, path.join(tmp, path.dirname(GUEST_PATHS.envd), RESEED_ADDON_GUEST_NAME));
  await fs.writeFile(path.join(tmp, path.dirname(GUEST_PATHS.envd), RANDOMNESS_GUEST_NAME), randomness.code);
  await fs.writeFile(path.join(tmp, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n');
  await fs.writeFile(path.join(tmp, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  await fs.writeFile(path.join(tmp, 'etc/hosts'), '127.0.0.1 localhost\n');
  if (resolved) await copyExtras(resolved, tmp);
  await fs.writeFile(path.join(tmp, '.complete'), digest);
  try {
    await fs.rename(tmp, dir);
  } catch (err) {
    // Another process built the same hash first: theirs is identical.
    await fs.rm(tmp, { recursive: true, force: true });
    await fs.access(path.join(dir, '.complete')).catch(() => {
      throw err;
    });
  }
  return { hash: digest, dir };
}
