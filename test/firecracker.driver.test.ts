// The Firecracker driver's host-side pieces that run without KVM (host
// detection rules, the tap network inside a namespace, drive files), and its
// end-to-end tests, which run only where a firecracker binary, hardware KVM
// and a guest image exist and otherwise skip saying why.
import { singleModuleSource } from '../src/sandbox/template/function-source.ts';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { copyOnWriteDrive } from '../src/sandbox/firecracker/drive-files.ts';
import { writeSourceImage } from '../src/sandbox/template/function-source.ts';
import { GUEST_IP, TAP_DEVICE, TAP_HOST_IP } from '../src/sandbox/firecracker/guest-layout.ts';
import { detectFirecracker, type HostProbe } from '../src/sandbox/firecracker/host-support.ts';
import { firecrackerDriverIfSupported } from '../src/sandbox/firecracker/select-driver.ts';
import { ensureTap } from '../src/sandbox/firecracker/tap-network.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

function probe(files: Record<string, string>, executables: string[] = []): HostProbe {
  return {
    exists: (f) => f in files,
    readFile: (f) => {
      if (!(f in files)) throw new Error('ENOENT');
      return files[f]!;
    },
    isExecutable: (f) => executables.includes(f),
  };
}

describe('firecracker host detection', () => {
  const env = { PATH: '/usr/local/bin:/usr/bin' };
  const fc = '/usr/local/bin/firecracker';
  const vmx = { '/proc/cpuinfo': 'processor : 0\nflags : fpu vme de pse vmx ept\n' };

  test('needs a binary, /dev/kvm, no PVM and vmx/svm', () => {
    assert.match(detectFirecracker(env, probe({})).reason, /no firecracker binary/);
    assert.match(detectFirecracker(env, probe(vmx, [fc])).reason, /no \/dev\/kvm/);
    assert.match(detectFirecracker(env, probe({ ...vmx, '/dev/kvm': '', '/sys/module/kvm_pvm': '' }, [fc])).reason, /PVM/);
    assert.match(detectFirecracker(env, probe({ '/proc/cpuinfo': 'flags : fpu hypervisor\n', '/dev/kvm': '' }, [fc])).reason, /vmx\/svm/);
    assert.deepEqual(detectFirecracker(env, probe({ ...vmx, '/dev/kvm': '' }, [fc])), { ok: true, binary: fc, reason: `${fc} with hardware KVM` });
  });

  test('SNAPFN_FIRECRACKER_BIN wins over PATH, and must be executable', () => {
    const files = { ...vmx, '/dev/kvm': '' };
    assert.equal(detectFirecracker({ ...env, SNAPFN_FIRECRACKER_BIN: '/opt/fc' }, probe(files, [fc, '/opt/fc'])).ok, true);
    assert.match(detectFirecracker({ ...env, SNAPFN_FIRECRACKER_BIN: '/opt/fc' }, probe(files, [fc])).reason, /no firecracker binary/);
  });

  test('on this machine', () => {
    const support = detectFirecracker();
    console.log(`# firecracker on this host: ${support.ok ? 'yes' : 'no'}: ${support.reason}`);
  });
});

const notRoot = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : false;

