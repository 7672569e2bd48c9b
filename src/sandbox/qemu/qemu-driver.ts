import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { InvalidInputError, TemplateBuildError } from '../../errors.ts';
import type { ProgressFn, ResumeOptions, Sandbox, SandboxDriver, Template, TemplateSource } from '../driver.ts';
import { assertRestoredCleanly, type EnvdHello } from '../envd/envd-connection.ts';
import { NetworkSlotPool, type NetworkSlot } from '../network/network-slot-pool.ts';
import { ensureRootfs } from '../rootfs/base-rootfs.ts';
import { LiveSandboxes } from '../lifecycle/live-sandboxes.ts';
import { logTail } from '../lifecycle/log-tail.ts';
import { traced } from '../lifecycle/spans.ts';
import { buildTemplate } from '../lifecycle/template-builder.ts';
import { TemplateStore } from '../template/template-store.ts';
import { qemuAccel, type QemuAccel } from './accel.ts';
import { bootWatchdog } from './boot-watchdog.ts';
import { writeSourceImage } from '../template/function-source.ts';
import { connectEnvd, type GuestLimits } from './envd-port.ts';
import { ensureGuestImage, type GuestImage } from './guest-image.ts';
import { QemuSandbox } from './qemu-sandbox.ts';
import { QemuVm, type VmSpec } from './qemu-vm.ts';

export interface QemuDriverOptions {
  home: string;
  /** Default: hardware KVM when detected, else TCG (see accel.ts). */
  accel?: QemuAccel;
  /** Boot to envd hello (TCG boots take seconds, node's start-up ~8x slower). */
  bootTimeoutMs?: number;
  /** Restore to envd hello. */
  resumeTimeoutMs?: number;
  /**
   * Network slots (namespace + veth + tap) created up front, for templates
   * with network 'egress'; more are made on demand. Default 2.
   */
  networkSlots?: number;
}

/**
 * Guest RAM of every template. It is fixed by the snapshot (the RAM file is
 * the memory image), so a function's memoryMb cannot grow it at resume: a
 * memoryMb below it becomes memory.max of the guest cgroup holding envd and
 * the handler; at or above it, the guest's RAM is the limit (the documented
 * cap, docs/qemu.md).
 */
export const GUEST_MEMORY_MB = 256;

/** Boots that do not reach userspace in BOOT_STALL_MS are killed and retried. */
const BOOT_ATTEMPTS = 3;
const BOOT_STALL_MS = 20_000;

/** Files of a template directory. */
const T = { bundle: 'bundle.img', disk: 'disk.qcow2', ram: 'ram', state: 'vmstate', meta: 'qemu.json' } as const;

/** What a restore must reproduce from the build: a NIC or not (the snapshot has it, or not). */
interface QemuTemplateMeta {
  nic: boolean;
}

interface Started {
  sandbox: QemuSandbox;
  hello: EnvdHello;
}

export class QemuDriver implements SandboxDriver {
  readonly name = 'qemu';
  readonly platform: QemuAccel;
  readonly version = 'qemu-1';
  readonly #home: string;
  readonly #templates: TemplateStore;
  readonly #sandboxes = new LiveSandboxes<QemuSandbox>();
  readonly #bootTimeoutMs: number;
  readonly #resumeTimeoutMs: number;
  readonly #slots: NetworkSlotPool;
  readonly #meta = new Map<string, Promise<QemuTemplateMeta>>();

  private constructor(options: QemuDriverOptions, slots: NetworkSlotPool) {
    this.#slots = slots;
    this.#home = options.home;
    this.platform = options.accel ?? qemuAccel();
    this.#bootTimeoutMs = options.bootTimeoutMs ?? 60_000;
    this.#resumeTimeoutMs = options.resumeTimeoutMs ?? 20_000;
    this.#templates = new TemplateStore(path.join(options.home, 'templates'));
  }

