import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { TemplateBuildError } from '../../errors.ts';
import type { ProgressFn, ResumeOptions, Sandbox, SandboxDriver, Template, TemplateSource } from '../driver.ts';
import { EnvdListener } from '../envd/envd-listener.ts';
import { assertRestoredCleanly, type EnvdHello } from '../envd/envd-connection.ts';
import { NetworkSlotPool } from '../network/network-slot-pool.ts';
import { ensureRootfs, type RootfsFlavor } from '../rootfs/base-rootfs.ts';
import { LiveSandboxes } from '../lifecycle/live-sandboxes.ts';
import { logTail } from '../lifecycle/log-tail.ts';
import { traced } from '../lifecycle/spans.ts';
import { buildTemplate } from '../lifecycle/template-builder.ts';
import { copySourceDir } from '../template/function-source.ts';
import { TemplateStore } from '../template/template-store.ts';
import { GvisorSandbox, stopContainer } from './gvisor-sandbox.ts';
import { NODE_FLAGS, sandboxMemoryLimitBytes, sandboxSpec } from './oci-spec.ts';
import { Runsc } from './runsc.ts';
import { detectRunsc, type RunscInfo } from './runsc-version.ts';
import type { LaunchedProcess } from './runsc-launcher.ts';
import { SandboxCgroup } from './sandbox-cgroup.ts';
import { SentryProcess } from './sentry-process.ts';

export interface GvisorDriverOptions {
  /** SNAPFN_HOME: rootfs, templates and runsc state live below it. */
  home: string;
  /** Network slots created up front. */
  networkSlots: number;
  /** How long envd may take to say hello after boot or restore. */
  envdTimeoutMs?: number;
  /** Memory limits through cgroups (on by default). */
  cgroups?: boolean;
  /** SNAPFN_MAX_BODY_BYTES: a sandbox's memory limit has room for a body this large (oci-spec.ts). */
  maxBodyBytes?: number;
}

const BUILD_MEMORY_MB = 1024;
const PIDS_LIMIT = 512;

interface Started {
  sandbox: GvisorSandbox;
  hello: EnvdHello;
  stateDir: string;
}

interface StartOptions {
  bundleDir: string;
  imageDir?: string;
  templateId: string;
  memoryMb: number;
  network: TemplateSource['network'];
  rootfs: RootfsFlavor;
}

export class GvisorDriver implements SandboxDriver {
  readonly name = 'gvisor';
  /** runsc's default platform on this host (ptrace on 0.0~20221219, systrap on 0.0~20240729): detected, never assumed. */
  readonly platform: string;
  readonly runscVersion: string;
  // 2: sandboxes are started by the RunscLauncher, whose stdio a snapshot records.
  // 3: `network: 'none'` runs with runsc --network=none (no slot).
  // 4: /fn is the whole function directory; envd reads .snapfn/function.json.
  readonly version = 'gvisor-4';
  readonly #home: string;
  readonly #runsc: Runsc;
  readonly #templates: TemplateStore;
  readonly #slots: NetworkSlotPool;
  readonly #sandboxes = new LiveSandboxes<GvisorSandbox>();
  /** The runsc processes of those starts, until envd is up: close() kills them (nobody waits for their sandbox any more). */
  readonly #launching = new Set<LaunchedProcess>();
  #closing = false;
  readonly #envdTimeoutMs: number;
  readonly #cgroups: boolean;
  readonly #maxBodyBytes: number | undefined;

  private constructor(options: GvisorDriverOptions, slots: NetworkSlotPool, runsc: RunscInfo) {
    this.platform = runsc.platform;
    this.runscVersion = runsc.version;
    this.#home = options.home;
    this.#slots = slots;
    this.#envdTimeoutMs = options.envdTimeoutMs ?? 20_000;
    this.#cgroups = options.cgroups ?? true;
    this.#maxBodyBytes = options.maxBodyBytes;
    this.#runsc = new Runsc({ stateRoot: path.join(options.home, 'gvisor', 'runsc-state'), ignoreCgroups: !this.#cgroups });
    this.#templates = new TemplateStore(path.join(options.home, 'templates'));
  }

  static async create(options: GvisorDriverOptions): Promise<GvisorDriver> {
    const [slots, runsc] = await Promise.all([NetworkSlotPool.create({ size: options.networkSlots }), detectRunsc()]);
    const driver = new GvisorDriver(options, slots, runsc);
    await fs.mkdir(path.join(options.home, 'gvisor', 'sandboxes'), { recursive: true });
    await driver.#reapOrphans();
    return driver;
  }

