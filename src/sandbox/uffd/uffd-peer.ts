import readline from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import { z } from 'zod';
import { ensureUffdBinaries, UFFD_PEER_BIN } from './native-binaries.ts';

/**
 * Drives native/uffd/uffd-peer.c, the stand-in for Firecracker's snapshot
 * load. Tests and the benchmark only: production VMMs are real Firecrackers.
 */
export interface PeerOptions {
  memoryFile: string;
  /** uffd: hand anonymous regions to the page server; private: MAP_PRIVATE the file (Firecracker's File backend). */
  mode?: 'uffd' | 'private';
  socketPath?: string;
  /** Region sizes in bytes, laid out back to back in the file. Default: one region, the whole file. */
  regions?: number[];
  order?: 'seq' | 'random';
  threads?: number;
  cpu?: number;
  /** The peer's own watchdog: it fails (exit 4) if not done by then. Default 10 s. */
  timeoutMs?: number;
  seed?: number;
  removeCheck?: boolean;
  exitAfterPages?: number;
  pauseAfterPages?: number;
  selfPopulate?: number;
  churn?: number;
  /** Which page-size members the handshake carries (older Firecrackers differ). */
  pageSizeFields?: 'both' | 'page_size' | 'page_size_kib' | 'none';
}

export const PeerReport = z.object({
  mode: z.enum(['uffd', 'private']),
  uffd_via: z.string(),
  regions: z.number().int(),
  pages: z.number().int(),
  threads: z.number().int(),
  order: z.string(),
  handshake_ms: z.number(),
  touch_ms: z.number(),
  pages_per_s: z.number(),
  verify_ms: z.number(),
  removed_pages: z.number().int(),
});
export type PeerReport = z.infer<typeof PeerReport>;

export interface PeerRun {
  exitCode: number | undefined;
  signal: string | undefined;
  stderr: string;
  report: PeerReport | undefined;
  elapsedMs: number;
}

export interface StartedPeer {
  /** Resolves when a --pause-after-pages peer has paused. */
  paused: Promise<void>;
  /** Lets a paused peer carry on. */
  resume(): void;
  done: Promise<PeerRun>;
  kill(): void;
}

function peerArgs(o: PeerOptions): string[] {
  const args = ['--mem', o.memoryFile, '--mode', o.mode ?? 'uffd', '--timeout-ms', String(o.timeoutMs ?? 10_000)];
  if (o.socketPath) args.push('--socket', o.socketPath);
  if (o.regions) args.push('--regions', o.regions.map((bytes) => `${bytes / 1024}k`).join(','));
  if (o.order) args.push('--order', o.order);
  if (o.threads) args.push('--threads', String(o.threads));
  if (o.cpu !== undefined) args.push('--cpu', String(o.cpu));
  if (o.seed !== undefined) args.push('--seed', String(o.seed));
  if (o.removeCheck) args.push('--remove-check');
  if (o.exitAfterPages) args.push('--exit-after-pages', String(o.exitAfterPages));
  if (o.pauseAfterPages) args.push('--pause-after-pages', String(o.pauseAfterPages));
  if (o.selfPopulate) args.push('--self-populate', String(o.selfPopulate));
  if (o.churn) args.push('--churn', String(o.churn));
  if (o.pageSizeFields) args.push('--page-size-fields', o.pageSizeFields);
  return args;
}

export async function startPeer(options: PeerOptions): Promise<StartedPeer> {
  await ensureUffdBinaries();
  const started = performance.now();
  // execa's timeout is the backstop behind the peer's own watchdog, so no
  // caller can hang on a peer stuck somewhere the watchdog cannot see.
  const child: ResultPromise = execa(UFFD_PEER_BIN, peerArgs(options), {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    timeout: (options.timeoutMs ?? 10_000) + 5000,
    killSignal: 'SIGKILL',
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  let report: PeerReport | undefined;
  let onPaused: () => void = () => {};
  const paused = new Promise<void>((resolve) => (onPaused = resolve));
  const lines = readline.createInterface({ input: child.stdout! });
  const stdoutDone = new Promise<void>((resolve) => lines.once('close', resolve));
  lines.on('line', (line) => {
    if (line === 'paused') return onPaused();
    try {
      const parsed = PeerReport.safeParse(JSON.parse(line));
      if (parsed.success) report = parsed.data;
    } catch {
      // not a report line
    }
  });
  const done = Promise.all([child, stdoutDone]).then(([r]) => ({
    exitCode: r.exitCode,
    signal: r.signal,
    stderr: stderr.trim(),
    report,
    elapsedMs: performance.now() - started,
  }));
  return {
    paused,
    resume: () => child.stdin!.write('go\n'),
    done,
    kill: () => child.kill('SIGKILL'),
  };
}

export async function runPeer(options: PeerOptions): Promise<PeerRun> {
  return (await startPeer(options)).done;
}
