import fs from 'node:fs/promises';
import path from 'node:path';
import { NativeLibraryMissingError } from '../../errors.ts';
import { GUEST_PATHS } from './base-rootfs.ts';
import { MULTIARCH, SYSTEM_LIBRARY_DIRS } from './native-runtime.ts';

// ---- the ELF reader: just enough of the dynamic section --------------------

/** What the dynamic loader reads from an ELF file before mapping it. */
export interface ElfDynamic {
  /** False for another machine, byte order or class: the loader skips such a file and keeps searching. */
  loadable: boolean;
  interpreter?: string;
  soname?: string;
  needed: string[];
  rpath: string[];
  /** Present (even empty) when DT_RUNPATH is: it then replaces RPATH, and is not inherited. */
  runpath?: string[];
}

const EM_HOST = process.arch === 'arm64' ? 183 : 62; // EM_AARCH64, EM_X86_64
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_STRSZ = 10n;
const DT_SONAME = 14n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;

async function readAt(fh: fs.FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await fh.read(buf, 0, length, offset);
  if (bytesRead < length) throw new Error('truncated ELF file');
  return buf;
}

function cString(buf: Buffer, at: number): string {
  const end = buf.indexOf(0, at);
  return buf.toString('utf8', at, end === -1 ? buf.length : end);
}

const searchPath = (value: string | undefined) => (value === undefined ? [] : value.split(':').filter(Boolean));

/** The dynamic section of `file`; undefined when it is not an ELF file at all. */
export async function readElfDynamic(file: string): Promise<ElfDynamic | undefined> {
  const fh = await fs.open(file, 'r');
  try {
    const ident = await readAt(fh, 0, 64).catch(() => undefined);
    if (!ident || ident.readUInt32BE(0) !== 0x7f454c46) return undefined;
    // ELF64, little-endian, this machine: all the sandbox's node can load.
    if (ident[4] !== 2 || ident[5] !== 1 || ident.readUInt16LE(18) !== EM_HOST) return { loadable: false, needed: [], rpath: [] };
    const phoff = Number(ident.readBigUInt64LE(32));
    const phentsize = ident.readUInt16LE(54);
    const phnum = ident.readUInt16LE(56);
    const ph = await readAt(fh, phoff, phentsize * phnum);
    const loads: Array<{ vaddr: number; offset: number; size: number }> = [];
    let dynamic: { offset: number; size: number } | undefined;
    let interpreter: string | undefined;
    for (let i = 0; i < phnum; i++) {
      const at = i * phentsize;
      const type = ph.readUInt32LE(at);
      const offset = Number(ph.readBigUInt64LE(at + 8));
      const vaddr = Number(ph.readBigUInt64LE(at + 16));
      const size = Number(ph.readBigUInt64LE(at + 32));
      if (type === PT_LOAD) loads.push({ vaddr, offset, size });
      else if (type === PT_DYNAMIC) dynamic = { offset, size };
      else if (type === PT_INTERP) interpreter = cString(await readAt(fh, offset, size), 0);
    }
    const base: ElfDynamic = { loadable: true, needed: [], rpath: [], ...(interpreter ? { interpreter } : {}) };
    if (!dynamic) return base;
    const dyn = await readAt(fh, dynamic.offset, dynamic.size);
    const entries: Array<[bigint, bigint]> = [];
    for (let at = 0; at + 16 <= dyn.length; at += 16) {
      const tag = dyn.readBigInt64LE(at);
      if (tag === 0n) break;
      entries.push([tag, dyn.readBigUInt64LE(at + 8)]);
    }
    const value = (tag: bigint) => entries.find(([t]) => t === tag)?.[1];
    const strtab = Number(value(DT_STRTAB) ?? -1n);
    const strsz = Number(value(DT_STRSZ) ?? 0n);
    // DT_STRTAB is an address: the loadable segment holding it says where it sits in the file.
    const segment = loads.find((l) => strtab >= l.vaddr && strtab < l.vaddr + l.size);
    if (!segment || strsz === 0) return base;
    const strings = await readAt(fh, strtab - segment.vaddr + segment.offset, strsz);
    const str = (tag: bigint) => entries.filter(([t]) => t === tag).map(([, v]) => cString(strings, Number(v)));
    const [runpath] = str(DT_RUNPATH);
    const [soname] = str(DT_SONAME);
    return {
      ...base,
      needed: str(DT_NEEDED),
      rpath: searchPath(str(DT_RPATH)[0]),
      ...(runpath !== undefined ? { runpath: searchPath(runpath) } : {}),
      ...(soname !== undefined ? { soname } : {}),
    };
  } finally {
    await fh.close();
  }
}

/** Built for musl (Alpine): a glibc node never loads it; node-gyp-build and friends pick the glibc file beside it. */
function isMusl(elf: ElfDynamic): boolean {
  return elf.interpreter?.includes('ld-musl') === true || elf.needed.some((n) => n === 'libc.so' || n.startsWith('libc.musl-') || n.startsWith('ld-musl-'));
}

// ---- the sandbox's filesystem, as seen from inside -------------------------

