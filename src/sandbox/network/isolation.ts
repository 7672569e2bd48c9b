import fs from 'node:fs/promises';
import { execa } from 'execa';
import type { EgressPolicy } from '../../config.ts';
import { parseCidr } from './cidr.ts';
import { HostNetworkWatcher, readHostNetworks, type HostNetwork } from './host-networks.ts';

/**
 * Host firewall rules that keep sandboxes off the host's services and off
 * each other. Every slot's host-side veth is named `sf*`, so two static
 * rules per family cover all slots: INPUT from a slot is dropped (no host
 * service is for a sandbox, whichever host address it is dialled on) and so
 * is FORWARD, unless the slot was granted egress. A slot granted egress
 * jumps to its pool's egress chain (the deny list, see EgressChain) and is
 * forwarded only if that chain lets it through.
 *
 * IPv6 from a slot is dropped outright, INPUT and FORWARD: slots have no
 * IPv6 address or route (egress is IPv4), and the host side of every slot
 * veth has IPv6 disabled, so no IPv6 address or subnet of the host is
 * reachable and there is no IPv6 list to keep.
 */
export const VETH_PREFIX = 'sf';
const INPUT_CHAIN = 'SNAPFN-INPUT';
const FORWARD_CHAIN = 'SNAPFN-FORWARD';
const EGRESS_CHAIN_PREFIX = 'SNAPFN-EG-';

/**
 * Dropped for every egress slot whatever the host looks like: this host
 * ("this network"), private ranges, CGNAT, loopback, link-local (cloud
 * metadata services live there), multicast and reserved space.
 */
export const ALWAYS_DENIED = ['0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16', '224.0.0.0/4', '240.0.0.0/4'];

type Family = 'iptables' | 'ip6tables';

async function tables(family: Family, args: string[]): Promise<boolean> {
  const r = await execa(family, ['-w', ...args], { reject: false, stdin: 'ignore' });
  return r.exitCode === 0;
}

async function restore(family: Family, input: string): Promise<void> {
  const r = await execa(`${family}-restore`, ['-w', '--noflush'], { input, reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`${family}-restore failed: ${String(r.all).trim().slice(0, 400)}`);
}

async function ensureChain(family: Family, chain: string, parent: 'INPUT' | 'FORWARD'): Promise<void> {
  await tables(family, ['-N', chain]); // fails harmlessly when it exists
  if (!(await tables(family, ['-C', parent, '-i', `${VETH_PREFIX}+`, '-j', chain]))) {
    await tables(family, ['-I', parent, '1', '-i', `${VETH_PREFIX}+`, '-j', chain]);
  }
  // DROP stays last; per-slot egress rules are inserted above it.
  if (!(await tables(family, ['-C', chain, '-j', 'DROP']))) await tables(family, ['-A', chain, '-j', 'DROP']);
}

/** Idempotent: safe to call from every process that owns a slot pool. */
export async function installIsolationRules(): Promise<void> {
  await ensureChain('iptables', INPUT_CHAIN, 'INPUT');
  await ensureChain('iptables', FORWARD_CHAIN, 'FORWARD');
  // Without ip6tables (no IPv6 in the kernel) there is no IPv6 to drop either.
  await ensureChain('ip6tables', INPUT_CHAIN, 'INPUT').catch(() => {});
  await ensureChain('ip6tables', FORWARD_CHAIN, 'FORWARD').catch(() => {});
}

/** A slot's host-side veth takes no IPv6 (no link-local address for a sandbox to dial the host on). */
export async function disableIpv6(hostVeth: string): Promise<void> {
  await fs.writeFile(`/proc/sys/net/ipv6/conf/${hostVeth}/disable_ipv6`, '1').catch(() => {});
}

/** What one egress chain drops, and what it lets through regardless (IPv4; see the module comment for IPv6). */
export function egressDenyList(policy: EgressPolicy, host: HostNetwork[]): { allow: string[]; deny: string[] } {
  const v4 = (list: string[]) => list.filter((c) => parseCidr(c)?.family === 4);
  const hostV4 = host.filter((n) => n.family === 4).flatMap((n) => [n.subnet, n.address]);
  return { allow: unique(v4(policy.allow)), deny: unique([...ALWAYS_DENIED, ...hostV4, ...v4(policy.deny)]) };
}

/** The iptables-restore input that (re)writes `chain` in one transaction: no moment with an empty deny list. */
export function egressChainRestore(chain: string, list: { allow: string[]; deny: string[] }): string {
  return [
    '*filter',
    // Declared with --noflush: created if missing, emptied if not, in the same commit as its new rules.
    `:${chain} - [0:0]`,
    ...list.allow.map((cidr) => `-A ${chain} -d ${cidr} -j RETURN`),
    ...list.deny.map((cidr) => `-A ${chain} -d ${cidr} -j DROP`),
    'COMMIT',
    '',
  ].join('\n');
}

let chainCount = 0;

/**
 * The deny list of one slot pool's egress slots as one iptables chain,
 * rewritten whenever the host's addresses change (HostNetworkWatcher) or
 * the caller asks. One chain per pool (named after the process): several
 * snapfn processes, each with its own SNAPFN_EGRESS_* settings, can share a
 * host; a dead owner's chain is removed by the next pool (reclaimStale).
 */
export class EgressChain {
  readonly name: string;
  readonly #policy: EgressPolicy;
  #watcher: HostNetworkWatcher | undefined;
  #current = '';
  #refreshing: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(policy: EgressPolicy) {
    this.#policy = policy;
    this.name = `${EGRESS_CHAIN_PREFIX}${process.pid}-${++chainCount}`;
  }

  static async create(policy: EgressPolicy, options: { watch?: boolean } = {}): Promise<EgressChain> {
    const chain = new EgressChain(policy);
    await chain.refresh();
    if (options.watch ?? true) chain.#watcher = await HostNetworkWatcher.start(() => void chain.refresh().catch(() => {}));
    // An address that changed while the monitor was starting is not missed.
    await chain.refresh();
    return chain;
  }

  /** Re-reads the host's networks and rewrites the chain if its list changed. Serialized. */
  refresh(): Promise<void> {
    const next = this.#refreshing.then(async () => {
      if (this.#closed) return;
      const list = egressDenyList(this.#policy, await readHostNetworks(VETH_PREFIX));
      const text = egressChainRestore(this.name, list);
      if (text !== this.#current) {
        await restore('iptables', text);
        this.#current = text;
      }
    });
    this.#refreshing = next.catch(() => {});
    return next;
  }

  async grant(hostVeth: string, subnet: string): Promise<void> {
    await fs.writeFile('/proc/sys/net/ipv4/ip_forward', '1').catch(() => {});
    // Inserted at the top, the jump above the ACCEPT: the deny list decides first.
    await restore('iptables', [
      '*filter',
      `-I ${FORWARD_CHAIN} 1 -i ${hostVeth} -j ACCEPT`,
      `-I ${FORWARD_CHAIN} 1 -i ${hostVeth} -j ${this.name}`,
      'COMMIT',
      '*nat',
      `-I POSTROUTING 1 -s ${subnet} ! -o ${hostVeth} -j MASQUERADE`,
      'COMMIT',
      '',
    ].join('\n'));
  }

  /** Stops following the host and removes the chain (the pool has revoked its slots' egress). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#watcher?.close();
    await this.#refreshing;
    await removeEgressChain(this.name);
  }

  /** Chains of pools whose process is gone, with every jump to them. */
  static async reclaimStale(isAlive: (pid: number) => boolean): Promise<void> {
    const r = await execa('iptables', ['-w', '-S'], { reject: false, stdin: 'ignore' });
    for (const line of String(r.stdout).split('\n')) {
      const m = new RegExp(`^-N (${EGRESS_CHAIN_PREFIX}(\\d+)-\\d+)$`).exec(line.trim());
      if (m && !isAlive(Number(m[2]))) await removeEgressChain(m[1]!);
    }
  }
}

