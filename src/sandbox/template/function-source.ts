import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';

/**
 * The contract between a deploy and envd: the prepared function directory
 * (mounted read-only at /fn) holds this file, naming the module envd loads
 * and, when the deploy said so, the export to call. envd reads it with
 * plain JSON.parse (runtime/envd/function-module.mjs).
 */
export const FUNCTION_META_PATH = '.snapfn/function.json';

export interface FunctionMeta {
  /** Path of the module to load, relative to /fn. */
  entry: string;
  /** The export that is the handler (`fn deploy --handler file.export`); absent: detected from the exports. */
  export?: string;
}

export async function writeFunctionMeta(dir: string, meta: FunctionMeta): Promise<void> {
  const file = path.join(dir, FUNCTION_META_PATH);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, JSON.stringify(meta));
}

interface SourceFile {
  rel: string;
  full: string;
  executable: boolean;
  size: number;
}

async function listFiles(dir: string, prefix = '', out: SourceFile[] = []): Promise<SourceFile[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) await listFiles(full, rel, out);
    else if (entry.isFile()) {
      const st = await fs.stat(full);
      out.push({ rel, full, executable: (st.mode & 0o111) !== 0, size: st.size });
    }
  }
  return out;
}

/** sha256 over every file of the directory (path, executable bit, bytes): the template id hashes this, not file times. */
export async function hashSourceDir(dir: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  hash.update('function-source-v1\0');
  for (const file of await listFiles(dir)) {
    hash.update(`${file.rel}\0${file.executable ? 'x' : '-'}\0${file.size}\0`);
    hash.update(await fs.readFile(file.full));
  }
  return hash.digest('hex');
}

export async function sourceDirStats(dir: string): Promise<{ files: number; bytes: number }> {
  const files = await listFiles(dir);
  return { files: files.length, bytes: files.reduce((n, f) => n + f.size, 0) };
}

/** A private copy for a template (hard links where the filesystem allows: the mount is read-only). */
export async function copySourceDir(from: string, to: string): Promise<void> {
  await fs.mkdir(path.dirname(to), { recursive: true });
  const linked = await execa('cp', ['-a', '-l', from, to], { reject: false, stdin: 'ignore' });
  if (linked.exitCode === 0) return;
  await fs.rm(to, { recursive: true, force: true });
  await execa('cp', ['-a', from, to], { stdin: 'ignore' });
}

/**
 * The function directory as a read-only ext4 image (the microVM drivers'
 * /fn drive). mkfs.ext4 -d fills it without mounting anything; room for the
 * files, their inodes and the journal.
 */
export async function writeSourceImage(sourceDir: string, image: string): Promise<void> {
  const { files, bytes } = await sourceDirStats(sourceDir);
  const sizeKb = Math.max(4096, Math.ceil((bytes * 1.3) / 1024) + files * 4 + 4096);
  await execa('mkfs.ext4', ['-q', '-F', '-L', 'snapfn-fn', '-N', String(files + 1024), '-d', sourceDir, image, `${sizeKb}K`], { stdin: 'ignore' });
}

/**
 * A source directory holding one ES module as `handler.mjs`: eval
 * runtimes, versions deployed before whole directories were kept, tests
 * and the bench. Content-addressed under `workDir`, so the same module
 * always gives the same directory and hash.
 */
export async function singleModuleSource(moduleFile: string, workDir = path.join(os.tmpdir(), 'snapfn-module-sources')): Promise<{ sourceDir: string; sourceHash: string }> {
  const code = await fs.readFile(moduleFile);
  const sourceDir = path.join(workDir, crypto.createHash('sha256').update(code).digest('hex').slice(0, 24));
  if (!(await fs.access(path.join(sourceDir, FUNCTION_META_PATH)).then(() => true, () => false))) {
    const tmp = `${sourceDir}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    await fs.mkdir(tmp, { recursive: true });
    await fs.writeFile(path.join(tmp, 'handler.mjs'), code);
    await writeFunctionMeta(tmp, { entry: 'handler.mjs' });
    await fs.rename(tmp, sourceDir).catch(async (err) => {
      await fs.rm(tmp, { recursive: true, force: true });
      // Someone else made the identical directory first.
      if (!(await fs.access(path.join(sourceDir, FUNCTION_META_PATH)).then(() => true, () => false))) throw err;
    });
  }
  return { sourceDir, sourceHash: await hashSourceDir(sourceDir) };
}
