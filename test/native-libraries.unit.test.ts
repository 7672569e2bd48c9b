import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { execa } from 'execa';
import { NativeLibraryMissingError } from '../src/errors.ts';
import { assertNativeLibraries, missingNativeLibraries, readElfDynamic } from '../src/sandbox/rootfs/native-libraries.ts';
import { nativeRuntimeLibraries } from '../src/sandbox/rootfs/native-runtime.ts';

const NODE_MODULES = fileURLToPath(new URL('../node_modules/', import.meta.url));
const SHARP_ADDON = 'node_modules/@img/sharp-linux-x64/lib/sharp-linux-x64-0.35.5.node';
const LIBVIPS = 'node_modules/@img/sharp-libvips-linux-x64/lib/libvips-cpp.so.8.18.7';
const SQLITE_ADDON = 'node_modules/better-sqlite3/build/Release/better_sqlite3.node';
const NODE = await fs.realpath(process.execPath);

async function copyInto(dir: string, rel: string, from = path.join(NODE_MODULES, '..', rel)): Promise<void> {
  await fs.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
  await fs.cp(from, path.join(dir, rel), { recursive: true });
}

/** `cc -shared` a one-function object; `libs` are -l names looked up in `libDir`. */
async function cc(out: string, options: { soname?: string; libs?: string[]; libDir?: string; rpath?: string; runpath?: boolean } = {}): Promise<void> {
  await fs.mkdir(path.dirname(out), { recursive: true });
  const src = `${out}.c`;
  await fs.writeFile(src, `int snapfn_${path.basename(out).replace(/\W/g, '_')}(void) { return 1; }\n`);
  const args = ['-shared', '-fPIC', '-o', out, src];
  if (options.soname) args.push(`-Wl,-soname,${options.soname}`);
  if (options.rpath) args.push(`-Wl,-rpath,${options.rpath}`, options.runpath ? '-Wl,--enable-new-dtags' : '-Wl,--disable-new-dtags');
  if (options.libDir) args.push(`-L${options.libDir}`);
  // --no-as-needed: the stubs export nothing we call, and the DT_NEEDED entry is the point.
  for (const lib of options.libs ?? []) args.push('-Wl,--no-as-needed', `-l:${lib}`);
  await execa('cc', args);
  await fs.rm(src);
}

/** A root filesystem like the base one before native-runtime.ts: node and what `ldd node` lists, nothing else. */
async function nodeOnlyRootfs(dir: string, extra: string[] = []): Promise<void> {
  await fs.mkdir(path.join(dir, 'usr/bin'), { recursive: true });
  await fs.link(NODE, path.join(dir, 'usr/bin/node')).catch(() => fs.copyFile(NODE, path.join(dir, 'usr/bin/node')));
  const { stdout } = await execa('ldd', [NODE]);
  const libs = [...stdout.matchAll(/(?:=>\s*|^\s*)(\/\S+)/gm)].map((m) => m[1]!);
  for (const lib of [...libs, ...extra]) {
    await fs.mkdir(path.dirname(path.join(dir, lib)), { recursive: true });
    await fs.copyFile(lib, path.join(dir, lib));
  }
}

