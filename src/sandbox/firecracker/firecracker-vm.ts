import fs from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { logTail } from '../lifecycle/log-tail.ts';
import { FirecrackerApi } from './api-client.ts';
import { FIXED_DIR } from './guest-layout.ts';

export interface VmLaunch {
  binary: string;
  /** Firecracker instance id: 1-64 of [A-Za-z0-9_-]. */
  id: string;
  /** This VM's own directory: API socket, vsock socket, log. */
  stateDir: string;
  /** The slot's network namespace (the tap lives there). */
  netns: string;
  /** This sandbox's files, bind-mounted over the fixed paths of guest-layout.ts. */
  binds: Array<{ source: string; target: string }>;
  /** How long the API socket may take to answer. Default 5 s. */
  readyTimeoutMs?: number;
}

// Runs inside `ip netns exec`, which already gives the command a private
// (slave) mount namespace: the binds are seen by this Firecracker only.
const LAUNCH_SCRIPT = 'while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 97; shift 2; done; shift; exec "$@"';

/**
 * One jailer-less Firecracker process in a slot's network namespace, with
 * its API client. Without the jailer there is no chroot, seccomp is still
 * Firecracker's built-in filter, and the process runs as root: acceptable
 * for a single-tenant node, not for hostile multi-tenant code
 * (docs/firecracker.md lists what the jailer would add).
 */
export class FirecrackerVm {
  readonly api: FirecrackerApi;
  readonly exited: Promise<number>;
  /** Rejects when the process exits before kill() was called. */
  readonly died: Promise<never>;
  readonly logFile: string;
  /** Host side of the vsock device; guest-initiated connections to port P arrive at `${vsockUds}_${P}`. */
  readonly vsockUds: string;
  readonly #child: ResultPromise;
  #killed = false;

  private constructor(launch: VmLaunch, child: ResultPromise) {
    this.#child = child;
    this.logFile = path.join(launch.stateDir, 'firecracker.log');
    this.vsockUds = path.join(launch.stateDir, 'v.sock');
    this.api = new FirecrackerApi(path.join(launch.stateDir, 'api.sock'));
    this.exited = child.then((r) => r.exitCode ?? -1);
    this.died = this.exited.then(async (code): Promise<never> => {
      if (this.#killed) return new Promise<never>(() => {});
      throw new Error(`firecracker exited with code ${code}: ${await logTail(this.logFile)}`);
    });
    this.died.catch(() => {});
  }

  static async start(launch: VmLaunch): Promise<FirecrackerVm> {
    await ensureFixedTargets(launch.binds.map((b) => b.target));
    const apiSocket = path.join(launch.stateDir, 'api.sock');
    await fs.rm(apiSocket, { force: true });
    const logFile = path.join(launch.stateDir, 'firecracker.log');
    const bindArgs = launch.binds.flatMap((b) => [b.source, b.target]);
    const child = execa('ip', ['netns', 'exec', launch.netns, 'sh', '-c', LAUNCH_SCRIPT, 'sh', ...bindArgs, '--', launch.binary, '--api-sock', apiSocket, '--id', launch.id], {
      stdin: 'ignore',
      stdout: { file: logFile, append: true },
      stderr: { file: logFile, append: true },
      reject: false,
    });
    const vm = new FirecrackerVm(launch, child);
    try {
      await vm.api.waitUntilReady(launch.readyTimeoutMs ?? 5000, vm.died);
    } catch (err) {
      await vm.kill();
      throw err;
    }
    return vm;
  }

  /** Idempotent. The guest gets no shutdown: sandboxes are disposable. */
  async kill(): Promise<void> {
    this.#killed = true;
    this.#child.kill('SIGKILL');
    await this.exited;
  }
}

/** Bind targets must exist; empty placeholder files on the host are enough. */
async function ensureFixedTargets(targets: string[]): Promise<void> {
  await fs.mkdir(FIXED_DIR, { recursive: true });
  for (const target of targets) {
    const handle = await fs.open(target, 'a');
    await handle.close();
  }
}

