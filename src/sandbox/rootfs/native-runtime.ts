import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';

/** Debian's multiarch directory name for this machine (x86_64-linux-gnu). */
export const MULTIARCH = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';

/**
 * Where Debian's ld.so looks when an object's RPATH/RUNPATH did not find a
 * library (`ld.so --help` lists them, after /etc/ld.so.cache, which the
 * sandbox has none of). The base rootfs keeps host libraries at their host
 * paths, so the same list holds inside the sandbox.
 */
export const SYSTEM_LIBRARY_DIRS = [`/lib/${MULTIARCH}`, `/usr/lib/${MULTIARCH}`, '/lib', '/usr/lib'];

/**
 * Libraries native addons load that node itself may not: an addon built on
 * a glibc system links whichever glibc pieces it uses (libvips, under
 * sharp, needs libresolv.so.2, which node does not), and prebuilt binaries
 * that did not bundle their dependencies link the system's zlib and
 * OpenSSL (Prisma's query engine, for one, comes as a debian-openssl-3.0.x
 * build).
 */
const NATIVE_RUNTIME_SONAMES = [
  // glibc
  'libc.so.6', 'libm.so.6', 'libmvec.so.1', 'libdl.so.2', 'libpthread.so.0', 'librt.so.1', 'libresolv.so.2', 'libutil.so.1', 'libanl.so.1',
  // the GCC runtime of C++ and of code built with atomics
  'libstdc++.so.6', 'libgcc_s.so.1', 'libatomic.so.1',
  // system libraries prebuilt binaries link rather than bundle
  'libz.so.1', 'libssl.so.3', 'libcrypto.so.3',
];

async function isFile(p: string): Promise<boolean> {
  return fs.stat(p).then((s) => s.isFile(), () => false);
}

/** `ldd file` as absolute host paths (the interpreter included). */
async function lddPaths(file: string): Promise<string[]> {
  const { stdout } = await execa('ldd', [file], { reject: false });
  const out: string[] = [];
  for (const line of String(stdout).split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1]) out.push(m[1]);
  }
  return out;
}

/**
 * Host paths of NATIVE_RUNTIME_SONAMES the host has, with what they link
 * in turn. A library the host lacks is left out: the rootfs hash covers
 * what was copied, and a function needing it fails its deploy by name.
 */
export async function nativeRuntimeLibraries(): Promise<string[]> {
  const found: string[] = [];
  for (const soname of NATIVE_RUNTIME_SONAMES) {
    for (const dir of SYSTEM_LIBRARY_DIRS) {
      const candidate = path.join(dir, soname);
      if (await isFile(candidate)) {
        found.push(candidate);
        break;
      }
    }
  }
  const linked = await Promise.all(found.map(lddPaths));
  return [...new Set([...found, ...linked.flat()])].sort();
}

/** `libs` (what node links) plus the native runtime, sorted and without duplicates. */
export async function withNativeRuntimeLibraries(libs: string[]): Promise<string[]> {
  return [...new Set([...libs, ...(await nativeRuntimeLibraries())])].sort();
}
