import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';

/**
 * Host files a root filesystem flavor adds on top of the base one (node and
 * envd). They are copied from the host's own Debian packages, so "what is in
 * the sandbox" is exactly what is installed here, and they are hashed into
 * the rootfs id: an `apt upgrade` of python gives new templates.
 */
export interface RootfsExtras {
  /** Host files and directories, copied to the same guest path (file symlinks dereferenced). */
  paths: string[];
  /** Host paths below `paths` to leave out. */
  exclude: string[];
  /** ... and any path starting with one of these (python's config-3.X-<arch> directory). */
  excludePrefixes?: string[];
  /** Guest symlinks to create: guest path -> link target. */
  links: Record<string, string>;
}

const BIN = (names: string[]) => names.map((n) => `/usr/bin/${n}`);
const TOOLS = BIN([
  ...['bash', 'dash', 'prlimit', 'timeout', 'mawk', 'grep', 'sed', 'find', 'xargs', 'diff', 'cmp', 'gzip', 'tar'],
  ...['cat', 'echo', 'head', 'tail', 'wc', 'sort', 'uniq', 'cut', 'tr', 'mkdir', 'rmdir', 'rm', 'cp', 'mv', 'touch', 'ln', 'chmod'],
  ...['seq', 'sleep', 'date', 'env', 'printf', 'true', 'false', 'expr', 'basename', 'dirname', 'tee', 'yes', 'dd', 'id', 'pwd', 'whoami', 'uname'],
  ...['du', 'readlink', 'realpath', 'md5sum', 'sha256sum', 'base64', 'od', 'tac', 'paste', 'join', 'comm', 'split', 'fold', 'nl', 'shuf', 'nproc'],
]);

/**
 * The code-evaluation flavor: bash, dash as /bin/sh, the host's python3
 * with its standard library, and the everyday command-line tools a bash
 * snippet expects (not `ls` and `stat`: coreutils 9 calls statx with
 * AT_NO_AUTOMOUNT, which this runsc rejects). Python's test suite, static
 * library and GUI/IDE parts are left out: a third of its size, never used.
 * A tool the host lacks is skipped (the hash covers what was copied).
 */
export async function evalExtras(): Promise<RootfsExtras> {
  // /usr/bin/python3 -> python3.11 on bookworm, python3.13 on trixie.
  const python = await fs.readlink('/usr/bin/python3').then((t) => path.basename(t), () => undefined);
  const lib = python && `/usr/lib/${python}`;
  return {
    paths: [...TOOLS, ...(python && lib ? [`/usr/bin/${python}`, lib] : [])],
    exclude: lib ? ['test', 'idlelib', 'tkinter', 'turtledemo', 'ensurepip', 'lib2to3', 'pydoc_data', 'distutils'].map((d) => `${lib}/${d}`) : [],
    excludePrefixes: lib ? [`${lib}/config-`] : [],
    links: {
      '/bin': 'usr/bin',
      '/usr/bin/sh': 'dash',
      '/usr/bin/awk': 'mawk',
      ...(python ? { '/usr/bin/python3': python, '/usr/bin/python': python } : {}),
    },
  };
}

interface Entry {
  path: string;
  kind: 'file' | 'link';
  mode: number;
  /** The link target, or the host file to copy (empty: `path` itself). */
  target: string;
}

async function walk(p: string, exclude: (p: string) => boolean, out: Entry[]): Promise<void> {
  if (exclude(p)) return;
  const st = await fs.lstat(p);
  if (st.isDirectory()) {
    for (const name of (await fs.readdir(p)).sort()) await walk(path.join(p, name), exclude, out);
  } else if (st.isSymbolicLink()) {
    // Symlinks inside a walked tree stay symlinks (python keeps a few that point into /etc).
    out.push({ path: p, kind: 'link', mode: 0, target: await fs.readlink(p) });
  } else if (st.isFile()) {
    out.push({ path: p, kind: 'file', mode: st.mode & 0o7777, target: '' });
  }
}

async function isElf(file: string): Promise<boolean> {
  const fh = await fs.open(file, 'r');
  try {
    const { buffer } = await fh.read(Buffer.alloc(4), 0, 4, 0);
    return buffer.toString('latin1') === '\x7fELF';
  } finally {
    await fh.close();
  }
}

async function librariesOf(files: string[]): Promise<string[]> {
  const libs = new Set<string>();
  const elves = (await Promise.all(files.map(async (f) => ((await isElf(f)) ? f : undefined)))).filter((f): f is string => f !== undefined);
  const outputs = await Promise.all(elves.map((f) => execa('ldd', [f], { reject: false })));
  for (const { stdout } of outputs) {
    for (const line of String(stdout).split('\n')) {
      const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
      if (m?.[1]) libs.add(m[1]);
    }
  }
  return [...libs].sort();
}

/** Everything a flavor copies, resolved once: listed paths, their libraries, links. */
export interface ResolvedExtras {
  entries: Entry[];
  libs: string[];
  links: Array<[string, string]>;
}

export async function resolveExtras(extras: RootfsExtras): Promise<ResolvedExtras> {
  const excluded = new Set(extras.exclude);
  const exclude = (p: string) => excluded.has(p) || (extras.excludePrefixes ?? []).some((prefix) => p.startsWith(prefix));
  const entries: Entry[] = [];
  for (const p of extras.paths) {
    const st = await fs.stat(p).catch(() => undefined);
    if (!st) continue;
    // A listed file is dereferenced (e.g. /usr/bin/awk -> alternatives); a listed directory is walked.
    if (st.isDirectory()) await walk(p, exclude, entries);
    else entries.push({ path: p, kind: 'file', mode: st.mode & 0o7777, target: await fs.realpath(p) });
  }
  const files = entries.filter((e) => e.kind === 'file').map((e) => e.target || e.path);
  return { entries, libs: await librariesOf(files), links: Object.entries(extras.links).sort(([a], [b]) => a.localeCompare(b)) };
}

async function hashFile(file: string, hash: crypto.Hash): Promise<void> {
  hash.update(await fs.readFile(file));
}

export async function hashExtras(resolved: ResolvedExtras, hash: crypto.Hash): Promise<void> {
  hash.update('rootfs-extras-v1\0');
  for (const e of resolved.entries) {
    hash.update(`${e.path}\0${e.kind}\0${e.mode}\0${e.kind === 'link' ? e.target : ''}\0`);
    if (e.kind === 'file') await hashFile(e.target || e.path, hash);
  }
  for (const lib of resolved.libs) {
    hash.update(`lib\0${lib}\0`);
    await hashFile(lib, hash);
  }
  for (const [from, to] of resolved.links) hash.update(`link\0${from}\0${to}\0`);
}

export async function copyExtras(resolved: ResolvedExtras, rootDir: string): Promise<void> {
  for (const e of resolved.entries) {
    const dest = path.join(rootDir, e.path);
    await fs.mkdir(path.dirname(dest), { recursive: true });
    if (e.kind === 'link') {
      await fs.symlink(e.target, dest);
    } else {
      await fs.copyFile(e.target || e.path, dest);
      await fs.chmod(dest, e.mode);
    }
  }
  for (const lib of resolved.libs) {
    const dest = path.join(rootDir, lib);
    await fs.mkdir(path.dirname(dest), { recursive: true });
    await fs.copyFile(lib, dest);
  }
  for (const [from, to] of resolved.links) {
    const dest = path.join(rootDir, from);
    await fs.rm(dest, { force: true });
    await fs.symlink(to, dest);
  }
}
