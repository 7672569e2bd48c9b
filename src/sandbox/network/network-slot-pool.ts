import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { loadEgressPolicy, type EgressPolicy } from '../../config.ts';
import { addMicrovmTap, MICROVM_TAP } from './guest-tap.ts';
import { ipBatch, listNetns } from './ip.ts';
import { disableIpv6, EgressChain, installIsolationRules, revokeEgress, VETH_PREFIX } from './isolation.ts';

/**
 * One pre-created network namespace with a veth pair to the host.
 *
 * Each slot has its own /30 (host .1, sandbox .2). The design's "same inner
 * address in every slot" exists because a microVM's guest kernel keeps its
 * IP inside the memory snapshot; gVisor instead rebuilds its netstack from
 * the namespace it is restored into (verified: a template checkpointed in one
 * slot comes back with the new slot's address), so distinct subnets cost
 * nothing and avoid a NAT hop per slot.
 */
export interface NetworkSlot {
  readonly index: number;
  readonly netns: string;
  /** What goes into the OCI spec's network namespace path. */
  readonly nsPath: string;
  readonly hostVeth: string;
  readonly hostIp: string;
  readonly guestIp: string;
  readonly subnet: string;
  /** The microVM tap inside the namespace (pools created with `tap: true`; guest-tap.ts). */
  readonly tap?: string;
  egress: boolean;
}

const NETNS_PREFIX = 'snapfn-';
const MAX_SLOTS = 4096;
const OWNER_DIR = '/run/snapfn/slots';