  liveSandboxes(): number {
    return this.#sandboxes.size;
  }

  networkStats() {
    return this.#slots.stats();
  }

  async templateIdOf(source: TemplateSource): Promise<string> {
    const rootfs = await ensureRootfs(this.#home, source.rootfs ?? 'base');
    // A checkpoint image is only promised to restore on the runsc that wrote it.
    return TemplateStore.templateId([this.name, this.version, this.runscVersion, this.platform, rootfs.hash, source.sourceHash, source.network, NODE_FLAGS.join(' ')]);
  }

  loadTemplate(id: string): Promise<Template | undefined> {
    return this.#templates.load(id);
  }

  buildTemplate(source: TemplateSource, onProgress?: ProgressFn): Promise<Template> {
    return buildTemplate<GvisorSandbox>(
      { name: this.name, templates: this.#templates, templateIdOf: (s) => this.templateIdOf(s) },
      source,
      {
        rootfsHome: this.#home,
        prepare: (tmp) => copySourceDir(source.sourceDir, path.join(tmp, 'bundle')),
        boot: (tmp, templateId) =>
          this.#start('run', { bundleDir: path.join(tmp, 'bundle'), templateId, memoryMb: BUILD_MEMORY_MB, network: source.network, rootfs: source.rootfs ?? 'base' }).catch((err) => {
            throw new TemplateBuildError(`the sandbox did not boot: ${(err as Error).message}`, { cause: err });
          }),
        checkpoint: async (sandbox, tmp) => {
          const imageDir = path.join(tmp, 'image');
          await fs.mkdir(imageDir);
          await this.#runsc.checkpoint(sandbox.id, imageDir).catch((err) => {
            throw new TemplateBuildError(`runsc checkpoint failed: ${(err as Error).message.split('\n')[0]}`, { cause: err });
          });
        },
        imageBytes: (tmp) => dirSize(path.join(tmp, 'image')),
      },
      onProgress,
    );
  }

  async resume(template: Template, options: ResumeOptions): Promise<Sandbox> {
    return traced('restore', async () => {
      const { sandbox } = await this.#start('restore', {
        bundleDir: path.join(template.dir, 'bundle'),
        imageDir: path.join(template.dir, 'image'),
        templateId: template.id,
        memoryMb: options.memoryMb,
        network: options.network,
        rootfs: template.rootfs ?? 'base',
      });
      return sandbox;
    });
  }

  async coldBoot(source: TemplateSource, options: ResumeOptions): Promise<Sandbox> {
    const bundleDir = path.join(this.#home, 'gvisor', 'cold-bundles', source.sourceHash.slice(0, 16));
    if (!(await fs.access(bundleDir).then(() => true, () => false))) await copySourceDir(source.sourceDir, bundleDir);
    const { sandbox } = await this.#start('run', { bundleDir, templateId: 'cold', memoryMb: options.memoryMb, network: options.network, rootfs: source.rootfs ?? 'base' });
    return sandbox;
  }

  async close(): Promise<void> {
    // A sandbox still starting would come up after the destroys below and
    // outlive the process (a second Ctrl-C during a restore left its
    // runsc-sandbox behind): cut the starts short (a restore on a loaded host
    // takes seconds), let them clean up, then destroy all.
    this.#closing = true;
    for (const launched of this.#launching) launched.kill('SIGKILL');
    await this.#sandboxes.close();
    await this.#runsc.close();
    await this.#slots.close();
  }

  /** Boot (`run`) or restore a container and wait for its envd to say hello. */
  #start(kind: 'run' | 'restore', options: StartOptions): Promise<Started> {
    return this.#sandboxes.start(async ({ cleanup, onDestroyed }) => {
      const id = `sfn-${crypto.randomBytes(6).toString('hex')}`;
      const stateDir = path.join(this.#home, 'gvisor', 'sandboxes', id);
      const socketDir = path.join(stateDir, 'sock');
      cleanup.defer('state directory', () => fs.rm(stateDir, { recursive: true, force: true }));
      await fs.mkdir(socketDir, { recursive: true });
      // A function without network needs no slot: runsc gives it an empty
      // namespace with loopback only, and there is no veth to reset afterwards.
      const [rootfs, slot] = await Promise.allSettled([
        ensureRootfs(this.#home, options.rootfs),
        options.network === 'none' ? undefined : this.#slots.acquire({ egress: options.network === 'egress' }),
      ]);
      if (slot.status === 'fulfilled' && slot.value) {
        const claimed = slot.value;
        cleanup.defer('network slot', () => this.#slots.release(claimed));
      }
      if (rootfs.status === 'rejected') throw rootfs.reason;
      if (slot.status === 'rejected') throw slot.reason;
      const memoryBytes = sandboxMemoryLimitBytes(options.memoryMb, this.#maxBodyBytes);
      let cgroup: SandboxCgroup | undefined;
      if (this.#cgroups) {
        const created = await SandboxCgroup.create(`/snapfn/${id}`, { memoryBytes, pids: PIDS_LIMIT });
        // Best effort: a cgroup that will not go yet is removed by the next start's orphan reaping.
        if (created) cleanup.defer('cgroup', () => created.remove().catch(() => {}));
        cgroup = created;
      }
      const spec = sandboxSpec({
        rootfsDir: rootfs.value.dir,
        socketDir,
        bundleDir: options.bundleDir,
        ...(slot.value ? { netnsPath: slot.value.nsPath } : {}),
        memoryMb: options.memoryMb,
        ...(this.#maxBodyBytes ? { maxBodyBytes: this.#maxBodyBytes } : {}),
        pidsLimit: PIDS_LIMIT,
        hostname: 'snapfn',
        ...(this.#cgroups ? { cgroupsPath: `/snapfn/${id}` } : {}),
      });
      await fs.writeFile(path.join(stateDir, 'config.json'), JSON.stringify(spec));
      const listener = await EnvdListener.listen(path.join(socketDir, 'envd.sock'));
      cleanup.defer('envd listener', () => listener.close());
      const args = kind === 'run' ? ['run', `--bundle=${stateDir}`, id] : ['restore', `--bundle=${stateDir}`, `--image-path=${options.imageDir}`, id];
      const spawned = await this.#runsc.spawn(args, path.join(stateDir, 'runsc.log'), slot.value ? 'sandbox' : 'none');
      this.#launching.add(spawned);
      cleanup.defer('launch', () => this.#launching.delete(spawned));
      let sentry: SentryProcess | undefined;
      cleanup.defer('runsc container', () => stopContainer(this.#runsc, id, spawned, sentry));
      if (this.#closing) spawned.kill('SIGKILL');
      const died = spawned.exited.then(async (code): Promise<never> => {
        throw new Error(`runsc ${kind} exited with code ${code} before envd connected: ${await logTail(path.join(stateDir, 'runsc.log'))}`);
      });
      died.catch(() => {});
      const { connection, hello } = await traced('envd connect', () => listener.accept(this.#envdTimeoutMs, died));
      assertRestoredCleanly(hello);
      // envd only redials if this connection drops, and then the sandbox is
      // treated as dead anyway: the listener has done its job.
      await listener.close();
      sentry = await SentryProcess.find(this.#runsc.stateRoot, id);
      const sandbox = new GvisorSandbox({ id, templateId: options.templateId, runsc: this.#runsc, sentry, connection, exited: spawned.exited, cleanup, onDestroyed, cgroup, memoryMb: options.memoryMb });
      this.#launching.delete(spawned);
      return { sandbox, hello, stateDir };
    });
  }

  /** Containers left in our runsc state dir by a previous process that died. */
  async #reapOrphans(): Promise<void> {
    for (const id of await this.#runsc.list()) {
      // A keepWarm sandbox of a process that died while it was paused is
      // still frozen: runsc delete would wait forever for its answer. Thawing
      // and killing it through its Sentry first makes the delete quick.
      await (await SentryProcess.find(this.#runsc.stateRoot, id))?.kill();
      await this.#runsc.forceDelete(id);
    }
    const dir = path.join(this.#home, 'gvisor', 'sandboxes');
    for (const entry of await fs.readdir(dir)) {
      // Our own memory cgroup outlives its sandbox (sandbox-cgroup.ts): runsc never removes it.
      await SandboxCgroup.removeStale(`/snapfn/${entry}`).catch(() => {});
      await fs.rm(path.join(dir, entry), { recursive: true, force: true });
    }
  }
}

async function dirSize(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    total += entry.isDirectory() ? await dirSize(p) : (await fs.stat(p)).size;
  }
  return total;
}