  static async create(options: QemuDriverOptions): Promise<QemuDriver> {
    const r = await execa('qemu-system-x86_64', ['--version'], { reject: false, stdin: 'ignore' });
    if (r.exitCode !== 0) throw new Error('qemu-system-x86_64 is not installed (apt-get install qemu-system-x86 qemu-utils)');
    const slots = await NetworkSlotPool.create({ size: options.networkSlots ?? 2, tap: true });
    const driver = new QemuDriver(options, slots);
    await fs.mkdir(driver.#sandboxRoot(), { recursive: true });
    // Sandboxes of a previous process are unusable (their QEMU died with it
    // or is orphaned): remove their overlays and sockets.
    for (const entry of await fs.readdir(driver.#sandboxRoot())) await fs.rm(path.join(driver.#sandboxRoot(), entry), { recursive: true, force: true });
    process.stderr.write(`snapfn: qemu driver using accel=${driver.platform}${driver.platform === 'tcg' ? ' (software emulation: expect slow boots and handlers)' : ''}\n`);
    return driver;
  }

  liveSandboxes(): number {
    return this.#sandboxes.size;
  }

  networkStats() {
    return this.#slots.stats();
  }

  /** The guest image of a root filesystem flavor: the same files as gVisor's, plus busybox and the guest init. */
  async #guest(source: Pick<TemplateSource, 'rootfs'>): Promise<GuestImage> {
    return ensureGuestImage(this.#home, await ensureRootfs(this.#home, source.rootfs ?? 'base'));
  }

  async templateIdOf(source: TemplateSource): Promise<string> {
    const guest = await this.#guest(source);
    // The accelerator is part of the id: CPU state saved under TCG (-cpu max)
    // does not load into a KVM guest (-cpu host) and vice versa.
    return TemplateStore.templateId([this.name, this.version, this.platform, guest.hash, source.sourceHash, source.network, String(GUEST_MEMORY_MB)]);
  }

  loadTemplate(id: string): Promise<Template | undefined> {
    return this.#templates.load(id);
  }

  buildTemplate(source: TemplateSource, onProgress?: ProgressFn): Promise<Template> {
    return buildTemplate<QemuSandbox>(
      { name: this.name, templates: this.#templates, templateIdOf: (s) => this.templateIdOf(s) },
      source,
      {
        // The guest's root filesystem is the flavor's plus busybox: its libraries are the flavor's.
        rootfsHome: this.#home,
        prepare: async (tmp) => {
          await writeSourceImage(source.sourceDir, path.join(tmp, T.bundle));
          // 'egress' boots with the NIC so that the snapshot has it configured.
          const meta: QemuTemplateMeta = { nic: source.network === 'egress' };
          await fs.writeFile(path.join(tmp, T.meta), JSON.stringify(meta));
        },
        boot: async (tmp, templateId) => this.#bootWithRetry(await this.#guest(source), tmp, templateId, source.network),
        checkpoint: (sandbox, tmp) =>
          sandbox.vm.saveState(path.join(tmp, T.state)).catch((err) => {
            throw new TemplateBuildError(`saving the VM state failed: ${(err as Error).message}`, { cause: err });
          }),
        imageBytes: allocatedBytes,
        primeTimeoutMs: 60_000,
      },
      onProgress,
    );
  }

  /**
   * TCG boots occasionally hang early (seen ~3 in 40 with `quiet`): a boot
   * that does not reach envd's hello in time is killed and tried once more.
   */
  async #bootWithRetry(guest: GuestImage, templateDir: string, templateId: string, network: TemplateSource['network']): Promise<Started> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= BOOT_ATTEMPTS; attempt++) {
      await fs.rm(path.join(templateDir, T.disk), { force: true });
      await fs.rm(path.join(templateDir, T.ram), { force: true });
      await qemuImgOverlay(guest.rootfsImg, 'raw', path.join(templateDir, T.disk));
      try {
        return await this.#start({
          templateId,
          guest,
          timeoutMs: this.#bootTimeoutMs,
          boot: true,
          network: network === 'egress' ? { egress: true } : undefined,
          spec: { disk: path.join(templateDir, T.disk), bundleDisk: path.join(templateDir, T.bundle), ram: { file: path.join(templateDir, T.ram), share: true } },
        });
      } catch (err) {
        lastError = err;
        process.stderr.write(`snapfn: qemu boot attempt ${attempt}/${BOOT_ATTEMPTS} for template ${templateId} failed: ${(err as Error).message.slice(0, 300)}\n`);
      }
    }
    throw new TemplateBuildError(`the guest did not boot: ${(lastError as Error).message}`, { cause: lastError });
  }