/** Guest paths: the function directory at /fn over the rootfs, symlinks followed inside that view. */
class GuestView {
  readonly #cache = new Map<string, Promise<ElfDynamic | undefined>>();

  constructor(readonly rootfsDir: string, readonly functionDir: string, readonly mountPoint: string) {}

  hostPath(guest: string): string {
    if (guest === this.mountPoint || guest.startsWith(this.mountPoint + '/')) return path.join(this.functionDir, guest.slice(this.mountPoint.length));
    return path.join(this.rootfsDir, guest);
  }

  /** The guest path `guest` names once symlinks are followed, if it is a regular file. */
  async resolve(guest: string): Promise<string | undefined> {
    let pending = path.posix.normalize(guest).split('/').filter(Boolean);
    let done = '';
    for (let hops = 0; pending.length > 0; ) {
      const next = `${done}/${pending.shift()}`;
      const st = await fs.lstat(this.hostPath(next)).catch(() => undefined);
      if (!st) return undefined;
      if (st.isSymbolicLink()) {
        if (++hops > 40) return undefined;
        const target = await fs.readlink(this.hostPath(next));
        const spliced = path.posix.normalize(target.startsWith('/') ? target : `${done}/${target}`);
        pending = [...spliced.split('/').filter(Boolean), ...pending];
        done = '';
        continue;
      }
      done = next;
      if (pending.length === 0) return st.isFile() ? done : undefined;
      if (!st.isDirectory()) return undefined;
    }
    return undefined;
  }

  elf(guest: string): Promise<ElfDynamic | undefined> {
    let p = this.#cache.get(guest);
    if (!p) {
      p = readElfDynamic(this.hostPath(guest)).catch(() => undefined);
      this.#cache.set(guest, p);
    }
    return p;
  }
}

// ---- the loader: glibc's search order, simulated ---------------------------

interface Loaded {
  /** The path the loader opened it by: $ORIGIN is its directory. */
  opened: string;
  elf: ElfDynamic;
}

/** One object's search path entries with $ORIGIN, $LIB and $PLATFORM expanded; relative ones are relative to the cwd (/fn). */
function expand(entries: string[], object: Loaded, cwd: string): string[] {
  const origin = path.posix.dirname(object.opened);
  return entries.map((entry) => {
    const dir = entry
      .replace(/\$(ORIGIN|\{ORIGIN\})/g, origin)
      .replace(/\$(LIB|\{LIB\})/g, `lib/${MULTIARCH}`)
      .replace(/\$(PLATFORM|\{PLATFORM\})/g, process.arch === 'arm64' ? 'aarch64' : 'x86_64');
    return path.posix.resolve(cwd, dir);
  });
}

/**
 * Where glibc would look for `name`, needed by `object` that `loaders`
 * loaded (nearest first, the executable last): the RPATHs of the object
 * and of its loaders unless the object has a RUNPATH, then that RUNPATH
 * alone, then the system directories. LD_LIBRARY_PATH and ld.so.cache
 * are absent in the sandbox.
 */
function searchDirs(object: Loaded, loaders: Loaded[], cwd: string): string[] {
  const dirs: string[] = [];
  if (object.elf.runpath === undefined) {
    for (const o of [object, ...loaders]) if (o.elf.runpath === undefined) dirs.push(...expand(o.elf.rpath, o, cwd));
  } else {
    dirs.push(...expand(object.elf.runpath, object, cwd));
  }
  return [...dirs, ...SYSTEM_LIBRARY_DIRS];
}

class Process {
  /** Names a NEEDED entry is matched against before any search: sonames and opened paths of what is loaded. */
  readonly loaded = new Map<string, Loaded>();
  readonly missing: Array<{ by: Loaded; library: string }> = [];

  constructor(readonly view: GuestView, readonly cwd: string) {}

  fork(): Process {
    const copy = new Process(this.view, this.cwd);
    for (const [k, v] of this.loaded) copy.loaded.set(k, v);
    return copy;
  }

  #remember(object: Loaded, asName?: string): void {
    for (const name of [object.opened, asName, object.elf.soname]) if (name) this.loaded.set(name, object);
  }

  async #read(guest: string): Promise<ElfDynamic | undefined> {
    const real = await this.view.resolve(guest);
    return real ? this.view.elf(real) : undefined;
  }

  async #find(name: string, object: Loaded, loaders: Loaded[]): Promise<Loaded | undefined> {
    const candidates = name.includes('/') ? [path.posix.resolve(this.cwd, name)] : searchDirs(object, loaders, this.cwd).map((d) => path.posix.join(d, name));
    for (const opened of candidates) {
      const elf = await this.#read(opened);
      if (elf?.loadable) return { opened, elf };
    }
    return undefined;
  }

  /** Maps `root` and, breadth first as ld.so does, everything it needs; records what cannot be found. */
  async load(root: Loaded, loaders: Loaded[]): Promise<Loaded[]> {
    this.#remember(root);
    const mapped: Loaded[] = [root];
    const queue: Array<{ object: Loaded; loaders: Loaded[] }> = [{ object: root, loaders }];
    for (let item = queue.shift(); item; item = queue.shift()) {
      for (const name of item.object.elf.needed) {
        if (this.loaded.has(name)) continue;
        const found = await this.#find(name, item.object, item.loaders);
        if (!found) {
          this.missing.push({ by: item.object, library: name });
          continue;
        }
        this.#remember(found, name);
        mapped.push(found);
        queue.push({ object: found, loaders: [item.object, ...item.loaders] });
      }
    }
    return mapped;
  }

  /** The executable as the kernel starts it: its interpreter and its libraries are loaded before any addon. */
  async exec(executable: string): Promise<Loaded | undefined> {
    const elf = await this.#read(executable);
    if (!elf) return undefined;
    const exe = { opened: executable, elf };
    if (elf.interpreter) {
      const interp = await this.#read(elf.interpreter);
      // The interpreter answers to its own name as a NEEDED entry (ld-linux-x86-64.so.2).
      if (interp) this.#remember({ opened: elf.interpreter, elf: interp }, path.posix.basename(elf.interpreter));
    }
    await this.load(exe, []);
    this.missing.length = 0;
    return exe;
  }
}

