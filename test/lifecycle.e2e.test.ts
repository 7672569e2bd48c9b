// The shared driver lifecycle (src/sandbox/lifecycle/): a start that fails
// half-way releases exactly what it had acquired, in reverse order, with real
// runsc, a real network slot and a real cgroup; and the stack's own rules.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CleanupStack, withCleanup } from '../src/sandbox/lifecycle/cleanup-stack.ts';
import { GvisorDriver } from '../src/sandbox/gvisor/gvisor-driver.ts';
import { singleModuleSource } from '../src/sandbox/template/function-source.ts';
import { FIXTURES, tempHome } from './support/engine.ts';
import { leftovers } from './support/leaks.ts';

describe('cleanup stack', () => {
  test('unwinds last-registered first, once, and runs every release even when one fails', async () => {
    const order: string[] = [];
    const stack = new CleanupStack();
    stack.defer('a', () => order.push('a'));
    stack.defer('b', () => {
      throw new Error('b failed');
    });
    stack.defer('c', async () => order.push('c'));
    await Promise.all([stack.unwind(), stack.unwind()]);
    assert.deepEqual(order, ['c', 'a']);
    assert.throws(() => stack.defer('late', () => {}), /already unwound/);
  });

  test('withCleanup unwinds on failure only', async () => {
    const released: string[] = [];
    await assert.rejects(
      withCleanup(async (cleanup) => {
        cleanup.defer('slot', () => released.push('slot'));
        cleanup.defer('process', () => released.push('process'));
        throw new Error('boot failed');
      }),
      /boot failed/,
    );
    assert.deepEqual(released, ['process', 'slot']);
    const kept = await withCleanup(async (cleanup) => {
      cleanup.defer('slot', () => released.push('kept slot'));
      return cleanup;
    });
    assert.deepEqual(released, ['process', 'slot'], 'a successful start keeps what it acquired');
    await kept.unwind();
    assert.deepEqual(released.at(-1), 'kept slot');
  });
});

/** Our sandboxes' memory cgroups (sandbox-cgroup.ts puts them under /snapfn, cgroup v2 or v1's memory hierarchy). */
async function sandboxCgroups(): Promise<string[]> {
  const found: string[] = [];
  for (const root of ['/sys/fs/cgroup/snapfn', '/sys/fs/cgroup/memory/snapfn']) {
    for (const name of await fs.readdir(root).catch(() => [] as string[])) if (name.startsWith('sfn-')) found.push(`${root}/${name}`);
  }
  return found;
}

describe('gVisor: a restore that fails releases its slot, cgroup, state and container', { timeout: 3 * 60_000 }, () => {
  let home: string;
  let driver: GvisorDriver;

  before(async () => {
    home = await tempHome('lifecycle');
    driver = await GvisorDriver.create({ home, networkSlots: 1 });
  });

  after(async () => {
    await driver?.close();
    const left = await leftovers(home);
    await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, []);
  });

  test('a corrupt checkpoint image fails the restore, and then nothing it acquired is held', async () => {
    const template = await driver.buildTemplate({ functionName: 'probe', ...(await singleModuleSource(path.join(FIXTURES, 'probe.mjs'))), network: 'egress' });
    // A good restore first: it holds the one slot, then gives it back.
    const good = await driver.resume(template, { memoryMb: 128, network: 'egress' });
    assert.equal(driver.networkStats().inUse, 1);
    assert.ok((await sandboxCgroups()).some((c) => c.endsWith(good.id)), 'control: a live sandbox has its own cgroup here');
    await good.destroy();
    // Truncate every file of the image: runsc restore fails after the slot, the cgroup and the state dir exist.
    const broken = path.join(home, 'broken');
    await fs.cp(template.dir, broken, { recursive: true });
    for (const file of await fs.readdir(path.join(broken, 'image'))) await fs.truncate(path.join(broken, 'image', file), 16);
    const cgroupsBefore = await sandboxCgroups();
    await assert.rejects(driver.resume({ ...template, dir: broken }, { memoryMb: 128, network: 'egress' }));
    assert.equal(driver.liveSandboxes(), 0);
    assert.deepEqual(driver.networkStats(), { ...driver.networkStats(), inUse: 0, created: 1 }, 'the slot went back to the pool');
    assert.deepEqual(await fs.readdir(path.join(home, 'gvisor', 'sandboxes')), [], 'state directories left');
    assert.deepEqual((await sandboxCgroups()).filter((c) => !cgroupsBefore.includes(c)), [], 'the failed sandbox kept its cgroup');
    // The pool's own slot (netns, veth) stays until close; containers, processes and mounts must not.
    assert.deepEqual((await leftovers(home)).filter((l) => !/^(netns|veth) /.test(l)), [], 'runsc containers, processes or mounts left');
    // The slot is usable again: the next restore gets it.
    const next = await driver.resume(template, { memoryMb: 128, network: 'egress' });
    assert.equal(driver.networkStats().created, 1);
    await next.destroy();
  });
});
