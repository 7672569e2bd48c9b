import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { BaseRootfs } from '../rootfs/base-rootfs.ts';

const SCRIPT = fileURLToPath(new URL('../../../scripts/build-guest.sh', import.meta.url));
const GUEST_DIR = fileURLToPath(new URL('../../../runtime/guest/', import.meta.url));
const INPUTS = [SCRIPT, path.join(GUEST_DIR, 'init'), path.join(GUEST_DIR, 'initramfs-init')];

/** Kernel, initramfs and ext4 root filesystem of the QEMU guest. */
export interface GuestImage {
  readonly hash: string;
  readonly dir: string;
  readonly kernel: string;
  readonly initrd: string;
  /** Read-only base disk; every template has a qcow2 layer over it. */
  readonly rootfsImg: string;
}

/** The Debian cloud kernel package to boot: SNAPFN_GUEST_KERNEL, else what the meta-package points at. */
async function kernelPackage(): Promise<string> {
  if (process.env.SNAPFN_GUEST_KERNEL) return process.env.SNAPFN_GUEST_KERNEL;
  const { stdout } = await execa('apt-cache', ['depends', 'linux-image-cloud-amd64']);
  const m = /Depends:\s*(linux-image-\S+-cloud-amd64)/.exec(stdout);
  if (!m?.[1]) throw new Error('cannot resolve linux-image-cloud-amd64 (run apt-get update)');
  return m[1];
}

const cache = new Map<string, Promise<GuestImage>>();

/**
 * Builds the guest image once per content hash under `$home/guest/<hash>/`:
 * the build script, the guest init scripts, the base rootfs (node + envd)
 * and the kernel version all feed the hash, so changing any of them gives a
 * new image (and, through the template id, new templates).
 */
export function ensureGuestImage(home: string, rootfs: BaseRootfs): Promise<GuestImage> {
  const key = `${home}\0${rootfs.hash}`;
  let p = cache.get(key);
  if (!p) {
    p = build(home, rootfs);
    cache.set(key, p);
    p.catch(() => cache.delete(key));
  }
  return p;
}

async function build(home: string, rootfs: BaseRootfs): Promise<GuestImage> {
  const kpkg = await kernelPackage();
  const h = crypto.createHash('sha256').update('guest-v1\0').update(kpkg).update('\0').update(rootfs.hash);
  for (const f of INPUTS) h.update('\0').update(await fs.readFile(f));
  const hash = h.digest('hex').slice(0, 16);
  const dir = path.join(home, 'guest', hash);
  const image = { hash, dir, kernel: path.join(dir, 'vmlinux'), initrd: path.join(dir, 'initramfs.cpio'), rootfsImg: path.join(dir, 'rootfs.img') };
  if (await exists(path.join(dir, '.complete'))) return image;
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  try {
    await execa('bash', [SCRIPT, tmp, rootfs.dir, kpkg], { stdin: 'ignore', all: true });
    await fs.writeFile(path.join(tmp, '.complete'), hash);
    await fs.rename(tmp, dir).catch(async (err) => {
      // Another process published the same hash first: theirs is identical.
      if (!(await exists(path.join(dir, '.complete')))) throw err;
    });
  } catch (err) {
    const out = (err as { all?: string }).all;
    throw new Error(`guest image build failed: ${out ? out.trim().split('\n').slice(-5).join(' | ') : (err as Error).message}`, { cause: err });
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
  return image;
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(() => true, () => false);
}
