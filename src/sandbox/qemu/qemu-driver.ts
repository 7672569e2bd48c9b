import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { trace } from '@opentelemetry/api';
import { execa } from 'execa';
import { TemplateBuildError } from '../../errors.ts';
import type { ProgressFn, ResumeOptions, Sandbox, SandboxDriver, Template, TemplateSource } from '../driver.ts';
import type { EnvdHello } from '../envd/envd-connection.ts';
import { ensureRootfs } from '../rootfs/base-rootfs.ts';
import { TemplateStore } from '../template/template-store.ts';
import { qemuAccel, type QemuAccel } from './accel.ts';
import { bootWatchdog } from './boot-watchdog.ts';
import { writeBundleDisk } from './bundle-disk.ts';
import { connectEnvd } from './envd-port.ts';
import { ensureGuestImage, type GuestImage } from './guest-image.ts';
import { QemuSandbox } from './qemu-sandbox.ts';
import { QemuVm, type VmSpec } from './qemu-vm.ts';

const tracer = trace.getTracer('snapfn');

export interface QemuDriverOptions {
  home: string;
  /** Default: hardware KVM when detected, else TCG (see accel.ts). */
  accel?: QemuAccel;
  /** Boot to envd hello (TCG boots take seconds, node's start-up ~8x slower). */
  bootTimeoutMs?: number;
  /** Restore to envd hello. */
  resumeTimeoutMs?: number;
}

/**
 * Guest RAM of every template. It is fixed by the snapshot (the RAM file is
 * the memory image), so a function's memoryMb cannot grow it at resume.
 */
const GUEST_MEMORY_MB = 256;

/** Boots that do not reach userspace in BOOT_STALL_MS are killed and retried. */
const BOOT_ATTEMPTS = 3;
const BOOT_STALL_MS = 20_000;