function slotAddresses(index: number): { hostIp: string; guestIp: string; subnet: string } {
  const third = index >> 6;
  const base = (index & 63) * 4;
  return {
    subnet: `10.201.${third}.${base}/30`,
    hostIp: `10.201.${third}.${base + 1}`,
    guestIp: `10.201.${third}.${base + 2}`,
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface NetworkSlotPoolStats {
  free: number;
  inUse: number;
  created: number;
  misses: number;
}

/**
 * Namespaces, veths and addresses are created ahead of time because doing it
 * on the request path costs tens of milliseconds. Slots are claimed
 * machine-wide by the atomic `ip netns add`, so several snapfn processes (or
 * test runs) on one host never collide; slots of dead owners are reclaimed.
 */
export class NetworkSlotPool {
  #free: NetworkSlot[] = [];
  #all = new Map<number, NetworkSlot>();
  #nextIndex = 0;
  #misses = 0;
  #closed = false;
  readonly #tap: boolean;
  readonly #egress: EgressChain;

  private constructor(tap: boolean, egress: EgressChain) {
    this.#tap = tap;
    this.#egress = egress;
  }

  /**
   * `tap`: every slot also gets the microVM tap and its NAT (guest-tap.ts),
   * created with the slot so a restore never waits for it, and gone with the
   * namespace. gVisor pools leave it off and are unchanged.
   * `egress`: SNAPFN_EGRESS_DENY / SNAPFN_EGRESS_ALLOW by default.
   */
  static async create(options: { size: number; tap?: boolean; egress?: EgressPolicy }): Promise<NetworkSlotPool> {
    await installIsolationRules();
    await fs.mkdir(OWNER_DIR, { recursive: true });
    await reclaimStaleSlots();
    await EgressChain.reclaimStale(isAlive);
    const egress = await EgressChain.create(options.egress ?? loadEgressPolicy());
    const pool = new NetworkSlotPool(options.tap ?? false, egress);
    for (let i = 0; i < options.size; i++) pool.#free.push(await pool.#createSlot());
    return pool;
  }

  stats(): NetworkSlotPoolStats {
    return { free: this.#free.length, inUse: this.#all.size - this.#free.length, created: this.#all.size, misses: this.#misses };
  }

  async acquire(options: { egress: boolean }): Promise<NetworkSlot> {
    if (this.#closed) throw new Error('network slot pool is closed');
    let slot = this.#free.pop();
    if (!slot) {
      this.#misses++;
      slot = await this.#createSlot();
    }
    if (options.egress) {
      await this.#egress.grant(slot.hostVeth, slot.subnet);
      slot.egress = true;
    }
    return slot;
  }

  /** Resets the slot (runsc strips the sandbox-side address) and returns it to the pool. */
  async release(slot: NetworkSlot): Promise<void> {
    if (slot.egress) {
      await revokeEgress(slot.hostVeth, slot.subnet);
      slot.egress = false;
    }
    if (this.#closed) return this.#destroySlot(slot);
    try {
      await ipBatch([`addr replace ${slot.guestIp}/30 dev eth0`, 'link set eth0 up', `route replace default via ${slot.hostIp}`], slot.netns);
      this.#free.push(slot);
    } catch {
      // A slot that cannot be reset is not reused.
      await this.#destroySlot(slot);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const free = this.#free;
    this.#free = [];
    for (const slot of free) await this.#destroySlot(slot);
    await this.#egress.close();
  }

  async #createSlot(): Promise<NetworkSlot> {
    for (; this.#nextIndex < MAX_SLOTS; this.#nextIndex++) {
      const index = this.#nextIndex;
      const netns = `${NETNS_PREFIX}${index}`;
      const claimed = await execa('ip', ['netns', 'add', netns], { reject: false });
      if (claimed.exitCode !== 0) continue;
      this.#nextIndex++;
      await fs.writeFile(path.join(OWNER_DIR, String(index)), String(process.pid));
      const { hostIp, guestIp, subnet } = slotAddresses(index);
      const hostVeth = `${VETH_PREFIX}${index}`;
      try {
        // addrgenmode none: the host side never gets an IPv6 link-local address for a sandbox to dial.
        await ipBatch([`link add ${hostVeth} type veth peer name eth0 netns ${netns}`, `link set ${hostVeth} addrgenmode none`, `addr add ${hostIp}/30 dev ${hostVeth}`, `link set ${hostVeth} up`]);
        await disableIpv6(hostVeth);
        await ipBatch(['link set lo up', `addr add ${guestIp}/30 dev eth0`, 'link set eth0 up', `route add default via ${hostIp}`], netns);
        if (this.#tap) await addMicrovmTap(netns, guestIp);
      } catch (err) {
        await execa('ip', ['netns', 'del', netns], { reject: false });
        await execa('ip', ['link', 'del', hostVeth], { reject: false });
        await fs.rm(path.join(OWNER_DIR, String(index)), { force: true });
        throw err;
      }
      const slot: NetworkSlot = { index, netns, nsPath: `/var/run/netns/${netns}`, hostVeth, hostIp, guestIp, subnet, egress: false, ...(this.#tap ? { tap: MICROVM_TAP } : {}) };
      this.#all.set(index, slot);
      return slot;
    }
    throw new Error(`no free network slot index below ${MAX_SLOTS}`);
  }

  async #destroySlot(slot: NetworkSlot): Promise<void> {
    this.#all.delete(slot.index);
    await deleteSlot(slot.index);
  }
}

async function deleteSlot(index: number): Promise<void> {
  // Deleting the namespace destroys eth0 and with it the host-side peer.
  await execa('ip', ['netns', 'del', `${NETNS_PREFIX}${index}`], { reject: false });
  await execa('ip', ['link', 'del', `${VETH_PREFIX}${index}`], { reject: false });
  await fs.rm(path.join(OWNER_DIR, String(index)), { force: true });
}

async function reclaimStaleSlots(): Promise<void> {
  for (const name of await listNetns()) {
    if (!name.startsWith(NETNS_PREFIX)) continue;
    const index = Number(name.slice(NETNS_PREFIX.length));
    if (!Number.isInteger(index)) continue;
    const owner = Number(await fs.readFile(path.join(OWNER_DIR, String(index)), 'utf8').catch(() => '0'));
    if (owner > 0 && isAlive(owner)) continue;
    // No owner file yet may mean another process is between its claim and
    // writing the file: leave young namespaces alone.
    if (owner === 0) {
      const age = await fs.stat(`/var/run/netns/${name}`).then((st) => Date.now() - st.mtimeMs, () => Infinity);
      if (age < 30_000) continue;
    }
    // A dead owner never revoked the egress it granted: left in place, the
    // ACCEPT would hand egress to the next function that gets this index.
    await revokeEgress(`${VETH_PREFIX}${index}`, slotAddresses(index).subnet);
    await deleteSlot(index);
  }
}
