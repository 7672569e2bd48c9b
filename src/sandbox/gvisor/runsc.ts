import { execa, type ResultPromise } from 'execa';

/**
 * Thin wrapper over the `runsc` CLI. Every call uses snapfn's own `--root`
 * state directory, so it never sees or touches other runsc users' containers.
 */
export class Runsc {
  readonly stateRoot: string;
  readonly #flags: string[];

  constructor(options: { stateRoot: string; ignoreCgroups?: boolean; debugLogDir?: string }) {
    this.stateRoot = options.stateRoot;
    this.#flags = [
      `--root=${options.stateRoot}`,
      '--network=sandbox',
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
   * Starts `runsc run` (or `restore`) in the foreground as our child, so the
   * container dies with it and we reap it ourselves (with -detach the sandbox
   * is reparented to PID 1 and `delete` waits ~1.7 s for it).
   *
   * Two host quirks are handled here:
   * - runsc refuses `--network=sandbox` when /proc/sys/net/core/rmem_default
   *   is visible ("cannot run with network enabled in root network
   *   namespace") even inside our own netns on this kernel; a tmpfs over
   *   /proc/sys/net in a private mount namespace around runsc avoids it.
   * - stdio: never /dev/null (runsc chowns it machine-wide) and never a pipe
   *   we read to EOF (it hangs); stdin is an idle pipe, stdout/stderr a file.
   */
  spawn(args: string[], logFile: string): { process: ResultPromise; exited: Promise<number> } {
    const script = 'mount -t tmpfs -o size=4k snapfn-netfix /proc/sys/net && exec "$0" "$@"';
    const child = execa('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'runsc', ...this.#flags, ...args], {
      stdin: 'pipe',
      stdout: { file: logFile, append: true },
      stderr: { file: logFile, append: true },
      reject: false,
    });
    const exited = child.then((r) => r.exitCode ?? -1);
    return { process: child, exited };
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
    await execa('runsc', [...this.#flags, 'kill', id, signal], { stdin: 'pipe', reject: false });
  }

  /** Kills and removes the container; never throws (the container may already be gone). */
  async forceDelete(id: string): Promise<void> {
    await execa('runsc', [...this.#flags, 'delete', '--force', id], { stdin: 'pipe', reject: false });
  }

  async list(): Promise<string[]> {
    const r = await execa('runsc', [`--root=${this.stateRoot}`, 'list', '--quiet'], { stdin: 'pipe', reject: false });
    return r.exitCode === 0 ? String(r.stdout).split('\n').filter(Boolean) : [];
  }
}
