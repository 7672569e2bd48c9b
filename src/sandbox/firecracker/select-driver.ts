import { FirecrackerDriver } from './firecracker-driver.ts';
import { detectFirecracker } from './host-support.ts';

/**
 * The Firecracker driver if this host can run it, else the reason it cannot.
 * Needs a firecracker binary, hardware KVM (host-support.ts) and a guest
 * kernel and root filesystem image (SNAPFN_FC_KERNEL, SNAPFN_FC_ROOTFS; see
 * docs/firecracker.md). Callers fall back to the gVisor driver otherwise.
 */
export async function firecrackerDriverIfSupported(options: {
  home: string;
  networkSlots: number;
  env?: NodeJS.ProcessEnv;
}): Promise<{ driver: FirecrackerDriver; reason: string } | { driver: undefined; reason: string }> {
  const env = options.env ?? process.env;
  const support = detectFirecracker(env);
  if (!support.ok) return { driver: undefined, reason: support.reason };
  const kernelImage = env.SNAPFN_FC_KERNEL;
  const rootfsImage = env.SNAPFN_FC_ROOTFS;
  if (!kernelImage || !rootfsImage) return { driver: undefined, reason: 'SNAPFN_FC_KERNEL and SNAPFN_FC_ROOTFS (guest kernel and root filesystem image) are not set' };
  const driver = await FirecrackerDriver.create({ home: options.home, networkSlots: options.networkSlots, kernelImage, rootfsImage, binary: support.binary });
  return { driver, reason: support.reason };
}
