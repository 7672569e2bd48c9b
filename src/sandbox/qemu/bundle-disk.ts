import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';

/**
 * The function bundle as a small ext4 image (the guest's vdb, mounted
 * read-only at /fn). A disk of its own keeps the big root image shared by
 * every template, and a restored guest's page cache of /fn stays valid
 * because the image never changes after the template build.
 */
export async function writeBundleDisk(bundleFile: string, image: string): Promise<void> {
  const staging = `${image}.d`;
  await fs.mkdir(staging, { recursive: true });
  try {
    await fs.copyFile(bundleFile, path.join(staging, 'handler.mjs'));
    const bytes = (await fs.stat(bundleFile)).size;
    const sizeKb = Math.max(4096, Math.ceil((bytes * 1.5) / 1024) + 2048);
    await execa('mkfs.ext4', ['-q', '-F', '-L', 'snapfn-fn', '-d', staging, image, `${sizeKb}K`], { stdin: 'ignore' });
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
}
