// The gVisor driver's host side without the runsc CLI on the hot path (issue
// 6): sandboxes are started by the RunscLauncher (not forked from snapfn),
// keepWarm pauses with the sandbox's own cgroup freezer, and destroy kills
// the Sentry and lets the foreground runsc clean up. Real runsc throughout.
import { singleModuleSource } from '../src/sandbox/template/function-source.ts';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GvisorDriver } from '../src/sandbox/gvisor/gvisor-driver.ts';
import type { Sandbox, Template } from '../src/sandbox/driver.ts';
import { bodyJson, FIXTURES, get, tempHome } from './support/engine.ts';
import { leftovers } from './support/leaks.ts';

const OPTIONS = { timeoutMs: 5000, env: {}, invocationId: 'host-process' };

/** Host pids of the processes whose command line names the container. */
async function processesOf(id: string): Promise<Array<{ pid: number; ppid: number; role: string }>> {
  const found = [];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.includes(id) || !cmdline.includes('runsc')) continue;
    const stat = await fs.readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const role = cmdline.includes('\0boot\0') ? 'sentry' : cmdline.includes('\0gofer\0') ? 'gofer' : 'cli';
    found.push({ pid: Number(entry), ppid, role });
  }
  return found;
}

async function freezerState(pid: number): Promise<string> {
  const line = (await fs.readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n').find((l) => l.split(':')[1]?.split(',').includes('freezer'));
  if (line) return (await fs.readFile(path.join('/sys/fs/cgroup/freezer', line.split(':')[2]!, 'freezer.state'), 'utf8')).trim();
  const v2 = (await fs.readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n').find((l) => l.startsWith('0::'))!;
  const events = await fs.readFile(path.join('/sys/fs/cgroup', v2.slice(3), 'cgroup.events'), 'utf8');
  return /^frozen 1$/m.test(events) ? 'FROZEN' : 'THAWED';
}

describe('gVisor host processes', () => {
  let home: string;
  let driver: GvisorDriver;
  let template: Template;

  before(async () => {
    home = await tempHome('hostproc');
    driver = await GvisorDriver.create({ home, networkSlots: 3 });
    template = await driver.buildTemplate({ functionName: 'hello', ...(await singleModuleSource(path.join(FIXTURES, 'hello.mjs'))), network: 'none' });
  });

  after(async () => {
    await driver?.close();
    const left = await leftovers(home);
    await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, [], 'sandboxes, namespaces, veths or mounts left behind');
  });

  test('runsc is started by the launcher, not forked from this process', async () => {
    const sandbox = await driver.resume(template, { memoryMb: 256, network: 'none' });
    try {
      const cli = (await processesOf(sandbox.id)).find((p) => p.role === 'cli');
      assert.ok(cli, 'a foreground runsc supervises the sandbox');
      assert.notEqual(cli.ppid, process.pid, 'the foreground runsc is not our child');
      const parent = await fs.readFile(`/proc/${cli.ppid}/cmdline`, 'utf8');
      assert.match(parent, /runsc-launcher-child\.mjs/);
      assert.deepEqual(bodyJson(await sandbox.invoke(get('http://localhost/?name=l'), OPTIONS)), { hello: 'l', method: 'GET' });
    } finally {
      await sandbox.destroy();
    }
  });

  test('pause freezes the sandbox cgroup; unpause thaws it and the sandbox answers', async () => {
    const sandbox: Sandbox = await driver.resume(template, { memoryMb: 256, network: 'none' });
    try {
      const sentry = (await processesOf(sandbox.id)).find((p) => p.role === 'sentry')!;
      await sandbox.pause();
      assert.equal(await freezerState(sentry.pid), 'FROZEN');
      // Frozen really means stopped: no CPU time passes while it is.
      const cpu = async () => (await fs.readFile(`/proc/${sentry.pid}/stat`, 'utf8')).split(') ')[1]!.split(' ').slice(11, 13).map(Number).reduce((a, b) => a + b);
      const before = await cpu();
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await cpu(), before);
      await sandbox.unpause();
      assert.equal(await freezerState(sentry.pid), 'THAWED');
      assert.deepEqual(bodyJson(await sandbox.invoke(get('http://localhost/?name=thawed'), OPTIONS)), { hello: 'thawed', method: 'GET' });
    } finally {
      await sandbox.destroy();
    }
  });

  test('destroying a paused sandbox kills every process and runsc removes its state and cgroups', async () => {
    const sandbox = await driver.resume(template, { memoryMb: 256, network: 'none' });
    const procs = await processesOf(sandbox.id);
    assert.deepEqual(procs.map((p) => p.role).sort(), ['cli', 'gofer', 'sentry']);
    const cgroups = (await fs.readFile(`/proc/${procs.find((p) => p.role === 'sentry')!.pid}/cgroup`, 'utf8')).split('\n').filter((l) => l.includes(sandbox.id));
    await sandbox.pause();
    await sandbox.destroy();
    assert.equal(sandbox.dead, true);
    assert.deepEqual(await processesOf(sandbox.id), []);
    const state = await fs.readdir(path.join(home, 'gvisor', 'runsc-state'));
    assert.deepEqual(state.filter((f) => f.includes(sandbox.id)), []);
    for (const line of cgroups) {
      const [, controllers, dir] = line.split(':');
      const root = controllers ? path.join('/sys/fs/cgroup', controllers.split(',')[0]!.replace(/^name=/, '')) : '/sys/fs/cgroup';
      await assert.rejects(fs.access(path.join(root, dir!)), `cgroup ${line} is gone`);
    }
  });

  test('a new driver on the same home reaps the sandboxes a dead one left, frozen ones included', async () => {
    const sandbox = await driver.resume(template, { memoryMb: 256, network: 'none' });
    await sandbox.pause();
    // What a crash leaves: a frozen sandbox nobody owns. A second driver on the
    // same home is what a restarted gateway creates.
    const restarted = await GvisorDriver.create({ home, networkSlots: 0 });
    try {
      assert.deepEqual(await processesOf(sandbox.id), [], 'the orphan was not reaped');
    } finally {
      await restarted.close();
      await sandbox.destroy();
    }
  });

  test('a launcher that dies is replaced; sandboxes it started can still be destroyed', async () => {
    const first = await driver.resume(template, { memoryMb: 256, network: 'none' });
    const cli = (await processesOf(first.id)).find((p) => p.role === 'cli')!;
    process.kill(cli.ppid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    const second = await driver.resume(template, { memoryMb: 256, network: 'none' });
    try {
      assert.deepEqual(bodyJson(await second.invoke(get('http://localhost/?name=second'), OPTIONS)), { hello: 'second', method: 'GET' });
      const secondCli = (await processesOf(second.id)).find((p) => p.role === 'cli')!;
      assert.notEqual(secondCli.ppid, cli.ppid, 'a new launcher started it');
    } finally {
      await second.destroy();
      await first.destroy();
    }
    assert.deepEqual(await processesOf(first.id), []);
  });
});
