import fs from 'node:fs/promises';
import { execa } from 'execa';

/**
 * What a snapfn process owning `home` may have left on the machine: runsc
 * containers in its state dir, sandbox processes, network namespaces and
 * veths of slots it claimed, and mounts under its home.
 */
export async function leftovers(home: string, ownerPid = process.pid): Promise<string[]> {
  const found: string[] = [];
  const list = await execa('runsc', [`--root=${home}/gvisor/runsc-state`, 'list', '--quiet'], { reject: false, stdin: 'pipe' });
  for (const id of String(list.stdout).split('\n').filter(Boolean)) found.push(`runsc container ${id}`);
  const ps = await execa('ps', ['-eo', 'pid=,args='], { reject: false });
  for (const line of String(ps.stdout).split('\n')) {
    if (line.includes('runsc-sandbox') && line.includes(home)) found.push(`process ${line.trim().slice(0, 120)}`);
  }
  const owners = await fs.readdir('/run/snapfn/slots').catch(() => [] as string[]);
  const mine = new Set<string>();
  for (const index of owners) {
    const pid = await fs.readFile(`/run/snapfn/slots/${index}`, 'utf8').catch(() => '');
    if (Number(pid) === ownerPid) mine.add(index);
  }
  const netns = await execa('ip', ['netns', 'list'], { reject: false });
  for (const line of String(netns.stdout).split('\n')) {
    const name = line.trim().split(/\s+/)[0] ?? '';
    const m = /^snapfn-(\d+)$/.exec(name);
    if (m && mine.has(m[1]!)) found.push(`netns ${name}`);
  }
  for (const index of mine) {
    const link = await execa('ip', ['link', 'show', `sf${index}`], { reject: false });
    if (link.exitCode === 0) found.push(`veth sf${index}`);
  }
  const mounts = await fs.readFile('/proc/self/mountinfo', 'utf8');
  for (const line of mounts.split('\n')) if (line.includes(home)) found.push(`mount ${line.slice(0, 120)}`);
  return found;
}

/** The network slots (netns names) a snapfn process claimed, from their owner files. */
export async function ownedSlotNamespaces(ownerPid = process.pid): Promise<string[]> {
  const owned: string[] = [];
  for (const index of await fs.readdir('/run/snapfn/slots').catch(() => [] as string[])) {
    const pid = await fs.readFile(`/run/snapfn/slots/${index}`, 'utf8').catch(() => '');
    if (Number(pid) === ownerPid) owned.push(`snapfn-${index}`);
  }
  return owned;
}

/**
 * Tap devices in the slots a process owns, and whether a VM still holds
 * each one open (a tap without an attached process reports NO-CARRIER).
 * A destroyed microVM must leave its slot's tap detached; a closed driver
 * must leave none at all (they go with the namespaces).
 */
export async function slotTaps(ownerPid = process.pid): Promise<{ netns: string; tap: string; attached: boolean }[]> {
  const taps: { netns: string; tap: string; attached: boolean }[] = [];
  for (const netns of await ownedSlotNamespaces(ownerPid)) {
    const r = await execa('ip', ['-n', netns, '-o', 'link', 'show', 'type', 'tun'], { reject: false });
    for (const line of String(r.stdout).split('\n').filter(Boolean)) {
      const name = /^\d+:\s+([^:@]+)/.exec(line)?.[1] ?? '?';
      // LOWER_UP is the carrier, which a tap has only while a process holds
      // it open; a tap that is down (being set up or reset) has neither flag.
      taps.push({ netns, tap: name, attached: /[<,]LOWER_UP[,>]/.test(line) });
    }
  }
  return taps;
}