  async resume(template: Template, options: ResumeOptions): Promise<Sandbox> {
    const meta = await this.#templateMeta(template);
    if (options.network === 'egress' && !meta.nic) {
      throw new InvalidInputError(`template ${template.id} was built with network 'none' (no NIC in its snapshot); network 'egress' needs a template built with 'egress'`);
    }
    return traced('restore', async () => {
      const guest = await this.#guest(template);
      const { sandbox } = await this.#start({
        templateId: template.id,
        guest,
        timeoutMs: this.#resumeTimeoutMs,
        // A NIC template keeps its NIC even for network 'none': the slot then
        // simply has no egress grant, so the host drops all it sends.
        network: meta.nic ? { egress: options.network === 'egress' } : undefined,
        limits: guestLimits(options.memoryMb),
        // The per-sandbox overlay is created inside #start, backed by the template's disk.
        overlayOf: path.join(template.dir, T.disk),
        spec: {
          disk: '',
          bundleDisk: path.join(template.dir, T.bundle),
          ram: { file: path.join(template.dir, T.ram), share: false },
          incomingState: path.join(template.dir, T.state),
        },
      });
      return sandbox;
    });
  }

  async coldBoot(source: TemplateSource, options: ResumeOptions): Promise<Sandbox> {
    const guest = await this.#guest(source);
    const dir = path.join(this.#home, 'qemu', 'cold-bundles', source.sourceHash.slice(0, 16));
    await fs.mkdir(dir, { recursive: true });
    const bundleDisk = path.join(dir, T.bundle);
    if (!(await fs.access(bundleDisk).then(() => true, () => false))) await writeSourceImage(source.sourceDir, bundleDisk);
    const { sandbox } = await this.#start({
      templateId: 'cold',
      guest,
      timeoutMs: this.#bootTimeoutMs,
      boot: true,
      overlayOf: guest.rootfsImg,
      network: source.network === 'egress' ? { egress: true } : undefined,
      limits: guestLimits(options.memoryMb),
      spec: { disk: '', bundleDisk },
    });
    return sandbox;
  }

  async close(): Promise<void> {
    await this.#sandboxes.close();
    await this.#slots.close();
  }

  /** Cached: read on every restore otherwise. Templates from before NIC support have no file and no NIC. */
  #templateMeta(template: Template): Promise<QemuTemplateMeta> {
    let p = this.#meta.get(template.id);
    if (!p) {
      p = fs.readFile(path.join(template.dir, T.meta), 'utf8').then(
        (raw) => ({ nic: (JSON.parse(raw) as Partial<QemuTemplateMeta>).nic === true }),
        (err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return { nic: false };
          throw err;
        },
      );
      this.#meta.set(template.id, p);
      p.catch(() => this.#meta.delete(template.id));
    }
    return p;
  }

  #sandboxRoot(): string {
    return path.join(this.#home, 'qemu', 'sandboxes');
  }

  /** Start QEMU (boot or restore) in a fresh state directory and wait for envd's hello. */
  async #start(options: {
    templateId: string;
    guest: GuestImage;
    timeoutMs: number;
    /** A fresh boot (not a restore): arm the early-stall watchdog. */
    boot?: boolean;
    overlayOf?: string;
    /** Absent: no NIC. Else a slot (with its tap) for the VM, egress granted or not. */
    network?: { egress: boolean };
    limits?: GuestLimits;
    spec: Pick<VmSpec, 'disk' | 'bundleDisk' | 'ram' | 'incomingState'>;
  }): Promise<Started> {
    return this.#sandboxes.start(async ({ cleanup, onDestroyed }) => {
      const id = `sfq-${crypto.randomBytes(6).toString('hex')}`;
      const stateDir = path.join(this.#sandboxRoot(), id);
      cleanup.defer('state directory', () => fs.rm(stateDir, { recursive: true, force: true }));
      await fs.mkdir(stateDir, { recursive: true });
      let slot: NetworkSlot | undefined;
      if (options.network) {
        const claimed = await this.#slots.acquire({ egress: options.network.egress });
        // Unwound after the VM's kill: QEMU has closed the tap, the slot is free for the next VM.
        cleanup.defer('network slot', () => this.#slots.release(claimed));
        slot = claimed;
      }
      let disk = options.spec.disk;
      if (options.overlayOf) {
        // Copy-on-write: this sandbox's writes land in its own qcow2 and die with it.
        disk = path.join(stateDir, 'overlay.qcow2');
        await qemuImgOverlay(options.overlayOf, options.overlayOf.endsWith('.qcow2') ? 'qcow2' : 'raw', disk);
      }
      const vm = await traced('qemu start', () =>
        QemuVm.start({ ...options.spec, disk, accel: this.platform, guest: options.guest, stateDir, memoryMb: GUEST_MEMORY_MB, ...(slot ? { nic: { nsPath: slot.nsPath } } : {}) }),
      );
      cleanup.defer('QEMU', () => vm.kill());
      const died = vm.exited.then((code): never => {
        throw new Error(`qemu exited with code ${code} before envd answered`);
      });
      died.catch(() => {});
      const watchdog = options.boot ? bootWatchdog(vm.consoleLog, BOOT_STALL_MS) : undefined;
      const abort = watchdog ? Promise.race([died, watchdog.stalled]) : died;
      abort.catch(() => {});
      const { connection, hello } = await traced('envd connect', () => connectEnvd(vm.envdSocket, options.timeoutMs, abort, options.limits))
        .finally(() => watchdog?.stop())
        .catch(async (err: Error) => {
          throw new Error(`${err.message}; console: ${await logTail(vm.consoleLog)}`);
        });
      if (!options.boot) assertRestoredCleanly(hello);
      const sandbox = new QemuSandbox({ id, templateId: options.templateId, vm, connection, exited: vm.exited, cleanup, onDestroyed, rehearseTimeoutMs: 60_000 });
      return { sandbox, hello };
    });
  }
}

function guestLimits(memoryMb: number): GuestLimits {
  return { memoryMb: memoryMb < GUEST_MEMORY_MB ? memoryMb : null };
}

async function qemuImgOverlay(backing: string, backingFormat: 'raw' | 'qcow2', overlay: string): Promise<void> {
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', backing, '-F', backingFormat, overlay], { stdin: 'ignore' });
}

/** Bytes actually on disk (the RAM file is sparse: only touched pages count). */
async function allocatedBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await fs.readdir(dir)) {
    const st = await fs.stat(path.join(dir, entry));
    if (st.isFile()) total += st.blocks * 512;
  }
  return total;
}