// ---- the check -------------------------------------------------------------

export interface MissingLibrary {
  /** The ELF file whose DT_NEEDED entry nothing satisfies: relative to the function directory, or a guest path outside it. */
  file: string;
  library: string;
  /** The `.node` addon whose loading reaches `file`; absent for a `.so` that no addon loads. */
  addon?: string;
}

async function listFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await listFiles(dir, child)));
    else if (entry.isFile() || entry.isSymbolicLink()) out.push(child);
  }
  return out;
}

const ADDON = /\.node$/;
const SHARED_OBJECT = /\.so(\.\d+)*$/;

export interface NativeLibraryCheck {
  /** The prepared function directory (mounted at /fn). */
  functionDir: string;
  /** The root filesystem it runs on. */
  rootfsDir: string;
  /** Guest path of the node binary; default /usr/bin/node. */
  executable?: string;
  /** Where the function directory is mounted; default /fn. */
  mountPoint?: string;
}

/**
 * Every library a native addon or shared object of the function directory
 * needs that neither the directory (through RPATH/RUNPATH) nor the root
 * filesystem has, found the way glibc's loader would look for it when
 * node loads each `.node` file from /fn. A `.so` no addon reaches is
 * checked on its own (it may be dlopen'ed as a plugin) and reported
 * without `addon`.
 */
export async function missingNativeLibraries(check: NativeLibraryCheck): Promise<MissingLibrary[]> {
  const mountPoint = check.mountPoint ?? GUEST_PATHS.bundleDir;
  const view = new GuestView(check.rootfsDir, check.functionDir, mountPoint);
  const node = new Process(view, mountPoint);
  const exe = await node.exec(check.executable ?? GUEST_PATHS.node);
  const loaders = exe ? [exe] : [];
  const guest = (rel: string) => `${mountPoint}/${rel}`;
  const shown = (g: string) => (g.startsWith(mountPoint + '/') ? g.slice(mountPoint.length + 1) : g);

  const candidates: Array<{ rel: string; elf: ElfDynamic }> = [];
  for (const rel of (await listFiles(check.functionDir)).filter((f) => ADDON.test(f) || SHARED_OBJECT.test(f))) {
    const real = await view.resolve(guest(rel));
    const elf = real ? await view.elf(real) : undefined;
    if (elf?.loadable && !isMusl(elf)) candidates.push({ rel, elf });
  }

  const missing: MissingLibrary[] = [];
  const reached = new Set<string>();
  for (const { rel, elf } of candidates.filter((c) => ADDON.test(c.rel))) {
    // Each addon in a process of its own: which one a function loads first is not known here.
    const p = node.fork();
    for (const o of await p.load({ opened: guest(rel), elf }, loaders)) reached.add(o.opened);
    for (const m of p.missing) missing.push({ file: shown(m.by.opened), library: m.library, addon: rel });
  }
  for (const { rel, elf } of candidates.filter((c) => !ADDON.test(c.rel) && !reached.has(guest(c.rel)))) {
    const p = node.fork();
    await p.load({ opened: guest(rel), elf }, loaders);
    for (const m of p.missing) missing.push({ file: shown(m.by.opened), library: m.library });
  }
  return missing;
}

/**
 * Fails the deploy, before any sandbox boots, when an addon of the function
 * cannot load in it. A `.so` no addon loads does not fail it: packages ship
 * plugins that are only dlopen'ed on request (a GPU provider next to a CPU
 * one), and envd reports a failing dlopen at load time anyway.
 */
export async function assertNativeLibraries(check: NativeLibraryCheck): Promise<void> {
  const fatal = (await missingNativeLibraries(check)).filter((m) => m.addon !== undefined);
  if (fatal.length === 0) return;
  const lines = fatal.map((m) => `${m.file}${m.file === m.addon ? '' : ` (loaded by ${m.addon})`} needs ${m.library}, which neither the function directory nor the sandbox's root filesystem has`);
  const more = lines.length > 3 ? `; and ${lines.length - 3} more` : '';
  throw new NativeLibraryMissingError(lines.slice(0, 3).join('; ') + more, fatal);
}
