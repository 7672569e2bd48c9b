import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';

/**
 * A sandbox's own writable root drive: a copy of the template's.
 *
 * `cp --reflink=auto` shares every block with the template on a filesystem
 * with reflinks (XFS, btrfs): instant, and 100 sandboxes cost the template
 * plus their own writes. Elsewhere (ext4) it is a real, sparse copy, which
 * costs time and space in proportion to the image; docs/firecracker.md says
 * to put SNAPFN_HOME on XFS for this driver. (A dm-snapshot over loop
 * devices would be the block-level alternative; it needs dm-mod.)
 */
export async function copyOnWriteDrive(templateDrive: string, sandboxDrive: string): Promise<void> {
  await execa('cp', ['--reflink=auto', '--sparse=always', templateDrive, sandboxDrive], { stdin: 'ignore' });
}

/** Whether copies under `dir` share blocks (reflink) rather than duplicate them. */
export async function reflinkSupported(dir: string): Promise<boolean> {
  const probe = path.join(dir, `.reflink-probe-${process.pid}`);
  try {
    await fs.writeFile(probe, 'x');
    const r = await execa('cp', ['--reflink=always', probe, `${probe}.copy`], { reject: false, stdin: 'ignore' });
    return r.exitCode === 0;
  } finally {
    await fs.rm(probe, { force: true });
    await fs.rm(`${probe}.copy`, { force: true });
  }
}