/** Files of a template directory. */
const T = { bundle: 'bundle.img', disk: 'disk.qcow2', ram: 'ram', state: 'vmstate' } as const;

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
  readonly #live = new Set<QemuSandbox>();
  readonly #bootTimeoutMs: number;
  readonly #resumeTimeoutMs: number;

  private constructor(options: QemuDriverOptions) {
    this.#home = options.home;
    this.platform = options.accel ?? qemuAccel();
    this.#bootTimeoutMs = options.bootTimeoutMs ?? 60_000;
    this.#resumeTimeoutMs = options.resumeTimeoutMs ?? 20_000;
    this.#templates = new TemplateStore(path.join(options.home, 'templates'));
  }

  static async create(options: QemuDriverOptions): Promise<QemuDriver> {
    const r = await execa('qemu-system-x86_64', ['--version'], { reject: false, stdin: 'ignore' });
    if (r.exitCode !== 0) throw new Error('qemu-system-x86_64 is not installed (apt-get install qemu-system-x86 qemu-utils)');
    const driver = new QemuDriver(options);
    await fs.mkdir(driver.#sandboxRoot(), { recursive: true });
    // Sandboxes of a previous process are unusable (their QEMU died with it
    // or is orphaned): remove their overlays and sockets.
    for (const entry of await fs.readdir(driver.#sandboxRoot())) await fs.rm(path.join(driver.#sandboxRoot(), entry), { recursive: true, force: true });
    process.stderr.write(`snapfn: qemu driver using accel=${driver.platform}${driver.platform === 'tcg' ? ' (software emulation: expect slow boots and handlers)' : ''}\n`);
    return driver;
  }

  liveSandboxes(): number {
    return this.#live.size;
  }

  async #guest(source: Pick<TemplateSource, 'rootfs'>): Promise<GuestImage> {
    if ((source.rootfs ?? 'base') !== 'base') throw new TemplateBuildError('the qemu driver only has the base root filesystem so far');
    return ensureGuestImage(this.#home, await ensureRootfs(this.#home, 'base'));
  }

  async templateIdOf(source: TemplateSource): Promise<string> {
    const guest = await this.#guest(source);
    const bundle = await fs.readFile(source.bundleFile);
    // The accelerator is part of the id: CPU state saved under TCG (-cpu max)
    // does not load into a KVM guest (-cpu host) and vice versa.
    return TemplateStore.templateId([this.name, this.version, this.platform, guest.hash, bundle, source.network, String(GUEST_MEMORY_MB)]);
  }

  loadTemplate(id: string): Promise<Template | undefined> {
    return this.#templates.load(id);
  }

  async buildTemplate(source: TemplateSource, onProgress: ProgressFn = () => {}): Promise<Template> {
    if (source.network !== 'none') throw new TemplateBuildError(`network '${source.network}' is not supported by the qemu driver yet (only 'none')`);
    onProgress('rootfs');
    const guest = await this.#guest(source);
    const id = await this.templateIdOf(source);
    return this.#templates.getOrBuild(id, async (tmp) => {
      const started = performance.now();
      await writeBundleDisk(source.bundleFile, path.join(tmp, T.bundle));
      onProgress('boot', { templateId: id });
      const boot = await this.#bootWithRetry(guest, tmp, id);
      const { sandbox, hello } = boot;
      try {
        if (hello.loadError) throw new TemplateBuildError(`${hello.loadError.code}: ${hello.loadError.message}`);
        onProgress('warm');
        await sandbox.warmup();
        onProgress('checkpoint');
        await sandbox.hangUpForSnapshot();
        await sandbox.vm.saveState(path.join(tmp, T.state)).catch((err) => {
          throw new TemplateBuildError(`saving the VM state failed: ${(err as Error).message}`, { cause: err });
        });
        const imageBytes = await allocatedBytes(tmp);
        onProgress('done', { templateId: id, imageBytes });
        return { driver: this.name, handlerConfig: hello.handlerConfig, buildMs: Math.round(performance.now() - started), imageBytes };
      } finally {
        await sandbox.destroy();
      }
    });
  }

  /**
   * TCG boots occasionally hang early (seen ~3 in 40 with `quiet`): a boot
   * that does not reach envd's hello in time is killed and tried once more.
   */
  async #bootWithRetry(guest: GuestImage, templateDir: string, templateId: string): Promise<Started> {
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
          spec: { disk: path.join(templateDir, T.disk), bundleDisk: path.join(templateDir, T.bundle), ram: { file: path.join(templateDir, T.ram), share: true } },
        });
      } catch (err) {
        lastError = err;
        process.stderr.write(`snapfn: qemu boot attempt ${attempt}/${BOOT_ATTEMPTS} for template ${templateId} failed: ${(err as Error).message.slice(0, 300)}\n`);
      }
    }
    throw new TemplateBuildError(`the guest did not boot: ${(lastError as Error).message}`, { cause: lastError });
  }

  async resume(template: Template, _options: ResumeOptions): Promise<Sandbox> {
    return tracer.startActiveSpan('restore', async (span) => {
      try {
        const guest = await this.#guest(template);
        const { sandbox } = await this.#start({
          templateId: template.id,
          guest,
          timeoutMs: this.#resumeTimeoutMs,
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
      } finally {
        span.end();
      }
    });
  }

  async coldBoot(source: TemplateSource, _options: ResumeOptions): Promise<Sandbox> {
    const guest = await this.#guest(source);
    const dir = path.join(this.#home, 'qemu', 'cold-bundles', crypto.createHash('sha256').update(await fs.readFile(source.bundleFile)).digest('hex').slice(0, 16));
    await fs.mkdir(dir, { recursive: true });
    const bundleDisk = path.join(dir, T.bundle);
    if (!(await fs.access(bundleDisk).then(() => true, () => false))) await writeBundleDisk(source.bundleFile, bundleDisk);
    const { sandbox } = await this.#start({ templateId: 'cold', guest, timeoutMs: this.#bootTimeoutMs, boot: true, overlayOf: guest.rootfsImg, spec: { disk: '', bundleDisk } });
    return sandbox;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#live].map((s) => s.destroy()));
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
    spec: Pick<VmSpec, 'disk' | 'bundleDisk' | 'ram' | 'incomingState'>;
  }): Promise<Started> {
    const id = `sfq-${crypto.randomBytes(6).toString('hex')}`;
    const stateDir = path.join(this.#sandboxRoot(), id);
    await fs.mkdir(stateDir, { recursive: true });
    let vm: QemuVm | undefined;
    try {
      let disk = options.spec.disk;
      if (options.overlayOf) {
        // Copy-on-write: this sandbox's writes land in its own qcow2 and die with it.
        disk = path.join(stateDir, 'overlay.qcow2');
        await qemuImgOverlay(options.overlayOf, options.overlayOf.endsWith('.qcow2') ? 'qcow2' : 'raw', disk);
      }
      vm = await tracer.startActiveSpan('qemu start', (span) =>
        QemuVm.start({ ...options.spec, disk, accel: this.platform, guest: options.guest, stateDir, memoryMb: GUEST_MEMORY_MB }).finally(() => span.end()),
      );
      const died = vm.exited.then((code): never => {
        throw new Error(`qemu exited with code ${code} before envd answered`);
      });
      died.catch(() => {});
      const watchdog = options.boot ? bootWatchdog(vm.consoleLog, BOOT_STALL_MS) : undefined;
      const abort = watchdog ? Promise.race([died, watchdog.stalled]) : died;
      abort.catch(() => {});
      const { connection, hello } = await tracer
        .startActiveSpan('envd connect', (span) => connectEnvd(vm!.envdSocket, options.timeoutMs, abort).finally(() => span.end()))
        .finally(() => watchdog?.stop())
        .catch(async (err: Error) => {
          throw new Error(`${err.message}; console: ${await logTail(vm!.consoleLog)}`);
        });
      const sandbox = new QemuSandbox({ id, templateId: options.templateId, vm, connection, stateDir, onDestroyed: (s) => this.#live.delete(s) });
      this.#live.add(sandbox);
      return { sandbox, hello };
    } catch (err) {
      await vm?.kill();
      await fs.rm(stateDir, { recursive: true, force: true });
      throw err;
    }
  }
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

async function logTail(file: string): Promise<string> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-3).join(' | ').slice(0, 600) || '(no output)';
}
