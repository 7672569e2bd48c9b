import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { LauncherError, RunscLauncher, type LaunchedProcess } from './runsc-launcher.ts';

/**
 * `sandbox`: gVisor's netstack on the network slot's veth. `none`: loopback
 * only, in an empty namespace runsc creates (no slot, nothing to reset).
 */
export type RunscNetwork = 'sandbox' | 'none';

/**
 * Thin wrapper over the `runsc` CLI. Every call uses snapfn's own `--root`
 * state directory, so it never sees or touches other runsc users' containers.
 */
export class Runsc {
  readonly stateRoot: string;
  readonly #flags: string[];
  #launcher: Promise<RunscLauncher> | undefined;
  #closed = false;

  constructor(options: { stateRoot: string; ignoreCgroups?: boolean; debugLogDir?: string }) {
    this.stateRoot = options.stateRoot;
    this.#flags = [
      `--root=${options.stateRoot}`,
      // envd dials a host Unix socket that is bind-mounted into the sandbox.
      '--host-uds=open',
      // Copy-on-write root: writes stay in this sandbox's memory, the
      // template's root filesystem on the host is never modified.
      '--overlay2=root:memory',
      ...(options.ignoreCgroups ? ['--ignore-cgroups'] : []),
      ...(options.debugLogDir ? [`--debug`, `--debug-log=${options.debugLogDir}/`] : []),
    ];
  }

  /**
   * Starts `runsc run` (or `restore`) in the foreground, so the container
   * dies with it and we reap it ourselves (with -detach the sandbox is
   * reparented to PID 1 and `delete` waits ~1.7 s for it). It is started by
   * the RunscLauncher, never forked from snapfn itself.
   */
  async spawn(args: string[], logFile: string, network: RunscNetwork): Promise<LaunchedProcess> {
    if (this.#closed) throw new LauncherError('runsc is closed');
    const launcher = await this.#liveLauncher();
    return launcher.launch('runsc', [...this.#flags, `--network=${network}`, ...args], logFile);
  }

  /** Started on first use, and again if it died (a failed start is retried on the next call). */
  async #liveLauncher(): Promise<RunscLauncher> {
    const current = this.#launcher;
    const launcher = await current?.catch(() => undefined);
    if (launcher?.alive) return launcher;
    if (this.#launcher === current) this.#launcher = RunscLauncher.start();
    return this.#launcher!;
  }

  /** Stops the launcher (the caller has destroyed the sandboxes first). */
  async close(): Promise<void> {
    this.#closed = true;
    const launcher = await this.#launcher?.catch(() => undefined);
    await launcher?.close();
  }

  async checkpoint(id: string, imageDir: string): Promise<void> {
    await execa('runsc', [...this.#flags, 'checkpoint', `--image-path=${imageDir}`, id], { stdin: 'pipe' });
  }

  async pause(id: string): Promise<void> {
    await execa('runsc', [...this.#flags, 'pause', id], { stdin: 'pipe' });
  }

  async resume(id: string): Promise<void> {
    await execa('runsc', [...this.#flags, 'resume', id], { stdin: 'pipe' });
  }

  /** Never throws: the container may already be gone. */
  async kill(id: string, signal = 'KILL'): Promise<void> {
    await execa('runsc', [...this.#flags, 'kill', id, signal], { stdin: 'pipe', reject: false, timeout: 30_000 });
  }

  /**
   * Kills and removes the container; never throws (the container may already
   * be gone). Bounded: a sandbox that never answers must not hang the caller.
   */
  async forceDelete(id: string): Promise<void> {
    await execa('runsc', [...this.#flags, 'delete', '--force', id], { stdin: 'pipe', reject: false, timeout: 30_000 });
  }

  /** Whether runsc still has state for the container (the foreground runsc removes it when its sandbox ends). */
  async hasState(id: string): Promise<boolean> {
    return fs.access(path.join(this.stateRoot, `${id}_sandbox:${id}.state`)).then(
      () => true,
      () => false,
    );
  }

  async list(): Promise<string[]> {
    const r = await execa('runsc', [`--root=${this.stateRoot}`, 'list', '--quiet'], { stdin: 'pipe', reject: false });
    return r.exitCode === 0 ? String(r.stdout).split('\n').filter(Boolean) : [];
  }
}
