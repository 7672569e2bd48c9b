import crypto from 'node:crypto';
import fs from 'node:fs/promises';

/**
 * Replaces `file` all at once: readers see the old or the new content, never
 * a half-written file, and a crash mid-write leaves the old one in place.
 */
export async function writeFileAtomic(file: string, data: string | Buffer, options: { mode?: number } = {}): Promise<void> {
  const mode = options.mode ?? 0o644;
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  // The mode is set at creation: a secrets file must never exist world-readable, even briefly.
  await writeTemp(tmp, data, mode);
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Creates `file` whole or not at all, failing with EEXIST if it exists: a
 * full disk mid-write must not leave a truncated record that every later
 * read (and so every later deploy) would trip over.
 */
export async function writeFileExclusive(file: string, data: string | Buffer, options: { mode?: number } = {}): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  await writeTemp(tmp, data, options.mode ?? 0o644);
  try {
    await fs.link(tmp, file);
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

async function writeTemp(tmp: string, data: string | Buffer, mode: number): Promise<void> {
  const handle = await fs.open(tmp, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => {});
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
}

/** Reads and parses a JSON file; `undefined` when it does not exist. */
export async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return JSON.parse(text);
}
