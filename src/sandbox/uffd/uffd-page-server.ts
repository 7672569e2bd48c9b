import fs from 'node:fs/promises';
import readline from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import { ensureUffdBinaries, UFFD_SERVER_BIN } from './native-binaries.ts';
import { parseServerEvent, type ConnectedEvent, type PrefetchedEvent, type ServerEvent, type UffdServerStats } from './server-events.ts';
import { UffdServerExitedError, UffdServerStartError } from './uffd-errors.ts';
import type { WorkingSet } from './working-set.ts';

export interface UffdPageServerOptions {
  /** Where the VMM connects (Firecracker's `mem_backend.backend_path`). */
  socketPath: string;
  /** The snapshot's guest memory file; mapped read-only, never written. */
  memoryFile: string;
  /** working-set.json's path, or the set itself (see working-set.ts): its pages are copied in right after the hand-off. */
  workingSet?: string | Pick<WorkingSet, 'offsets'>;
  /** Record mode: each page's file offset is written here the first time it faults. */
  recordFile?: string;
  /** Pin the server to this CPU; pays off when it is the faulting vCPU's (docs/uffd.md). */
  cpu?: number;
  /** Spin on the userfaultfd instead of sleeping in poll (costs a whole CPU). */
  busyPoll?: boolean;
  /** Copy this many pages (an aligned block) per fault instead of one. */
  blockPages?: number;
  /** Map the whole memory file up front (MAP_POPULATE) instead of page by page. */
  populate?: boolean;
  /** The server exits (code 2) if no VMM connects in time. Default 30 s. */
  acceptTimeoutMs?: number;
  /** On a fatal error the server kills the VMM, which would otherwise hang forever. Default true. */
  killPeerOnFatal?: boolean;
  /** How long start() waits for the socket to be listening. Default 5 s. */
  startTimeoutMs?: number;
}

export interface UffdServerExit {
  exitCode: number | undefined;
  signal: string | undefined;
  /** The server's own summary; absent if it was killed before it could print one. */
  stats: UffdServerStats | undefined;
}

type EventName = ServerEvent['event'];
type EventOf<K extends EventName> = Extract<ServerEvent, { event: K }>;

/**
 * One native page server process (native/uffd/uffd-server.c) serving one VM.
 * Events on its stdout drive the promises below; its exit is supervised: an
 * exit nobody asked for, other than the normal "the VM went away", rejects
 * `failed` with an UffdServerExitedError.
 */
export class UffdPageServer {
  readonly socketPath: string;
  readonly pid: number;
  readonly exited: Promise<UffdServerExit>;
  /** Never resolves; rejects if the server dies on its own. Race it against whatever waits on the VM. */
  readonly failed: Promise<never>;
  readonly #child: ResultPromise;
  readonly #events: ServerEvent[] = [];
  readonly #waiters = new Set<() => void>();
  #stderr = '';
  #closing = false;
  #exit: UffdServerExit | undefined;
  #tempFiles: string[] = [];

