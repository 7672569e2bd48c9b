// The Firecracker API client (issue 8) against a fake Firecracker: an HTTP
// server on a Unix socket that validates every body with our schemas, keeps
// Firecracker's ordering rules that matter to us (snapshot load only on a
// fresh process, start needs a boot source, pause needs a running VM) and
// records what it was sent.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { z } from 'zod';
import { FirecrackerApi, FirecrackerApiError } from '../src/sandbox/firecracker/api-client.ts';
import * as S from '../src/sandbox/firecracker/api-schemas.ts';

interface Recorded {
  method: string;
  path: string;
  body: unknown;
}

class FakeFirecracker {
  readonly requests: Recorded[] = [];
  state: 'Not started' | 'Running' | 'Paused' = 'Not started';
  configured = false;
  bootSource = false;
  hang = false;
  readonly #server: http.Server;

  constructor(readonly socketPath: string) {
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (this.hang) return; // never answers
        const text = Buffer.concat(chunks).toString('utf8');
        const body = text ? JSON.parse(text) : undefined;
        this.requests.push({ method: req.method!, path: req.url!, body });
        const [status, reply] = this.#route(req.method!, req.url!, body);
        res.writeHead(status, reply ? { 'Content-Type': 'application/json' } : {});
        res.end(reply ? JSON.stringify(reply) : undefined);
      });
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.#server.listen(this.socketPath, resolve));
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #route(method: string, url: string, body: unknown): [number, unknown?] {
    const fault = (message: string): [number, unknown] => [400, { fault_message: message }];
    const check = <T extends z.ZodType>(schema: T): string | undefined => {
      const r = schema.safeParse(body);
      return r.success ? undefined : `invalid body: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`;
    };
    const preBoot = (schema: z.ZodType, idField?: string): [number, unknown?] => {
      const bad = check(schema);
      if (bad) return fault(bad);
      if (idField && url.split('/').pop() !== (body as Record<string, string>)[idField]) return fault(`the ${idField} in the path and the body differ`);
      if (this.state !== 'Not started') return fault('the update operation is not allowed after boot');
      this.configured = true;
      return [204];
    };
    const key = `${method} ${url.replace(/^\/(drives|network-interfaces)\/.*/, '/$1/{id}')}`;
    switch (key) {
      case 'GET /':
        return [200, { app_name: 'Firecracker', id: 'anonymous-instance', state: this.state, vmm_version: '1.10.0-fake' }];
      case 'PUT /boot-source':
        this.bootSource = true;
        return preBoot(S.BootSource);
      case 'PUT /drives/{id}':
        return preBoot(S.Drive, 'drive_id');
      case 'PUT /network-interfaces/{id}':
        return preBoot(S.NetworkInterface, 'iface_id');
      case 'PUT /machine-config':
        return preBoot(S.MachineConfiguration);
      case 'PUT /vsock':
        return preBoot(S.Vsock);
      case 'PUT /actions': {
        const bad = check(S.InstanceActionInfo);
        if (bad) return fault(bad);
        if (!this.bootSource) return fault('Cannot start microvm without kernel configuration.');
        this.state = 'Running';
        return [204];
      }
      case 'PATCH /vm': {
        const bad = check(S.VmState);
        if (bad) return fault(bad);
        if (this.state === 'Not started') return fault('the microVM is not running');
        this.state = (body as S.VmState).state === 'Paused' ? 'Paused' : 'Running';
        return [204];
      }
      case 'PUT /snapshot/create': {
        const bad = check(S.SnapshotCreateParams);
        if (bad) return fault(bad);
        return this.state === 'Paused' ? [204] : fault('Create snapshot error: the microVM must be paused');
      }
      case 'PUT /snapshot/load': {
        const bad = check(S.SnapshotLoadParams);
        if (bad) return fault(bad);
        if (this.configured || this.state !== 'Not started') return fault('Loading a microVM snapshot not allowed after configuring boot-specific resources.');
        this.state = (body as S.SnapshotLoadParams).resume_vm ? 'Running' : 'Paused';
        return [204];
      }
      default:
        return [400, { fault_message: `Invalid request method and/or path: ${method} ${url}` }];
    }
  }
}

