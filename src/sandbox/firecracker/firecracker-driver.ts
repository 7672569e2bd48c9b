import crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { SnapfnError, TemplateBuildError } from '../../errors.ts';
import type { ProgressFn, ResumeOptions, Sandbox, SandboxDriver, Template, TemplateSource } from '../driver.ts';
import { EnvdListener } from '../envd/envd-listener.ts';
import { assertRestoredCleanly } from '../envd/envd-connection.ts';
import { NetworkSlotPool } from '../network/network-slot-pool.ts';
import { LiveSandboxes } from '../lifecycle/live-sandboxes.ts';
import { traced } from '../lifecycle/spans.ts';
import { buildTemplate } from '../lifecycle/template-builder.ts';
import { TemplateStore } from '../template/template-store.ts';
import { UffdPageServer } from '../uffd/uffd-page-server.ts';
import { recordWorkingSet, workingSetPath } from '../uffd/working-set.ts';
import { copyOnWriteDrive } from './drive-files.ts';
import { writeSourceImage } from '../template/function-source.ts';
import { FirecrackerSandbox } from './firecracker-sandbox.ts';
import { FirecrackerVm } from './firecracker-vm.ts';
import { bootArgs, ENVD_VSOCK_PORT, FIXED_BUNDLE_DRIVE, FIXED_ROOT_DRIVE, GUEST_CID, GUEST_IFACE, GUEST_MAC, TAP_DEVICE } from './guest-layout.ts';
import { detectFirecracker } from './host-support.ts';
import { ensureTap } from './tap-network.ts';

export class FirecrackerUnavailableError extends SnapfnError {
  constructor(reason: string) {
    super('driver_unavailable', 503, `the firecracker driver cannot run here: ${reason}`);
  }
}

export interface FirecrackerDriverOptions {
  home: string;
  networkSlots: number;
  /** Uncompressed guest kernel (vmlinux) and root filesystem image; see docs/firecracker.md. */
  kernelImage: string;
  rootfsImage: string;
  /** Default: detected (SNAPFN_FIRECRACKER_BIN or PATH). */
  binary?: string;
  /** Guest RAM of every template: fixed by the snapshot. Default 256. */
  memoryMb?: number;
  vcpus?: number;
  envdTimeoutMs?: number;
  /** Until the API socket answers (real Firecracker: ~10 ms). Default 5 s. */
  vmReadyTimeoutMs?: number;
  /** Resumes recorded per template build to derive its working set (E2B records 2). 0 disables. */
  workingSetRuns?: number;
  /** Tests that drive a fake VMM only: do not require hardware KVM. */
  skipHostCheck?: boolean;
}

/** Files of a template directory. */
const T = { root: 'rootfs.ext4', bundle: 'bundle.ext4', state: 'vmstate', memory: 'memory' } as const;

interface Boot {
  kind: 'boot' | 'restore';
  templateId: string;
  egress: boolean;
  /** Boot: the template's drives are built here. Restore: the template directory. */
  dir: string;
  recordFile?: string;
}

/**
 * Sandboxes as Firecracker microVMs: boot once per template, snapshot, then
 * every sandbox resumes from the snapshot with its guest memory served by a
 * UFFD page server (native/uffd) that prefetches the template's recorded
 * working set. Selected only where detectFirecracker() finds a binary and
 * hardware KVM; this repository's CI machines have neither (docs/firecracker.md).
 */
export class FirecrackerDriver implements SandboxDriver {
  readonly name = 'firecracker';
  readonly platform = 'kvm';
  readonly version = 'firecracker-1';
  readonly #options: Required<Omit<FirecrackerDriverOptions, 'binary'>> & { binary: string };
  readonly #templates: TemplateStore;
  readonly #slots: NetworkSlotPool;
  readonly #sandboxes = new LiveSandboxes<FirecrackerSandbox>();
  #imageHash: Promise<string> | undefined;

  private constructor(options: FirecrackerDriverOptions & { binary: string }, slots: NetworkSlotPool) {
    this.#options = { memoryMb: 256, vcpus: 1, envdTimeoutMs: 20_000, vmReadyTimeoutMs: 5000, workingSetRuns: 2, skipHostCheck: false, ...options };
    this.#slots = slots;
    this.#templates = new TemplateStore(path.join(options.home, 'templates'));
  }

