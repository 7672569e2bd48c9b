import os from 'node:os';
import type { CrashReport } from '../envd/invoke-through-envd.ts';
import { EnvdSandbox, type EnvdSandboxParts } from '../lifecycle/envd-sandbox.ts';
import type { Runsc } from './runsc.ts';
import type { LaunchedProcess } from './runsc-launcher.ts';
import type { SandboxCgroup } from './sandbox-cgroup.ts';
import type { SentryProcess } from './sentry-process.ts';

export interface GvisorSandboxParts extends EnvdSandboxParts {
  runsc: Runsc;
  /** Undefined when runsc's state did not name it: every call then goes through the runsc CLI. */
  sentry: SentryProcess | undefined;
  exited: Promise<number>;
  /** Its own memory cgroup (absent with cgroups off): the one witness of an out-of-memory kill. */
  cgroup: SandboxCgroup | undefined;
  /** The function's memoryMb, for the out-of-memory message. */
  memoryMb: number;
}

/** One running runsc container, talking to its envd over a host Unix socket. */
export class GvisorSandbox extends EnvdSandbox {
  readonly #parts: GvisorSandboxParts;
  #pausedBy: 'freezer' | 'runsc' | undefined;

  constructor(parts: GvisorSandboxParts) {
    super(parts);
    this.#parts = parts;
  }

  /**
   * Out of memory only when the kernel says so: a SIGKILL from outside, a
   * handler's process.exit or a Sentry crash look the same from the channel.
   */
  protected override async explainCrash(why: string): Promise<CrashReport> {
    const { exited, cgroup, memoryMb } = this.#parts;
    // The channel closes as the Sentry dies; runsc exits right after.
    const exitCode = await Promise.race([exited, sleep(1000).then(() => undefined)]);
    const oomKills = cgroup ? await cgroup.oomKills() : 0;
    if (oomKills > 0) {
      const limit = await cgroup!.limitBytes();
      const cap = limit === undefined ? '' : ` of ${Math.round(limit / 1048576)} MiB (memoryMb ${memoryMb} plus the runtime's reserve)`;
      return { code: 'out_of_memory', message: `the sandbox ran out of memory: the kernel's OOM killer ended it at its cgroup limit${cap}` };
    }
    const witness = cgroup ? 'its cgroup counted no out-of-memory kill' : 'without a cgroup of its own, an out-of-memory kill cannot be told apart';
    return { code: 'sandbox_crashed', message: `${why} (${describeExit(exitCode)}; ${witness})` };
  }

  async pause(): Promise<void> {
    const { sentry, runsc } = this.#parts;
    if (sentry?.canFreeze) {
      try {
        await sentry.freeze();
        this.#pausedBy = 'freezer';
        return;
      } catch {
        // e.g. a task stuck in an uninterruptible state: runsc's own pause still works
      }
    }
    await runsc.pause(this.id);
    this.#pausedBy = 'runsc';
  }

  async unpause(): Promise<void> {
    const by = this.#pausedBy;
    this.#pausedBy = undefined;
    if (by === 'freezer') await this.#parts.sentry!.thaw();
    else if (by === 'runsc') await this.#parts.runsc.resume(this.id);
  }
}

/**
 * The last entry of a gVisor sandbox's cleanup stack: stop its container.
 * Killing the Sentry makes the foreground runsc clean up and exit by itself,
 * with no runsc CLI started; `runsc kill` is the fallback. Either way kill
 * comes first: `delete --force` alone waits ~5 s.
 */
export async function stopContainer(runsc: Runsc, id: string, launched: LaunchedProcess, sentry: SentryProcess | undefined): Promise<void> {
  if (!(await sentry?.kill())) await runsc.kill(id);
  const gone = await Promise.race([launched.exited.then(() => true), sleep(3000).then(() => false)]);
  if (!gone) launched.kill('SIGKILL');
  await launched.exited;
  if (!gone || (await runsc.hasState(id))) await runsc.forceDelete(id);
}

/** runsc exits with the container's status: 128 + N when its init died of signal N. */
function describeExit(code: number | undefined): string {
  if (code === undefined) return 'runsc had not exited yet';
  if (code > 128 && code < 128 + 65) {
    const name = Object.entries(os.constants.signals).find(([, n]) => n === code - 128)?.[0];
    return `runsc exited with code ${code}: signal ${code - 128}${name ? ` (${name})` : ''}`;
  }
  return `runsc exited with code ${code}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
