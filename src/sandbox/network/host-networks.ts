import { spawn, type ChildProcess } from 'node:child_process';
import { execa } from 'execa';
import { networkAddress } from './cidr.ts';

/** One network the host sits on: an address of its own and the subnet it is in. */
export interface HostNetwork {
  family: 4 | 6;
  /** `192.0.2.0/24`: the subnet, every neighbour on that link. */
  subnet: string;
  /** `192.0.2.2/32`: the host's own address (covered by the subnet too; kept for a /32 or /128 of a point-to-point link). */
  address: string;
}

interface IpAddrJson {
  ifname?: string;
  addr_info?: Array<{ family?: string; local?: string; address?: string; prefixlen?: number }>;
}

/**
 * The networks of the host's own interfaces, except loopback (always
 * dropped anyway) and interfaces named `skipPrefix` (the sandbox slots' own
 * veths: their /30s are private, and listing them would churn on every slot
 * made).
 */
export async function readHostNetworks(skipPrefix: string): Promise<HostNetwork[]> {
  const { stdout } = await execa('ip', ['-j', 'address', 'show'], { stdin: 'ignore' });
  const links = JSON.parse(stdout || '[]') as IpAddrJson[];
  const out = new Map<string, HostNetwork>();
  for (const link of links) {
    if (!link.ifname || link.ifname === 'lo' || link.ifname.startsWith(skipPrefix)) continue;
    for (const info of link.addr_info ?? []) {
      const family = info.family === 'inet' ? 4 : info.family === 'inet6' ? 6 : undefined;
      if (!family || !info.local || info.prefixlen === undefined) continue;
      const bits = family === 4 ? 32 : 128;
      // A point-to-point link's subnet is around its peer (`address`), not the local end.
      const base = info.address ?? info.local;
      const net: HostNetwork = {
        family,
        subnet: `${networkAddress(base, family, info.prefixlen)}/${info.prefixlen}`,
        address: `${networkAddress(info.local, family, bits)}/${bits}`,
      };
      out.set(`${net.subnet} ${net.address}`, net);
    }
  }
  return [...out.values()].sort((a, b) => (a.subnet + a.address < b.subnet + b.address ? -1 : 1));
}

/**
 * Follows the host's addresses as they change: `ip monitor address` prints
 * a line on every netlink address event, and each burst of them triggers one
 * re-read. Why netlink rather than re-reading on each slot acquire or on a
 * timer: an acquire sits on a restore's path (an `ip` exec is ~5 ms there),
 * and a timer leaves a window after every change in which a newly added
 * subnet is reachable; the monitor costs nothing while nothing changes and
 * reacts within milliseconds.
 *
 * The monitor runs under `setpriv --pdeathsig KILL` where available so that
 * it dies with snapfn even on a SIGKILL; should it exit anyway, it is
 * restarted and the addresses re-read (a change in between is not missed).
 */
export class HostNetworkWatcher {
  readonly #onChange: () => void;
  #child: ChildProcess | undefined;
  #closed = false;
  #debounce: NodeJS.Timeout | undefined;
  #restart: NodeJS.Timeout | undefined;

  private constructor(onChange: () => void) {
    this.#onChange = onChange;
  }

  static async start(onChange: () => void): Promise<HostNetworkWatcher> {
    const watcher = new HostNetworkWatcher(onChange);
    await watcher.#spawn();
    return watcher;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#debounce);
    clearTimeout(this.#restart);
    this.#child?.kill('SIGKILL');
    this.#child = undefined;
  }

  async #spawn(): Promise<void> {
    const withDeathSignal = await hasSetpriv();
    const [cmd, args] = withDeathSignal ? ['setpriv', ['--pdeathsig', 'KILL', 'ip', '-o', 'monitor', 'address']] : ['ip', ['-o', 'monitor', 'address']];
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    this.#child = child;
    child.stdout!.on('data', () => this.#changed());
    child.on('error', () => {});
    child.on('exit', () => {
      if (this.#closed || this.#child !== child) return;
      this.#child = undefined;
      this.#restart = setTimeout(() => {
        void this.#spawn().then(() => this.#changed());
      }, 1000);
      this.#restart.unref();
    });
    // Not holding the gateway's event loop open: close() ends it.
    child.unref();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    await new Promise<void>((resolve) => {
      child.once('spawn', () => resolve());
      child.once('error', () => resolve());
    });
  }

  #changed(): void {
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => this.#onChange(), 25);
    this.#debounce.unref();
  }
}

let setprivCheck: Promise<boolean> | undefined;

function hasSetpriv(): Promise<boolean> {
  setprivCheck ??= execa('setpriv', ['--pdeathsig', 'KILL', 'true'], { reject: false, stdin: 'ignore' }).then(
    (r) => r.exitCode === 0,
    () => false,
  );
  return setprivCheck;
}