  static async create(options: FirecrackerDriverOptions): Promise<FirecrackerDriver> {
    const support = options.skipHostCheck && options.binary
      ? { ok: true as const, binary: options.binary, reason: 'host check skipped' }
      : detectFirecracker(options.binary ? { ...process.env, SNAPFN_FIRECRACKER_BIN: options.binary } : process.env);
    if (!support.ok) throw new FirecrackerUnavailableError(support.reason);
    for (const image of [options.kernelImage, options.rootfsImage]) {
      await fs.access(image).catch(() => {
        throw new FirecrackerUnavailableError(`guest image ${image} is missing (docs/firecracker.md: guest image)`);
      });
    }
    const slots = await NetworkSlotPool.create({ size: options.networkSlots });
    const driver = new FirecrackerDriver({ ...options, binary: support.binary }, slots);
    try {
      // Sandboxes of a previous process died with it (their VMs were our children).
      const sandboxes = driver.#sandboxRoot();
      await fs.rm(sandboxes, { recursive: true, force: true });
      await fs.mkdir(sandboxes, { recursive: true });
    } catch (err) {
      await slots.close();
      throw err;
    }
    return driver;
  }

  liveSandboxes(): number {
    return this.#sandboxes.size;
  }

  loadTemplate(id: string): Promise<Template | undefined> {
    return this.#templates.load(id);
  }

