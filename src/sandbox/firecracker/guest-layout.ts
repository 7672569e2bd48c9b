/**
 * Everything about a Firecracker guest that is frozen into its snapshot and
 * therefore must be identical for every sandbox resumed from a template.
 *
 * A microVM's kernel keeps its IP address, its MAC, its block devices' host
 * paths (held open by Firecracker, recorded in the VM state) and its vsock
 * CID inside the snapshot. So every guest gets the same inner address and
 * MAC behind a tap of the same name (the slot's network namespace isolates
 * them, as in E2B), and every drive sits at the same fixed host path, which
 * a private mount namespace per VM points at that sandbox's own file.
 */

/** Inside every slot netns: the tap device and the two ends of its /30. */
export const TAP_DEVICE = 'tap0';
export const TAP_HOST_IP = '169.254.0.21';
export const GUEST_IP = '169.254.0.22';
export const GUEST_NETMASK = '255.255.255.252';
/** Locally administered, fixed. */
export const GUEST_MAC = '06:00:a9:fe:00:16';
export const GUEST_IFACE = 'eth0';

/** Drives, at these paths in every VM's mount namespace. */
export const FIXED_DIR = '/run/snapfn/fc';
export const FIXED_ROOT_DRIVE = `${FIXED_DIR}/rootfs.ext4`;
export const FIXED_BUNDLE_DRIVE = `${FIXED_DIR}/bundle.ext4`;

/**
 * vsock: envd dials the host (CID 2) on this port from inside the guest; on
 * the host Firecracker turns that into a connection to `${uds_path}_1024`,
 * an ordinary Unix socket we listen on, exactly as the gVisor driver does.
 */
export const GUEST_CID = 3;
export const ENVD_VSOCK_PORT = 1024;

/**
 * Kernel command line. The address is configured by the kernel (ip=) so no
 * DHCP or init script is involved; the guest init (see docs/firecracker.md,
 * "guest image contract") mounts the bundle drive and starts the vsock
 * bridge and envd.
 */
export function bootArgs(): string {
  return [
    'console=ttyS0',
    'reboot=k',
    'panic=1',
    'pci=off',
    'root=/dev/vda',
    'rw',
    'init=/sbin/snapfn-init',
    `ip=${GUEST_IP}::${TAP_HOST_IP}:${GUEST_NETMASK}::${GUEST_IFACE}:off`,
  ].join(' ');
}