  private constructor(child: ResultPromise, socketPath: string, tempFiles: string[]) {
    this.#child = child;
    this.#tempFiles = tempFiles;
    this.socketPath = socketPath;
    this.pid = child.pid ?? -1;
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const event = parseServerEvent(line);
      if (event) this.#push(event);
    });
    // The exit summary is the last line: only settle once it has been read.
    const stdoutDone = new Promise<void>((resolve) => lines.once('close', resolve));
    child.stderr!.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString('utf8')).slice(-2000);
    });
    this.exited = Promise.all([child, stdoutDone]).then(([r]) => {
      const stats = this.#events.find((e): e is EventOf<'exit'> => e.event === 'exit');
      this.#exit = { exitCode: r.exitCode, signal: r.signal, stats };
      this.#wakeAll();
      return this.#exit;
    });
    this.failed = this.exited.then((exit): Promise<never> => {
      const expected = this.#closing || (exit.exitCode === 0 && !exit.signal);
      return expected ? new Promise<never>(() => {}) : Promise.reject(new UffdServerExitedError(exit.exitCode, exit.signal, this.stderrTail()));
    });
    this.failed.catch(() => {});
  }

  /** Starts the server and resolves once its socket is listening. */
  static async start(options: UffdPageServerOptions): Promise<UffdPageServer> {
    await ensureUffdBinaries();
    const args = ['--socket', options.socketPath, '--mem', options.memoryFile];
    const tempFiles: string[] = [];
    if (typeof options.workingSet === 'string') args.push('--prefetch', options.workingSet);
    else if (options.workingSet) {
      const file = `${options.socketPath}.working-set.json`;
      await fs.writeFile(file, JSON.stringify({ offsets: options.workingSet.offsets }));
      tempFiles.push(file);
      args.push('--prefetch', file);
    }
    if (options.recordFile) args.push('--record', options.recordFile);
    if (options.cpu !== undefined) args.push('--cpu', String(options.cpu));
    if (options.busyPoll) args.push('--busy-poll');
    if (options.blockPages) args.push('--block-pages', String(options.blockPages));
    if (options.populate) args.push('--populate');
    args.push('--accept-timeout-ms', String(options.acceptTimeoutMs ?? 30_000));
    if (options.killPeerOnFatal ?? true) args.push('--kill-peer-on-fatal');
    const child = execa(UFFD_SERVER_BIN, args, { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', buffer: false, reject: false });
    const server = new UffdPageServer(child, options.socketPath, tempFiles);
    try {
      await server.#waitFor('ready', options.startTimeoutMs ?? 5000);
    } catch (err) {
      await server.close();
      throw new UffdServerStartError(`the UFFD page server did not start: ${(err as Error).message}`, { cause: err });
    }
    return server;
  }

  /** Resolves when a VMM has handed over its userfaultfd and regions. */
  connected(timeoutMs: number): Promise<ConnectedEvent> {
    return this.#waitFor('connected', timeoutMs);
  }

  /** Resolves when the whole working set has been copied in. */
  prefetched(timeoutMs: number): Promise<PrefetchedEvent> {
    return this.#waitFor('prefetched', timeoutMs);
  }

  stderrTail(): string {
    return this.#stderr.trim().split('\n').slice(-3).join(' | ');
  }

  /**
   * Stops the server (SIGTERM, then SIGKILL after graceMs) and waits for it.
   * SIGTERM lets a recording server flush its record file. Idempotent.
   */
  async close(graceMs = 2000): Promise<UffdServerExit> {
    this.#closing = true;
    if (!this.#exit) {
      this.#child.kill('SIGTERM');
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), graceMs);
      await this.exited.finally(() => clearTimeout(timer));
    }
    // The server unlinks its socket once a VMM connects; not if it never did and was killed.
    await fs.rm(this.socketPath, { force: true });
    for (const file of this.#tempFiles) await fs.rm(file, { force: true });
    return this.#exit!;
  }

  #push(event: ServerEvent): void {
    this.#events.push(event);
    this.#wakeAll();
  }

  #wakeAll(): void {
    for (const wake of [...this.#waiters]) wake();
  }

  #waitFor<K extends EventName>(name: K, timeoutMs: number): Promise<EventOf<K>> {
    return new Promise<EventOf<K>>((resolve, reject) => {
      const check = (): boolean => {
        const event = this.#events.find((e): e is EventOf<K> => e.event === name);
        if (event) {
          resolve(event);
          return true;
        }
        if (this.#exit) {
          const { exitCode, signal } = this.#exit;
          reject(new UffdServerExitedError(exitCode, signal, this.stderrTail() || `before '${name}'`));
          return true;
        }
        return false;
      };
      if (check()) return;
      const timer = setTimeout(() => {
        this.#waiters.delete(wake);
        reject(new Error(`no '${name}' from the UFFD page server within ${timeoutMs} ms`));
      }, timeoutMs);
      const wake = (): void => {
        if (!check()) return;
        clearTimeout(timer);
        this.#waiters.delete(wake);
      };
      this.#waiters.add(wake);
    });
  }
}