  async templateIdOf(source: TemplateSource): Promise<string> {
    if ((source.rootfs ?? 'base') !== 'base') throw new TemplateBuildError('the firecracker driver only has the base root filesystem');
    this.#imageHash ??= hashFiles([this.#options.kernelImage, this.#options.rootfsImage]);
    const { memoryMb, vcpus } = this.#options;
    return TemplateStore.templateId([this.name, this.version, await this.#imageHash, source.sourceHash, source.network, `${memoryMb}:${vcpus}`]);
  }

  buildTemplate(source: TemplateSource, onProgress?: ProgressFn): Promise<Template> {
    return buildTemplate<FirecrackerSandbox>(
      { name: this.name, templates: this.#templates, templateIdOf: (s) => this.templateIdOf(s) },
      source,
      {
        prepare: async (tmp) => {
          await copyOnWriteDrive(this.#options.rootfsImage, path.join(tmp, T.root));
          await writeSourceImage(source.sourceDir, path.join(tmp, T.bundle));
        },
        boot: (tmp, templateId) =>
          this.#start({ kind: 'boot', templateId, dir: tmp, egress: source.network === 'egress' }).catch((err) => {
            throw new TemplateBuildError(`the microVM did not boot: ${(err as Error).message}`, { cause: err });
          }),
        checkpoint: async (sandbox, tmp) => {
          await sandbox.pause();
          await sandbox.vm.api.createSnapshot({ snapshot_path: path.join(tmp, T.state), mem_file_path: path.join(tmp, T.memory), snapshot_type: 'Full' });
        },
        afterCheckpoint: (tmp, templateId, progress) => this.#recordWorkingSet(templateId, tmp, progress),
        imageBytes: async (tmp) => (await fs.stat(path.join(tmp, T.memory))).size,
      },
      onProgress,
    );
  }

  /** options.memoryMb cannot grow the guest: its RAM is fixed by the snapshot (memoryMb of the driver). */
  async resume(template: Template, options: ResumeOptions): Promise<Sandbox> {
    return traced('restore', async () => (await this.#start({ kind: 'restore', templateId: template.id, dir: template.dir, egress: options.network === 'egress' })).sandbox);
  }

  async coldBoot(source: TemplateSource, options: ResumeOptions): Promise<Sandbox> {
    const dir = path.join(this.#sandboxRoot(), `cold-${crypto.randomBytes(4).toString('hex')}`);
    await fs.mkdir(dir, { recursive: true });
    await copyOnWriteDrive(this.#options.rootfsImage, path.join(dir, T.root));
    await writeSourceImage(source.sourceDir, path.join(dir, T.bundle));
    const { sandbox } = await this.#start({ kind: 'boot', templateId: 'cold', dir, egress: options.network === 'egress' });
    void sandbox.vm.exited.then(() => fs.rm(dir, { recursive: true, force: true }));
    return sandbox;
  }

  async close(): Promise<void> {
    await this.#sandboxes.close();
    await this.#slots.close();
  }

  /**
   * E2B's optimise phase: resume the fresh snapshot a few times with the
   * page server recording, until envd has answered a request, and keep the
   * pages every run touched.
   */
  async #recordWorkingSet(templateId: string, dir: string, onProgress: ProgressFn): Promise<void> {
    const runs: string[] = [];
    for (let i = 0; i < this.#options.workingSetRuns; i++) {
      onProgress('record-working-set', { run: i + 1 });
      const recordFile = path.join(dir, `record-${i}.txt`);
      const { sandbox } = await this.#start({ kind: 'restore', templateId, dir, recordFile, egress: false });
      try {
        // The rehearsal is the first request a restored sandbox serves: its pages are the working set.
        await sandbox.warmup();
      } finally {
        await sandbox.destroy();
      }
      runs.push(recordFile);
    }
    if (runs.length >= 2) await recordWorkingSet(runs, { templateDir: dir });
    for (const run of runs) await fs.rm(run, { force: true });
  }

  /** Boot or restore one microVM and wait for envd's hello over vsock. */
  async #start(boot: Boot): Promise<{ sandbox: FirecrackerSandbox; hello: Awaited<ReturnType<EnvdListener['accept']>>['hello'] }> {
    return this.#sandboxes.start(async ({ cleanup, onDestroyed }) => {
      const id = `sfc_${crypto.randomBytes(6).toString('hex')}`;
      const stateDir = path.join(this.#sandboxRoot(), id);
      cleanup.defer('state directory', () => fs.rm(stateDir, { recursive: true, force: true }));
      await fs.mkdir(stateDir, { recursive: true });
      const slot = await this.#slots.acquire({ egress: boot.egress });
      cleanup.defer('network slot', () => this.#slots.release(slot));
      await ensureTap({ netns: slot.netns, slotIp: slot.guestIp });
      // Restores write to their own copy of the template's root drive.
      const rootDrive = boot.kind === 'restore' ? path.join(stateDir, T.root) : path.join(boot.dir, T.root);
      if (boot.kind === 'restore') await copyOnWriteDrive(path.join(boot.dir, T.root), rootDrive);
      const vm = await traced('firecracker start', () =>
        FirecrackerVm.start({
          binary: this.#options.binary,
          id,
          stateDir,
          netns: slot.netns,
          readyTimeoutMs: this.#options.vmReadyTimeoutMs,
          binds: [
            { source: rootDrive, target: FIXED_ROOT_DRIVE },
            { source: path.join(boot.dir, T.bundle), target: FIXED_BUNDLE_DRIVE },
          ],
        }),
      );
      let pageServer: UffdPageServer | undefined;
      // The VM first: the page server then sees its socket hang up and exits
      // by itself; close() only covers the case where it did not.
      cleanup.defer('microVM and its page server', async () => {
        await vm.kill();
        await pageServer?.close();
      });
      const listener = await EnvdListener.listen(`${vm.vsockUds}_${ENVD_VSOCK_PORT}`);
      cleanup.defer('envd listener', () => listener.close());
      if (boot.kind === 'boot') {
        await this.#configure(vm);
        await vm.api.startInstance();
      } else {
        const workingSet = boot.recordFile ? undefined : await fs.access(workingSetPath(boot.dir)).then(() => workingSetPath(boot.dir), () => undefined);
        pageServer = await UffdPageServer.start({
          socketPath: path.join(stateDir, 'uffd.sock'),
          memoryFile: path.join(boot.dir, T.memory),
          ...(workingSet ? { workingSet } : {}),
          ...(boot.recordFile ? { recordFile: boot.recordFile } : {}),
        });
        await vm.api.loadSnapshot({
          snapshot_path: path.join(boot.dir, T.state),
          mem_backend: { backend_type: 'Uffd', backend_path: pageServer.socketPath },
          vsock_override: { uds_path: vm.vsockUds },
          resume_vm: true,
        });
      }
      const died = Promise.race([vm.died, ...(pageServer ? [pageServer.failed] : [])]);
      const { connection, hello } = await traced('envd connect', () => listener.accept(this.#options.envdTimeoutMs, died));
      await listener.close();
      assertRestoredCleanly(hello);
      const sandbox = new FirecrackerSandbox({ id, templateId: boot.templateId, vm, pageServer, connection, exited: vm.exited, cleanup, onDestroyed });
      return { sandbox, hello };
    });
  }

  async #configure(vm: FirecrackerVm): Promise<void> {
    const { api } = vm;
    await api.putMachineConfig({ vcpu_count: this.#options.vcpus, mem_size_mib: this.#options.memoryMb, smt: false });
    await api.putBootSource({ kernel_image_path: this.#options.kernelImage, boot_args: bootArgs() });
    await api.putDrive({ drive_id: 'rootfs', path_on_host: FIXED_ROOT_DRIVE, is_root_device: true, is_read_only: false });
    await api.putDrive({ drive_id: 'bundle', path_on_host: FIXED_BUNDLE_DRIVE, is_root_device: false, is_read_only: true });
    await api.putNetworkInterface({ iface_id: GUEST_IFACE, host_dev_name: TAP_DEVICE, guest_mac: GUEST_MAC });
    await api.putVsock({ guest_cid: GUEST_CID, uds_path: vm.vsockUds });
  }

  #sandboxRoot(): string {
    return path.join(this.#options.home, 'firecracker', 'sandboxes');
  }
}

/** Content hash of the guest images, computed once per driver (they are large). */
async function hashFiles(files: string[]): Promise<string> {
  const h = crypto.createHash('sha256');
  for (const file of files) {
    for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
    h.update('\0');
  }
  return h.digest('hex').slice(0, 16);
}
