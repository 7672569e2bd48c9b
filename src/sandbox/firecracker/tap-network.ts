import { execa } from 'execa';
import { GUEST_IP, TAP_DEVICE, TAP_HOST_IP } from './guest-layout.ts';

/**
 * The guest side of a network slot for a microVM. The slot pool already
 * gives each netns a veth (`eth0` inside, with the slot's own address) to
 * the host. Here we add the tap Firecracker attaches to, with the fixed
 * guest /30 (guest-layout.ts), and translate between the two inside the
 * namespace: the guest's packets leave as the slot's address, so the host's
 * isolation and egress rules (src/sandbox/network/isolation.ts) apply to a
 * microVM exactly as to a gVisor sandbox. Nothing on the host changes.
 */
export interface TapSlot {
  netns: string;
  /** The slot's address on its in-namespace veth (NetworkSlot.guestIp). */
  slotIp: string;
}

/** The commands, for the record and for tests. */
export function tapCommands(slot: TapSlot): string[][] {
  const inNs = (...args: string[]) => ['ip', 'netns', 'exec', slot.netns, ...args];
  return [
    ['ip', '-n', slot.netns, 'tuntap', 'add', 'dev', TAP_DEVICE, 'mode', 'tap'],
    ['ip', '-n', slot.netns, 'addr', 'add', `${TAP_HOST_IP}/30`, 'dev', TAP_DEVICE],
    ['ip', '-n', slot.netns, 'link', 'set', TAP_DEVICE, 'up'],
    inNs('sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'),
    inNs('iptables', '-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', `${GUEST_IP}/32`, '-o', 'eth0', '-j', 'SNAT', '--to-source', slot.slotIp),
  ];
}

/**
 * Idempotent: a slot keeps its tap across sandboxes (the pool reuses
 * namespaces), so this is a no-op after the first time. Firecracker
 * re-opens the tap by name on every snapshot load.
 */
export async function ensureTap(slot: TapSlot): Promise<void> {
  const present = await execa('ip', ['-n', slot.netns, 'link', 'show', TAP_DEVICE], { reject: false, stdin: 'ignore' });
  if (present.exitCode === 0) return;
  for (const [cmd, ...args] of tapCommands(slot)) {
    const r = await execa(cmd!, args, { reject: false, stdin: 'ignore', all: true });
    if (r.exitCode !== 0) throw new Error(`tap setup in ${slot.netns} failed: ${[cmd, ...args].join(' ')}: ${String(r.all).trim()}`);
  }
}
