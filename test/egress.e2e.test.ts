// `network: 'egress'` never reaches the host or its network neighbours
// (issue 20, item 4), proven with real runsc sandboxes, real network slots
// and test hosts in network namespaces on documentation ranges:
//
//   sandbox ─ slot veth ─ host ─┬─ egu (198.51.100.1/30) ── router netns (198.51.100.2)
//                               │                             └ t1 203.0.113.10, t4 203.0.113.99 ("the internet")
//                               └─ egl (198.51.100.129/25) ── lan netns: 198.51.100.130, .131 (the host's own subnet)
//
// A sandbox reaches t1 through the uplink; not the router (on a host
// subnet), not the LAN hosts, not any host address (IPv4 or IPv6); a
// subnet the host gains while running is dropped within moments, and
// SNAPFN_EGRESS_DENY / SNAPFN_EGRESS_ALLOW add to and open the list.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { createEngine } from '../src/orchestrator/index.ts';
import type { Deployment } from '../src/orchestrator/types.ts';
import { bodyJson, deployFixture, get, tempHome, type TestEngine } from './support/engine.ts';
import { leftovers, ownedSlotNamespaces } from './support/leaks.ts';

const tag = (process.pid % 46656).toString(36);
// Never `sf*`: that prefix is the slots' own, which the isolation rules match.
const UPLINK = `egu${tag}`;
const LAN = `egl${tag}`;
const ROUTER_NS = `egress-test-router-${tag}`;
const LAN_NS = `egress-test-lan-${tag}`;
const PORT = 18_080;

const T1 = '203.0.113.10';
const T4 = '203.0.113.99';
const ROUTER = '198.51.100.2';
const HOST_UPLINK = '198.51.100.1';
const HOST_LAN = '198.51.100.129';
const LAN_HOST = '198.51.100.130';
const LAN_ALLOWED = '198.51.100.131';
const HOST_LAN_V6 = '2001:db8:100::1';

