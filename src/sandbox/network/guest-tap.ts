import { execa } from 'execa';

/**
 * The microVM side of a network slot (QEMU driver).
 *
 * A guest kernel keeps its address in the memory snapshot, so every VM
 * restored from a template comes back with the address it was built with.
 * Every slot therefore has the same tap, with the same gateway address, in
 * its own namespace, and the guest always has the same address behind it.
 * Inside the namespace the guest's packets are SNATed to the slot's own veth
 * address (NetworkSlot.guestIp), so on the host a microVM is
 * indistinguishable from a gVisor sandbox in that slot: the host's isolation
 * and egress rules (isolation.ts) apply unchanged, and nothing on the host
 * knows about the inner address.
 *
 * Link-local (169.254/16): it is dropped by the host rules should it ever
 * leak, and no internet destination a handler wants lives there.
 */
export const MICROVM_TAP = 'tap0';
export const MICROVM_GATEWAY_IP = '169.254.100.1';
export const MICROVM_GUEST_IP = '169.254.100.2';
export const MICROVM_PREFIX = 30;
/** Fixed and locally administered: the MAC is part of the VM state too. */
export const MICROVM_GUEST_MAC = '06:00:a9:fe:64:02';

/**
 * Adds the tap and the translation to a freshly created slot namespace.
 * The rules go in with one iptables-restore (all or nothing). The namespace's
 * INPUT drops everything from the tap: the gateway address exists only to
 * route through, no service in the namespace is for the guest.
 */
export async function addMicrovmTap(netns: string, slotIp: string): Promise<void> {
  const nsenter = ['--net=/var/run/netns/' + netns];
  await run('ip', ['-n', netns, '-batch', '-'], [
    `tuntap add dev ${MICROVM_TAP} mode tap`,
    `addr add ${MICROVM_GATEWAY_IP}/${MICROVM_PREFIX} dev ${MICROVM_TAP}`,
    `link set ${MICROVM_TAP} up`,
  ].join('\n') + '\n');
  await run('nsenter', [...nsenter, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
  await run('nsenter', [...nsenter, 'iptables-restore', '-w'], [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    `-A POSTROUTING -s ${MICROVM_GUEST_IP}/32 -o eth0 -j SNAT --to-source ${slotIp}`,
    'COMMIT',
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    `-A INPUT -i ${MICROVM_TAP} -j DROP`,
    'COMMIT',
  ].join('\n') + '\n');
}

async function run(cmd: string, args: string[], input?: string): Promise<void> {
  const r = await execa(cmd, args, { reject: false, all: true, ...(input === undefined ? { stdin: 'ignore' as const } : { input }) });
  if (r.exitCode !== 0) throw new Error(`microVM tap setup failed: ${cmd} ${args.join(' ')}: ${String(r.all).trim().slice(0, 300)}`);
}