describe('Firecracker API client', () => {
  let dir: string;
  let fake: FakeFirecracker;
  let api: FirecrackerApi;
  let n = 0;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-fcapi-'));
  });
  after(async () => {
    await fake?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await fake?.close();
    fake = new FakeFirecracker(path.join(dir, `api-${n++}.sock`));
    await fake.listen();
    api = new FirecrackerApi(fake.socketPath, { timeoutMs: 2000 });
  });

  test('boot sequence: machine config, boot source, drives, network, vsock, start, pause, snapshot', { timeout: 10_000 }, async () => {
    await api.putMachineConfig({ vcpu_count: 2, mem_size_mib: 256, smt: false, track_dirty_pages: false });
    await api.putBootSource({ kernel_image_path: '/k/vmlinux', boot_args: 'console=ttyS0 reboot=k panic=1 pci=off' });
    await api.putDrive({ drive_id: 'rootfs', path_on_host: '/t/rootfs.ext4', is_root_device: true, is_read_only: false, cache_type: 'Unsafe', io_engine: 'Sync' });
    await api.putNetworkInterface({ iface_id: 'eth0', host_dev_name: 'tap0', guest_mac: '06:00:AC:10:00:02' });
    await api.putVsock({ guest_cid: 3, uds_path: '/s/vsock.sock' });
    await api.startInstance();
    assert.equal((await api.describeInstance()).state, 'Running');
    await api.pause();
    await api.createSnapshot({ snapshot_path: '/t/vmstate', mem_file_path: '/t/memory', snapshot_type: 'Full' });
    assert.deepEqual(
      fake.requests.map((r) => `${r.method} ${r.path}`),
      ['PUT /machine-config', 'PUT /boot-source', 'PUT /drives/rootfs', 'PUT /network-interfaces/eth0', 'PUT /vsock', 'PUT /actions', 'GET /', 'PATCH /vm', 'PUT /snapshot/create'],
    );
    assert.deepEqual(fake.requests[5]!.body, { action_type: 'InstanceStart' });
    assert.deepEqual(fake.requests[7]!.body, { state: 'Paused' });
    assert.deepEqual(fake.requests[8]!.body, { snapshot_path: '/t/vmstate', mem_file_path: '/t/memory', snapshot_type: 'Full' });
  });

  test('restore: snapshot load with a Uffd memory backend and overrides on a fresh process, then resume', { timeout: 10_000 }, async () => {
    await api.loadSnapshot({
      snapshot_path: '/t/vmstate',
      mem_backend: { backend_type: 'Uffd', backend_path: '/s/uffd.sock' },
      vsock_override: { uds_path: '/s/sb1/vsock.sock' },
      network_overrides: [{ iface_id: 'eth0', host_dev_name: 'tap0' }],
      resume_vm: false,
    });
    assert.equal((await api.describeInstance()).state, 'Paused');
    await api.resume();
    assert.equal((await api.describeInstance()).state, 'Running');
    assert.deepEqual(fake.requests[0]!.body, {
      snapshot_path: '/t/vmstate',
      mem_backend: { backend_type: 'Uffd', backend_path: '/s/uffd.sock' },
      vsock_override: { uds_path: '/s/sb1/vsock.sock' },
      network_overrides: [{ iface_id: 'eth0', host_dev_name: 'tap0' }],
      resume_vm: false,
    });
    assert.deepEqual(fake.requests[2]!.body, { state: 'Resumed' });
  });

  test("Firecracker's refusals come back as FirecrackerApiError with its fault message", { timeout: 10_000 }, async () => {
    await assert.rejects(api.startInstance(), (err: unknown) => err instanceof FirecrackerApiError && err.status === 400 && /without kernel configuration/.test(err.fault));
    await api.putMachineConfig({ vcpu_count: 1, mem_size_mib: 128 });
    await assert.rejects(
      api.loadSnapshot({ snapshot_path: '/t/vmstate', mem_backend: { backend_type: 'Uffd', backend_path: '/s/u.sock' } }),
      (err: unknown) => err instanceof FirecrackerApiError && /not allowed after configuring/.test(err.message),
    );
  });

  test('invalid bodies are refused before anything is sent', () => {
    const bad: Array<[string, () => Promise<void>]> = [
      ['smt with 3 vCPUs', () => api.putMachineConfig({ vcpu_count: 3, mem_size_mib: 256, smt: true })],
      ['33 vCPUs', () => api.putMachineConfig({ vcpu_count: 33, mem_size_mib: 256 })],
      ['unknown field', () => api.putBootSource({ kernel_image_path: '/k', kernel_args: 'x' } as unknown as S.BootSource)],
      ['bad MAC', () => api.putNetworkInterface({ iface_id: 'eth0', host_dev_name: 'tap0', guest_mac: '06:00:AC' })],
      ['tap name too long for Linux', () => api.putNetworkInterface({ iface_id: 'eth0', host_dev_name: 'a-very-long-tap-name' })],
      ['vsock cid 2 is the host', () => api.putVsock({ guest_cid: 2, uds_path: '/s' })],
      ['bad backend type', () => api.loadSnapshot({ snapshot_path: '/t', mem_backend: { backend_type: 'Nbd', backend_path: '/s' } } as unknown as S.SnapshotLoadParams)],
      ['2M pages with a File backend', () => api.loadSnapshot({ snapshot_path: '/t', mem_backend: { backend_type: 'File', backend_path: '/m' }, huge_pages: '2M' })],
      ['drive id with a slash', () => api.putDrive({ drive_id: 'a/b', path_on_host: '/d', is_root_device: false, is_read_only: true })],
    ];
    return Promise.all(
      bad.map(async ([what, call]) => {
        await assert.rejects(call(), (err: unknown) => (err as Error).name === 'ZodError', what);
      }),
    ).then(() => assert.equal(fake.requests.length, 0));
  });

  test('a VMM that never answers times out; waitUntilReady waits for a late socket', { timeout: 10_000 }, async () => {
    fake.hang = true;
    const quick = new FirecrackerApi(fake.socketPath, { timeoutMs: 200 });
    const started = Date.now();
    await assert.rejects(quick.pause(), /timed out after 200 ms/);
    assert.ok(Date.now() - started < 2000);

    const late = new FakeFirecracker(path.join(dir, 'late.sock'));
    const waiting = new FirecrackerApi(late.socketPath).waitUntilReady(3000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await late.listen();
    try {
      assert.equal((await waiting).state, 'Not started');
    } finally {
      await late.close();
    }
    await assert.rejects(new FirecrackerApi(path.join(dir, 'never.sock')).waitUntilReady(100), /did not answer within 100 ms/);
  });
});