async function sh(cmd: string, args: string[]): Promise<void> {
  const r = await execa(cmd, args, { reject: false, all: true, stdin: 'ignore' });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.all}`);
}

/** A TCP server in `netns` answering every connection with its own name and the address it was dialled on. */
function serveIn(netns: string): ChildProcess {
  const script = `require('net').createServer((s) => s.end('${netns}@' + s.localAddress)).listen(${PORT}, '0.0.0.0')`;
  return spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script], { stdio: 'ignore' });
}

describe('egress: the internet yes, the host and its networks no', { timeout: 6 * 60_000 }, () => {
  let home: string;
  let engine: TestEngine;
  let probe: Deployment;
  const servers: ChildProcess[] = [];
  let hostServer: net.Server;
  let hostPort: number;
  const saved = { deny: process.env.SNAPFN_EGRESS_DENY, allow: process.env.SNAPFN_EGRESS_ALLOW };

  before(async () => {
    await sh('ip', ['netns', 'add', ROUTER_NS]);
    await sh('ip', ['netns', 'add', LAN_NS]);
    await sh('ip', ['link', 'add', UPLINK, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ROUTER_NS]);
    await sh('ip', ['link', 'add', LAN, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', LAN_NS]);
    await sh('ip', ['addr', 'add', `${HOST_UPLINK}/30`, 'dev', UPLINK]);
    await sh('ip', ['link', 'set', UPLINK, 'up']);
    await sh('ip', ['addr', 'add', `${HOST_LAN}/25`, 'dev', LAN]);
    await sh('ip', ['addr', 'add', `${HOST_LAN_V6}/64`, 'dev', LAN, 'nodad']);
    await sh('ip', ['link', 'set', LAN, 'up']);
    // "The internet": behind the router, on no subnet of the host.
    await sh('ip', ['route', 'add', '203.0.113.0/24', 'via', ROUTER, 'dev', UPLINK]);
    for (const [ns, cmds] of [
      [ROUTER_NS, ['link set lo up', `addr add ${ROUTER}/30 dev eth0`, 'link set eth0 up', `addr add ${T1}/32 dev lo`, `addr add ${T4}/32 dev lo`, `route add default via ${HOST_UPLINK}`]],
      [LAN_NS, ['link set lo up', `addr add ${LAN_HOST}/25 dev eth0`, `addr add ${LAN_ALLOWED}/25 dev eth0`, 'link set eth0 up', `route add default via ${HOST_LAN}`]],
    ] as const) {
      await execa('ip', ['-n', ns, '-batch', '-'], { input: cmds.join('\n') + '\n' });
    }
    servers.push(serveIn(ROUTER_NS), serveIn(LAN_NS));
    // Stands in for the gateway and Redis: a host service on every address, both families.
    hostServer = net.createServer((s) => {
      s.on('error', () => {});
      s.end(`host@${s.localAddress}`);
    });
    await new Promise<void>((resolve) => hostServer.listen(0, '::', resolve));
    hostPort = (hostServer.address() as net.AddressInfo).port;
    // The control: from the host itself every test host answers.
    for (const target of [T1, ROUTER, LAN_HOST]) await until(async () => (await dialFromHost(target, PORT)).includes('@'), 15_000, `the test host ${target} to answer`);

    process.env.SNAPFN_EGRESS_DENY = `${T4}/32`;
    process.env.SNAPFN_EGRESS_ALLOW = `${LAN_ALLOWED}`;
    home = await tempHome('egress');
    engine = await createEngine({ home, maxSandboxes: 2, poolSize: 0 });
    probe = await deployFixture(engine, 'egress-probe', 'egress-probe.mjs', { network: 'egress', timeoutMs: 20_000 });
  });

  after(async () => {
    await engine?.close();
    process.env.SNAPFN_EGRESS_DENY = saved.deny;
    process.env.SNAPFN_EGRESS_ALLOW = saved.allow;
    if (saved.deny === undefined) delete process.env.SNAPFN_EGRESS_DENY;
    if (saved.allow === undefined) delete process.env.SNAPFN_EGRESS_ALLOW;
    hostServer?.close();
    for (const s of servers) s.kill('SIGKILL');
    await execa('ip', ['netns', 'del', ROUTER_NS], { reject: false });
    await execa('ip', ['netns', 'del', LAN_NS], { reject: false });
    await execa('ip', ['link', 'del', UPLINK], { reject: false });
    await execa('ip', ['link', 'del', LAN], { reject: false });
    const left = await leftovers(home);
    const chains = (await execa('iptables', ['-S'], { reject: false })).stdout.split('\n').filter((l) => l.includes(`SNAPFN-EG-${process.pid}-`));
    await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, [], 'sandboxes, namespaces, veths or mounts left behind');
    assert.deepEqual(chains, [], 'egress chains left behind');
  });

  const dialAll = async (targets: string[]): Promise<Record<string, string>> => {
    const { outcome } = await engine.invoke(probe, get(`http://localhost/fn/egress-probe?t=${encodeURIComponent(targets.join(','))}`), { invocationId: `egress-${Date.now()}` });
    return bodyJson(outcome).results;
  };

  test('the uplink test host answers; the router, LAN neighbours and every host address do not', async () => {
    const hostV6 = Object.values(os.networkInterfaces())
      .flat()
      .filter((a) => a && a.family === 'IPv6' && !a.internal && !a.address.startsWith('fe80'))
      .map((a) => `[${a!.address}]:${hostPort}`);
    const hostV4 = Object.values(os.networkInterfaces())
      .flat()
      .filter((a) => a && a.family === 'IPv4' && !a.internal)
      .map((a) => `${a!.address}:${hostPort}`);
    const targets = [`${T1}:${PORT}`, `${ROUTER}:${PORT}`, `${LAN_HOST}:${PORT}`, `${HOST_UPLINK}:${hostPort}`, `${HOST_LAN}:${hostPort}`, ...hostV4, ...hostV6, `[${HOST_LAN_V6}]:${hostPort}`];
    const results = await dialAll(targets);
    assert.equal(results[`${T1}:${PORT}`], `connected:${ROUTER_NS}@${T1}`, 'the test host behind the uplink');
    for (const t of targets.slice(1)) assert.ok(!results[t]!.startsWith('connected'), `${t} was reachable: ${results[t]}`);
  });

  test('SNAPFN_EGRESS_DENY drops more; SNAPFN_EGRESS_ALLOW opens one LAN host and only that one', async () => {
    const results = await dialAll([`${T4}:${PORT}`, `${T1}:${PORT}`, `${LAN_ALLOWED}:${PORT}`, `${LAN_HOST}:${PORT}`]);
    assert.ok(!results[`${T4}:${PORT}`]!.startsWith('connected'), `denied ${T4} was reachable`);
    assert.equal(results[`${T1}:${PORT}`], `connected:${ROUTER_NS}@${T1}`);
    assert.equal(results[`${LAN_ALLOWED}:${PORT}`], `connected:${LAN_NS}@${LAN_ALLOWED}`);
    assert.ok(!results[`${LAN_HOST}:${PORT}`]!.startsWith('connected'));
  });

  test("a subnet the host gains while running is dropped at once, and reachable again once it is gone", async () => {
    // This process's egress chains (one per slot pool), as the kernel has them.
    const has = async () => (await execa('iptables', ['-w', '-S'])).stdout.split('\n').some((l) => l.startsWith(`-A SNAPFN-EG-${process.pid}-`) && l.includes('-d 203.0.113.0/24 -j DROP'));
    assert.equal(await has(), false);
    // The host now sits on the test host's subnet itself (a second address on the uplink).
    await sh('ip', ['addr', 'add', '203.0.113.1/24', 'dev', UPLINK]);
    try {
      await until(has, 5000, 'the egress chain to list 203.0.113.0/24');
      const results = await dialAll([`${T1}:${PORT}`]);
      assert.ok(!results[`${T1}:${PORT}`]!.startsWith('connected'), `a host-subnet neighbour was reachable: ${results[`${T1}:${PORT}`]}`);
    } finally {
      await sh('ip', ['addr', 'del', '203.0.113.1/24', 'dev', UPLINK]);
    }
    await until(async () => !(await has()), 5000, 'the egress chain to drop 203.0.113.0/24 again');
    assert.equal((await dialAll([`${T1}:${PORT}`]))[`${T1}:${PORT}`], `connected:${ROUTER_NS}@${T1}`);
  });

  test('a sandbox has no IPv6 address but loopback, and the slot veth none on the host', async () => {
    const { outcome } = await engine.invoke(probe, get('http://localhost/fn/egress-probe'), { invocationId: 'egress-addresses' });
    const addresses: string[] = bodyJson(outcome).addresses;
    assert.deepEqual(addresses.filter((a) => a.includes('IPv6') && !a.startsWith('lo ')), [], addresses.join('; '));
    const ours = new Set((await ownedSlotNamespaces()).map((ns) => `sf${ns.slice('snapfn-'.length)}`));
    assert.ok(ours.size > 0);
    const slots = (await execa('ip', ['-o', '-6', 'addr', 'show'])).stdout.split('\n').filter((l) => ours.has(/^\d+: (sf\d+) /.exec(l)?.[1] ?? ''));
    assert.deepEqual(slots, [], 'an IPv6 address on a slot veth');
  });
});

async function dialFromHost(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let said = '';
    socket.on('data', (d) => (said += d));
    socket.once('end', () => resolve(said));
    socket.once('error', (err) => resolve(String((err as NodeJS.ErrnoException).code)));
    setTimeout(() => {
      socket.destroy();
      resolve('timeout');
    }, 3000);
  });
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
