// The Firecracker driver composed end to end around a fake VMM, so that
// everything but KVM itself runs here: network slot + tap, the launch in the
// slot's namespace with per-sandbox bind mounts over the fixed drive paths,
// every API call (validated), the snapshot, recording the working set, and on
// each restore a real UFFD hand-off (the fake runs native/uffd/uffd-peer
// against our page server) and the real envd dialling the vsock socket path.
//
// This same file is the fake `firecracker` binary when SNAPFN_FAKE_FIRECRACKER=1.
import { singleModuleSource } from '../src/sandbox/template/function-source.ts';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(HERE), '..');
const HANDLER = path.join(ROOT, 'test/fixtures/hello.mjs');
const MEMORY_BYTES = 4 * 1024 * 1024;

// ---- the fake VMM ---------------------------------------------------------------

async function fakeFirecracker(argv: string[]): Promise<void> {
  const S = await import('../src/sandbox/firecracker/api-schemas.ts');
  const { FIXED_ROOT_DRIVE } = await import('../src/sandbox/firecracker/guest-layout.ts');
  const { UFFD_PEER_BIN } = await import('../src/sandbox/uffd/native-binaries.ts');
  const apiSock = argv[argv.indexOf('--api-sock') + 1]!;
  const id = argv[argv.indexOf('--id') + 1]!;
  const children: ChildProcess[] = [];
  let vsock: string | undefined;
  let state: 'Not started' | 'Running' | 'Paused' = 'Not started';
  // The "guest" writes to its root disk: through the bind mount, this lands
  // in this sandbox's own copy, never in the template's.
  const { singleModuleSource: moduleSource } = await import('../src/sandbox/template/function-source.ts');
  const functionDir = (await moduleSource(HANDLER)).sourceDir;
  // The envd every sandbox gets: bundled with its protocol module, its addon beside it.
  const { ensureBaseRootfs } = await import('../src/sandbox/rootfs/base-rootfs.ts');
  const ENVD = path.join((await ensureBaseRootfs(path.join(os.tmpdir(), 'snapfn-fake-vmm-home'))).dir, 'opt/snapfn/envd.mjs');
  const touchRootDrive = (what: string) => fsSync.writeFileSync(FIXED_ROOT_DRIVE, `${what} by ${id}\n`, { flag: 'r+' });
  const startEnvd = (uds: string) => {
    const envd = spawn(process.execPath, [ENVD], { env: { ...process.env, SNAPFN_ENVD_SOCKET: `${uds}_1024`, SNAPFN_FUNCTION_DIR: functionDir }, stdio: 'inherit' });
    children.push(envd);
    // Children must die with the "VM", which the driver kills with SIGKILL.
    spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.1; done; kill -9 ${envd.pid}`], { detached: true, stdio: 'ignore' }).unref();
  };
  const routes: Record<string, (body: any) => void | Promise<void>> = {
    'PUT /machine-config': (b) => void S.MachineConfiguration.parse(b),
    'PUT /boot-source': (b) => void S.BootSource.parse(b),
    'PUT /drives': (b) => void fsSync.accessSync(S.Drive.parse(b).path_on_host),
    'PUT /network-interfaces': (b) => void S.NetworkInterface.parse(b),
    'PUT /vsock': (b) => void (vsock = S.Vsock.parse(b).uds_path),
    'PUT /actions': (b) => {
      S.InstanceActionInfo.parse(b);
      touchRootDrive('booted');
      state = 'Running';
      startEnvd(vsock!);
    },
    'PATCH /vm': (b) => void (state = S.VmState.parse(b).state === 'Paused' ? 'Paused' : 'Running'),
    'PUT /snapshot/create': async (b) => {
      const p = S.SnapshotCreateParams.parse(b);
      if (state !== 'Paused') throw new Error('not paused');
      await fs.writeFile(p.snapshot_path, 'fake vm state');
      await fs.writeFile(p.mem_file_path, crypto.randomBytes(MEMORY_BYTES));
    },
    'PUT /snapshot/load': (b) => {
      const p = S.SnapshotLoadParams.parse(b);
      assert.equal(p.mem_backend.backend_type, 'Uffd');
      touchRootDrive('restored');
      // The UFFD hand-off exactly as Firecracker does it, then every page read and checked.
      const peer = spawn(UFFD_PEER_BIN, ['--socket', p.mem_backend.backend_path, '--mem', path.join(path.dirname(p.snapshot_path), 'memory'), '--timeout-ms', '10000'], { stdio: ['ignore', 'ignore', 'inherit'] });
      children.push(peer);
      peer.on('exit', (code) => (code === 0 ? startEnvd(p.vsock_override!.uds_path) : process.exit(70)));
      state = 'Running';
    },
  };
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (c) => (text += c));
    req.on('end', async () => {
      if (req.method === 'GET' && req.url === '/') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        return res.end(JSON.stringify({ app_name: 'Firecracker', id, state, vmm_version: 'fake' }));
      }
      const route = routes[`${req.method} /${req.url!.split('/')[1]}`.replace('/snapshot', '/snapshot/' + (req.url!.split('/')[2] ?? ''))];
      try {
        if (!route) throw new Error(`no route ${req.method} ${req.url}`);
        await route(text ? JSON.parse(text) : undefined);
        res.writeHead(204).end();
      } catch (err) {
        res.writeHead(400, { 'Content-Type': 'application/json' }).end(JSON.stringify({ fault_message: String((err as Error).message) }));
      }
    });
  });
  server.listen(apiSock);
}

if (process.env.SNAPFN_FAKE_FIRECRACKER === '1') {
  await fakeFirecracker(process.argv.slice(2));
} else {
  const notRoot = process.getuid?.() !== 0 ? 'needs root (network namespaces, bind mounts)' : false;
  describe('firecracker driver around a fake VMM', { skip: notRoot, timeout: 120_000 }, () => {
    test('build (boot, snapshot, record the working set), resume through UFFD, invoke, pause, destroy', async () => {
      const { FirecrackerDriver } = await import('../src/sandbox/firecracker/firecracker-driver.ts');
      const { FIXED_ROOT_DRIVE } = await import('../src/sandbox/firecracker/guest-layout.ts');
      const home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-fcfake-'));
      const binary = path.join(home, 'bin', 'firecracker');
      await fs.mkdir(path.dirname(binary));
      await fs.writeFile(binary, `#!/bin/sh\ncd ${ROOT}\nSNAPFN_FAKE_FIRECRACKER=1 exec ${process.execPath} --import tsx ${HERE} "$@"\n`, { mode: 0o755 });
      const kernelImage = path.join(home, 'vmlinux');
      const rootfsImage = path.join(home, 'rootfs.ext4');
      await fs.writeFile(kernelImage, 'not a kernel');
      await fs.writeFile(rootfsImage, Buffer.alloc(64 * 1024));
      const driver = await FirecrackerDriver.create({ home, networkSlots: 1, kernelImage, rootfsImage, binary, skipHostCheck: true, vmReadyTimeoutMs: 30_000 }).catch(async (err) => {
        await fs.rm(home, { recursive: true, force: true });
        throw err;
      });
      try {
        const steps: string[] = [];
        const template = await driver.buildTemplate({ functionName: 'hello', ...(await singleModuleSource(HANDLER)), network: 'none' }, (step) => steps.push(step));
        // The one template recipe (src/sandbox/lifecycle/template-builder.ts): the same steps as every driver's.
        assert.deepEqual(steps, ['rootfs', 'boot', 'warm', 'checkpoint', 'record-working-set', 'record-working-set', 'done']);
        assert.equal(template.imageBytes, MEMORY_BYTES);
        const ws = JSON.parse(await fs.readFile(path.join(template.dir, 'working-set.json'), 'utf8'));
        assert.equal(ws.offsets.length, MEMORY_BYTES / 4096, 'both recorded restores touched every page');
        assert.deepEqual(ws.pagesPerRun, [MEMORY_BYTES / 4096, MEMORY_BYTES / 4096]);
        assert.match(await fs.readFile(path.join(template.dir, 'rootfs.ext4'), 'latin1'), /^booted by sfc_/);

        const sandbox = await driver.resume(template, { memoryMb: 256, network: 'none' });
        try {
          const request = { method: 'GET', url: 'http://localhost/fn/hello?name=fake-fc', headers: [] as [string, string][] };
          const outcome = await sandbox.invoke(request, { timeoutMs: 5000, env: {}, invocationId: 'fc-1' });
          assert.ok(outcome.ok, JSON.stringify(outcome));
          assert.deepEqual(JSON.parse(Buffer.from(outcome.response.bodyBase64, 'base64').toString()), { hello: 'fake-fc', method: 'GET' });
          await sandbox.pause();
          await sandbox.unpause();
          // The restore wrote to the sandbox's own root drive copy only.
          assert.match(await fs.readFile(path.join(template.dir, 'rootfs.ext4'), 'latin1'), /^booted by/);
        } finally {
          await sandbox.destroy();
        }
        assert.equal(driver.liveSandboxes(), 0);
        assert.equal((await fs.stat(FIXED_ROOT_DRIVE)).size, 0, 'a bind mount leaked onto the host path');
      } finally {
        await driver.close();
        await fs.rm(home, { recursive: true, force: true });
      }
    });
  });
}
