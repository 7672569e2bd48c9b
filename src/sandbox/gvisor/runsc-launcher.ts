import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CHILD_SCRIPT = fileURLToPath(new URL('./runsc-launcher-child.mjs', import.meta.url));

/** One process the launcher started for us. */
export interface LaunchedProcess {
  /** Exit code (-1 for a signal, a failed start or a lost launcher). */
  readonly exited: Promise<number>;
  kill(signal?: NodeJS.Signals): void;
}

export class LauncherError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'LauncherError';
  }
}

interface Pending {
  resolveExit: (code: number) => void;
}

/**
 * Starts `runsc run/restore` from a small helper process instead of from
 * snapfn itself. fork() copies the parent's page tables and blocks its event
 * loop until the child has exec'd: 10-20 ms for a gateway with a few hundred
 * MB resident on this host, during which no other request moves. The helper
 * is small, so its forks are cheap, and they never stall the gateway.
 */
export class RunscLauncher {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, Pending>();
  readonly #gone: Promise<void>;
  #nextId = 1;
  #closed = false;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (msg: { op?: string; id?: number; code?: number }) => {
      if (msg.op !== 'exit' || msg.id === undefined) return;
      const pending = this.#pending.get(msg.id);
      this.#pending.delete(msg.id);
      pending?.resolveExit(msg.code ?? -1);
    });
    this.#gone = new Promise((resolve) => {
      child.once('exit', () => {
        this.#closed = true;
        // The processes it started may outlive it; the caller kills
        // sandboxes by their Sentry pid, which does not need the launcher.
        for (const pending of this.#pending.values()) pending.resolveExit(-1);
        this.#pending.clear();
        resolve();
      });
    });
  }

  static async start(): Promise<RunscLauncher> {
    const script = 'mount -t tmpfs -o size=4k snapfn-netfix /proc/sys/net && exec "$0" "$@"';
    const child = spawn('unshare', ['-m', '--propagation', 'slave', 'sh', '-c', script, process.execPath, CHILD_SCRIPT], {
      stdio: ['pipe', 'inherit', 'inherit', 'ipc'],
    });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (msg: { op?: string }) => {
        if (msg.op !== 'ready') return;
        cleanup();
        resolve();
      };
      const onExit = (code: number | null) => {
        cleanup();
        reject(new LauncherError(`the runsc launcher exited with code ${code} before it was ready (it needs unshare, mount and root)`));
      };
      const onError = (err: Error) => {
        cleanup();
        reject(new LauncherError(`could not start the runsc launcher: ${err.message}`, { cause: err }));
      };
      const cleanup = () => {
        child.off('message', onMessage);
        child.off('exit', onExit);
        child.off('error', onError);
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
      child.once('error', onError);
    });
    return new RunscLauncher(child);
  }

  get alive(): boolean {
    return !this.#closed;
  }

  /** Starts `file args` with stdout and stderr appended to `logFile`. */
  launch(file: string, args: string[], logFile: string): LaunchedProcess {
    const id = this.#nextId++;
    let resolveExit!: (code: number) => void;
    const exited = new Promise<number>((resolve) => (resolveExit = resolve));
    if (this.#closed) {
      resolveExit(-1);
    } else {
      this.#pending.set(id, { resolveExit });
      this.#child.send({ op: 'spawn', id, file, args, logFile });
    }
    return {
      exited,
      kill: (signal = 'SIGKILL') => {
        if (!this.#closed && this.#pending.has(id)) this.#child.send({ op: 'kill', id, signal });
      },
    };
  }

  async close(): Promise<void> {
    if (!this.#closed) this.#child.disconnect();
    await this.#gone;
  }
}
