import fs from 'node:fs/promises';
import os from 'node:os';
import { trace } from '@opentelemetry/api';
import type { InvocationOutcome, WireRequest } from '../../schemas/invocation.ts';
import type { InvokeOptions, Sandbox } from '../driver.ts';
import type { EnvdConnection } from '../envd/envd-connection.ts';
import { crashedOutcome, invokeThroughEnvd, type CrashReport } from '../envd/invoke-through-envd.ts';
import type { NetworkSlot, NetworkSlotPool } from '../network/network-slot-pool.ts';
import type { Runsc } from './runsc.ts';
import type { SandboxCgroup } from './sandbox-cgroup.ts';
import type { SentryProcess } from './sentry-process.ts';

const tracer = trace.getTracer('snapfn');


export interface GvisorSandboxParts {
  id: string;
  templateId: string;
  runsc: Runsc;
  /** Undefined when runsc's state did not name it: every call then goes through the runsc CLI. */
  sentry: SentryProcess | undefined;
  connection: EnvdConnection;
  exited: Promise<number>;
  killProcess: () => void;
  /** Absent for `network: 'none'`. */
  slot: NetworkSlot | undefined;
  slots: NetworkSlotPool;
  stateDir: string;
  /** Its own memory cgroup (absent with cgroups off): the one witness of an out-of-memory kill. */
  cgroup: SandboxCgroup | undefined;
  /** The function's memoryMb, for the out-of-memory message. */
  memoryMb: number;
  onDestroyed: (sandbox: GvisorSandbox) => void;
}

/** One running runsc container, talking to its envd over a host Unix socket. */
export class GvisorSandbox implements Sandbox {
  readonly id: string;
  readonly templateId: string;
  readonly #parts: GvisorSandboxParts;
  #dead = false;
  #pausedBy: 'freezer' | 'runsc' | undefined;
  #destroying: Promise<void> | undefined;

  constructor(parts: GvisorSandboxParts) {
    this.#parts = parts;
    this.id = parts.id;
    this.templateId = parts.templateId;
    void parts.exited.then(() => {
      this.#dead = true;
    });
  }

  get dead(): boolean {
    return this.#dead || this.#parts.connection.closed;
  }

  async invoke(request: WireRequest, options: InvokeOptions): Promise<InvocationOutcome> {
    if (this.dead) return crashedOutcome('the sandbox is no longer running');
    return tracer.startActiveSpan('handler', async (span): Promise<InvocationOutcome> => {
      try {
        const end = await invokeThroughEnvd(this.#parts.connection, request, options, (why) => this.#explainCrash(why));
        // The destroy that follows kills it after a hard timeout.
        if (!end.reusable) this.#dead = true;
        return end.outcome;
      } finally {
        span.end();
      }
    });
  }

  /**
   * Out of memory only when the kernel says so: a SIGKILL from outside, a
   * handler's process.exit or a Sentry crash look the same from the channel.
   */
  async #explainCrash(why: string): Promise<CrashReport> {
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

  /** After a restore, off the request path (warm pool): one rehearsal through envd. */
  settled(): Promise<void> {
    return this.#parts.connection.settled();
  }

  async warmup(): Promise<void> {
    await this.#parts.connection.rehearse();
  }

  /** Template builds only: warm envd's code paths before the checkpoint. */
  async prime(): Promise<void> {
    await this.#parts.connection.warmup();
  }

  /** Template builds only: envd hangs up and waits for the next restore's socket. */
  async prepareCheckpoint(): Promise<void> {
    await this.#parts.connection.prepareCheckpoint();
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

  destroy(): Promise<void> {
    this.#destroying ??= this.#destroy();
    return this.#destroying;
  }

  async #destroy(): Promise<void> {
    this.#dead = true;
    const { runsc, sentry, connection, exited, killProcess, slot, slots, stateDir } = this.#parts;
    connection.close();
    // Killing the Sentry makes the foreground runsc clean up and exit by
    // itself, with no runsc CLI started; `runsc kill` is the fallback. Either
    // way kill comes first: `delete --force` alone waits ~5 s.
    if (!(await sentry?.kill())) await runsc.kill(this.id);
    const gone = await Promise.race([exited.then(() => true), sleep(3000).then(() => false)]);
    if (!gone) killProcess();
    await exited;
    if (!gone || (await runsc.hasState(this.id))) await runsc.forceDelete(this.id);
    // Best effort: a cgroup that will not go yet is removed by the next start's orphan reaping.
    await this.#parts.cgroup?.remove().catch(() => {});
    await fs.rm(stateDir, { recursive: true, force: true });
    if (slot) await slots.release(slot);
    this.#parts.onDestroyed(this);
  }
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
