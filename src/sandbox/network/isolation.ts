import { execa } from 'execa';

/**
 * Host firewall rules that keep sandboxes off the host's services and off
 * each other. Every slot's host-side veth is named `sf*`, so two static
 * rules cover all slots; a slot granted egress gets its own ACCEPT rule
 * (internet only: private and loopback ranges stay dropped).
 */
export const VETH_PREFIX = 'sf';
const INPUT_CHAIN = 'SNAPFN-INPUT';
const FORWARD_CHAIN = 'SNAPFN-FORWARD';
const PRIVATE_RANGES = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '127.0.0.0/8', '169.254.0.0/16', '100.64.0.0/10'];

async function iptables(args: string[]): Promise<boolean> {
  const r = await execa('iptables', ['-w', ...args], { reject: false });
  return r.exitCode === 0;
}

async function ensureChain(chain: string, parent: 'INPUT' | 'FORWARD'): Promise<void> {
  await iptables(['-N', chain]); // fails harmlessly when it exists
  if (!(await iptables(['-C', parent, '-i', `${VETH_PREFIX}+`, '-j', chain]))) {
    await iptables(['-I', parent, '1', '-i', `${VETH_PREFIX}+`, '-j', chain]);
  }
}

/** Idempotent: safe to call from every process that owns a slot pool. */
export async function installIsolationRules(): Promise<void> {
  await ensureChain(INPUT_CHAIN, 'INPUT');
  await ensureChain(FORWARD_CHAIN, 'FORWARD');
  // DROP stays last in each chain; per-slot egress rules are inserted above it.
  if (!(await iptables(['-C', INPUT_CHAIN, '-j', 'DROP']))) await iptables(['-A', INPUT_CHAIN, '-j', 'DROP']);
  if (!(await iptables(['-C', FORWARD_CHAIN, '-j', 'DROP']))) await iptables(['-A', FORWARD_CHAIN, '-j', 'DROP']);
}

function egressRules(hostVeth: string, subnet: string): string[][] {
  return [
    ...PRIVATE_RANGES.map((range) => [FORWARD_CHAIN, '-i', hostVeth, '-d', range, '-j', 'DROP']),
    [FORWARD_CHAIN, '-i', hostVeth, '-j', 'ACCEPT'],
  ].concat([['POSTROUTING', '-t', 'nat', '-s', subnet, '!', '-o', hostVeth, '-j', 'MASQUERADE']]);
}

export async function grantEgress(hostVeth: string, subnet: string): Promise<void> {
  await execa('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1'], { reject: false });
  // Inserted in reverse so the private-range DROPs end up above the ACCEPT.
  for (const rule of egressRules(hostVeth, subnet).reverse()) {
    const [chain, ...rest] = rule;
    if (rest[0] === '-t') await iptables([rest[0], rest[1]!, '-I', chain!, ...rest.slice(2)]);
    else await iptables(['-I', chain!, '1', ...rest]);
  }
}

export async function revokeEgress(hostVeth: string, subnet: string): Promise<void> {
  for (const rule of egressRules(hostVeth, subnet)) {
    const [chain, ...rest] = rule;
    if (rest[0] === '-t') while (await iptables([rest[0], rest[1]!, '-D', chain!, ...rest.slice(2)]));
    else while (await iptables(['-D', chain!, ...rest]));
  }
}