describe('firecracker tap network in a throwaway namespace', { skip: notRoot }, () => {
  const netns = `snapfn-fctest-${process.pid}`;
  before(async () => {
    await execa('ip', ['netns', 'add', netns]);
    // A veth like the slot pool's (eth0 inside); deleting the netns deletes both ends.
    await execa('ip', ['link', 'add', `fct${process.pid}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    await execa('ip', ['-n', netns, 'addr', 'add', '10.201.63.250/30', 'dev', 'eth0']);
  });
  after(async () => {
    await execa('ip', ['netns', 'del', netns], { reject: false });
    await execa('ip', ['link', 'del', `fct${process.pid}`], { reject: false });
  });

  test('creates the tap with the fixed /30 and the SNAT for guest traffic, idempotently', { timeout: 20_000 }, async () => {
    await ensureTap({ netns, slotIp: '10.201.63.250' });
    await ensureTap({ netns, slotIp: '10.201.63.250' });
    const addr = await execa('ip', ['-n', netns, '-o', 'addr', 'show', 'dev', TAP_DEVICE]);
    assert.match(addr.stdout, new RegExp(`inet ${TAP_HOST_IP.replace(/\./g, '\\.')}/30`));
    const nat = await execa('ip', ['netns', 'exec', netns, 'iptables', '-w', '-t', 'nat', '-S', 'POSTROUTING']);
    const rules = nat.stdout.split('\n').filter((l) => l.includes('SNAT'));
    assert.equal(rules.length, 1, nat.stdout);
    assert.match(rules[0]!, new RegExp(`-s ${GUEST_IP}/32 -o eth0 -j SNAT --to-source 10.201.63.250`));
    const forward = await execa('ip', ['netns', 'exec', netns, 'sysctl', '-n', 'net.ipv4.ip_forward']);
    assert.equal(forward.stdout.trim(), '1');
  });
});

describe('firecracker drive files', () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-fcdrive-'));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test("a sandbox's root drive copy is its own: writes never reach the template's", async () => {
    const template = path.join(dir, 'template.ext4');
    await fs.writeFile(template, Buffer.alloc(1 << 20, 7));
    const mine = path.join(dir, 'sandbox.ext4');
    await copyOnWriteDrive(template, mine);
    const handle = await fs.open(mine, 'r+');
    await handle.write(Buffer.from('written by the sandbox'), 0, undefined, 4096);
    await handle.close();
    assert.equal((await fs.readFile(template)).subarray(4096, 4100).toString('hex'), '07070707');
    assert.equal((await fs.readFile(mine)).subarray(4096, 4103).toString(), 'written');
  });

  test('the function drive is an ext4 image of the function directory', { timeout: 20_000 }, async () => {
    const image = path.join(dir, 'bundle.ext4');
    const { sourceDir } = await singleModuleSource(path.join(FIXTURES, 'hello.mjs'));
    await writeSourceImage(sourceDir, image);
    const { stdout } = await execa('debugfs', ['-R', 'cat /handler.mjs', image], { stderr: 'ignore' });
    assert.equal(stdout.trim(), (await fs.readFile(path.join(FIXTURES, 'hello.mjs'), 'utf8')).trim());
  });
});

// ---- end to end: only where Firecracker can really run -------------------------

const support = detectFirecracker();
const e2eSkip = !support.ok
  ? support.reason
  : !process.env.SNAPFN_FC_KERNEL || !process.env.SNAPFN_FC_ROOTFS
    ? 'SNAPFN_FC_KERNEL / SNAPFN_FC_ROOTFS (guest kernel and rootfs image) not set'
    : notRoot;
if (e2eSkip) console.log(`# firecracker e2e skipped: ${e2eSkip}`);

describe('firecracker e2e', { skip: e2eSkip, timeout: 5 * 60_000 }, () => {
  test('build a template (boot, snapshot, record the working set), resume with UFFD, invoke, pause/unpause', async () => {
    const home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-fce2e-'));
    const selected = await firecrackerDriverIfSupported({ home, networkSlots: 2 });
    assert.ok(selected.driver, selected.reason);
    const driver = selected.driver;
    try {
      const template = await driver.buildTemplate({ functionName: 'hello', ...(await singleModuleSource(path.join(FIXTURES, 'hello.mjs'))), network: 'none' });
      const ws = JSON.parse(await fs.readFile(path.join(template.dir, 'working-set.json'), 'utf8')) as { offsets: number[] };
      assert.ok(ws.offsets.length > 0, 'the recorded working set is empty');
      const sandbox = await driver.resume(template, { memoryMb: 256, network: 'none' });
      try {
        const request = { method: 'GET', url: 'http://localhost/fn/hello?name=fc', headers: [] as [string, string][] };
        const outcome = await sandbox.invoke(request, { timeoutMs: 10_000, env: {}, invocationId: 'fc-1' });
        assert.ok(outcome.ok, JSON.stringify(outcome));
        await sandbox.pause();
        await sandbox.unpause();
        assert.ok((await sandbox.invoke(request, { timeoutMs: 10_000, env: {}, invocationId: 'fc-2' })).ok);
      } finally {
        await sandbox.destroy();
      }
      assert.equal(driver.liveSandboxes(), 0);
    } finally {
      await driver.close();
      await fs.rm(home, { recursive: true, force: true });
    }
  });
});