/**
 * Takes back a slot's egress: every FORWARD rule of its veth and its NAT
 * rule, read back from the tables (so it also cleans up after a dead owner,
 * whatever chain that one used).
 */
export async function revokeEgress(hostVeth: string, subnet: string): Promise<void> {
  const forward = await rulesMatching('filter', FORWARD_CHAIN, (t) => hasPair(t, '-i', hostVeth));
  const nat = await rulesMatching('nat', 'POSTROUTING', (t) => hasPair(t, '-s', subnet) && hasPair(t, '-o', hostVeth) && t.includes('MASQUERADE'));
  if (forward.length === 0 && nat.length === 0) return;
  const input = [...(forward.length ? ['*filter', ...forward, 'COMMIT'] : []), ...(nat.length ? ['*nat', ...nat, 'COMMIT'] : []), ''].join('\n');
  await restore('iptables', input).catch(async () => {
    // Someone removed one in between: one at a time, ignoring what is gone.
    for (const rule of [...forward.map((r) => ['-t', 'filter', ...r.split(' ')]), ...nat.map((r) => ['-t', 'nat', ...r.split(' ')])]) await tables('iptables', rule);
  });
}

async function removeEgressChain(chain: string): Promise<void> {
  const jumps = await rulesMatching('filter', FORWARD_CHAIN, (t) => hasPair(t, '-j', chain));
  if (jumps.length > 0) await restore('iptables', ['*filter', ...jumps, 'COMMIT', ''].join('\n')).catch(() => {});
  await tables('iptables', ['-F', chain]);
  await tables('iptables', ['-X', chain]);
}

/** `-D` commands for the rules of `chain` that `match` picks (from `iptables -S`). */
async function rulesMatching(table: 'filter' | 'nat', chain: string, match: (tokens: string[]) => boolean): Promise<string[]> {
  const r = await execa('iptables', ['-w', '-t', table, '-S', chain], { reject: false, stdin: 'ignore' });
  if (r.exitCode !== 0) return [];
  return String(r.stdout)
    .split('\n')
    .filter((line) => line.startsWith(`-A ${chain} `))
    .filter((line) => match(line.split(' ')))
    .map((line) => `-D${line.slice(2)}`);
}

function hasPair(tokens: string[], flag: string, value: string): boolean {
  return tokens.some((t, i) => t === flag && tokens[i + 1] === value);
}

function unique(list: string[]): string[] {
  return [...new Set(list)];
}