describe('native libraries of a function directory', () => {
  let work: string;
  const dir = (name: string) => path.join(work, name);

  before(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-native-libs-'));
  });
  after(async () => {
    await fs.rm(work, { recursive: true, force: true });
  });

  it('reads DT_NEEDED, RPATH with $ORIGIN and the soname of a real addon', async () => {
    const elf = await readElfDynamic(path.join(NODE_MODULES, '..', SHARP_ADDON));
    assert.ok(elf?.loadable);
    assert.ok(elf.needed.includes('libvips-cpp.so.8.18.7'), JSON.stringify(elf.needed));
    assert.equal(elf.rpath[0], '$ORIGIN/../../sharp-libvips-linux-x64/lib');
    assert.equal(elf.runpath, undefined);
    assert.equal(elf.soname, 'sharp-linux-x64-0.35.5.node');
    const libvips = await readElfDynamic(path.join(NODE_MODULES, '..', LIBVIPS));
    assert.deepEqual(libvips?.runpath, ['$ORIGIN/']);
    assert.match((await readElfDynamic(NODE))?.interpreter ?? '', /ld-linux/);
    assert.equal(await readElfDynamic(path.join(NODE_MODULES, 'sharp/package.json')), undefined);
  });

  it('finds nothing missing for sharp (prebuilt, RPATH into its libvips package) and better-sqlite3 (node-gyp) on the host', async () => {
    const fn = dir('real');
    for (const rel of ['node_modules/@img/sharp-linux-x64', 'node_modules/@img/sharp-libvips-linux-x64', 'node_modules/better-sqlite3/build', 'node_modules/@msgpackr-extract']) await copyInto(fn, rel);
    // @msgpackr-extract ships musl builds (NEEDED libc.so) next to the glibc ones: never loaded here, never reported.
    assert.deepEqual(await missingNativeLibraries({ functionDir: fn, rootfsDir: '/', executable: NODE }), []);
  });

  it('names the library an addon lacks when its package of libraries was not uploaded', async () => {
    const fn = dir('no-libvips');
    await copyInto(fn, 'node_modules/@img/sharp-linux-x64');
    assert.deepEqual(await missingNativeLibraries({ functionDir: fn, rootfsDir: '/', executable: NODE }), [{ file: SHARP_ADDON, library: 'libvips-cpp.so.8.18.7', addon: SHARP_ADDON }]);
  });

  it('on a rootfs with only what node links, libvips lacks libresolv.so.2; the native runtime adds it', async () => {
    const fn = dir('sharp-fn');
    for (const rel of ['node_modules/@img/sharp-linux-x64', 'node_modules/@img/sharp-libvips-linux-x64', SQLITE_ADDON]) await copyInto(fn, rel);
    const bare = dir('bare-rootfs');
    await nodeOnlyRootfs(bare);
    assert.deepEqual(await missingNativeLibraries({ functionDir: fn, rootfsDir: bare }), [{ file: LIBVIPS, library: 'libresolv.so.2', addon: SHARP_ADDON }]);

    const runtime = await nativeRuntimeLibraries();
    for (const lib of ['libresolv.so.2', 'libstdc++.so.6', 'libgcc_s.so.1', 'libc.so.6', 'libm.so.6', 'ld-linux-x86-64.so.2']) {
      assert.ok(runtime.some((p) => path.basename(p) === lib), `${lib} in ${runtime.join(' ')}`);
    }
    const full = dir('native-rootfs');
    await nodeOnlyRootfs(full, runtime);
    assert.deepEqual(await missingNativeLibraries({ functionDir: fn, rootfsDir: full }), []);
  });

  it('follows glibc: an RPATH is inherited by what the addon loads, a RUNPATH is not', async () => {
    for (const [name, runpath] of [['rpath', false], ['runpath', true]] as const) {
      const fn = dir(`inherit-${name}`);
      await cc(path.join(fn, 'lib/libb.so'), { soname: 'libb.so' });
      await cc(path.join(fn, 'lib/liba.so'), { soname: 'liba.so', libs: ['libb.so'], libDir: path.join(fn, 'lib') });
      await cc(path.join(fn, 'addon.node'), { libs: ['liba.so'], libDir: path.join(fn, 'lib'), rpath: '$ORIGIN/lib', runpath });
      const missing = await missingNativeLibraries({ functionDir: fn, rootfsDir: '/', executable: NODE });
      assert.deepEqual(missing, runpath ? [{ file: 'lib/liba.so', library: 'libb.so', addon: 'addon.node' }] : [], name);
    }
  });

  it('skips a library built for another machine and keeps searching, as the loader does', async () => {
    const fn = dir('wrong-machine');
    await cc(path.join(fn, 'a/libm1.so'), { soname: 'libm1.so' });
    await cc(path.join(fn, 'b/libm1.so'), { soname: 'libm1.so' });
    const first = await fs.readFile(path.join(fn, 'a/libm1.so'));
    first.writeUInt16LE(183, 18); // EM_AARCH64
    await fs.writeFile(path.join(fn, 'a/libm1.so'), first);
    await cc(path.join(fn, 'm.node'), { libs: ['libm1.so'], libDir: path.join(fn, 'b'), rpath: '$ORIGIN/a:$ORIGIN/b' });
    assert.deepEqual(await missingNativeLibraries({ functionDir: fn, rootfsDir: '/', executable: NODE }), []);
    await fs.rm(path.join(fn, 'b'), { recursive: true });
    assert.deepEqual(await missingNativeLibraries({ functionDir: fn, rootfsDir: '/', executable: NODE }), [{ file: 'm.node', library: 'libm1.so', addon: 'm.node' }]);
  });

  it('fails with native_library_missing for an addon needing a library nobody has; a plugin .so only reports', async () => {
    const stubs = dir('stubs');
    await cc(path.join(stubs, 'libsnapfn-nonexistent.so.1'), { soname: 'libsnapfn-nonexistent.so.1' });
    const fn = dir('missing');
    // A plugin no addon loads (a GPU provider beside a CPU one): reported, never fatal.
    await cc(path.join(fn, 'node_modules/x/plugins/libgpu.so'), { libs: ['libsnapfn-nonexistent.so.1'], libDir: stubs });
    await fs.writeFile(path.join(fn, 'node_modules/x/plugins/libscript.so'), 'INPUT(-lc)\n'); // a linker script, not ELF
    assert.deepEqual(await missingNativeLibraries({ functionDir: fn, rootfsDir: '/', executable: NODE }), [{ file: 'node_modules/x/plugins/libgpu.so', library: 'libsnapfn-nonexistent.so.1' }]);
    await assertNativeLibraries({ functionDir: fn, rootfsDir: '/', executable: NODE });

    await cc(path.join(fn, 'node_modules/x/build/Release/x.node'), { libs: ['libsnapfn-nonexistent.so.1'], libDir: stubs });
    const err = await assertNativeLibraries({ functionDir: fn, rootfsDir: '/', executable: NODE }).then(
      () => assert.fail('expected a NativeLibraryMissingError'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof NativeLibraryMissingError);
    assert.equal(err.code, 'native_library_missing');
    assert.equal(err.status, 400);
    assert.equal(err.message, "node_modules/x/build/Release/x.node needs libsnapfn-nonexistent.so.1, which neither the function directory nor the sandbox's root filesystem has");
  });
});
