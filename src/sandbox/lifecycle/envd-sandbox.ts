import { trace } from '@opentelemetry/api';
import type { InvocationOutcome, WireRequest } from '../../schemas/invocation.ts';
import type { InvokeOptions, Sandbox } from '../driver.ts';
import type { EnvdConnection } from '../envd/envd-connection.ts';
import { crashedOutcome, invokeThroughEnvd, type CrashReport, type EnvdInvocationEnd } from '../envd/invoke-through-envd.ts';
import type { CleanupStack } from './cleanup-stack.ts';

const tracer = trace.getTracer('snapfn');

export interface EnvdSandboxParts {
  id: string;
  templateId: string;
  connection: EnvdConnection;
  /** Resolves when the sandbox's process (runsc, QEMU, Firecracker) has exited. */
  exited: Promise<unknown>;
  /** Everything the start acquired; destroy unwinds it (the process's kill is its last entry). */
  cleanup: CleanupStack;
  /** Tells the driver's live set it is gone, once everything is released. */
  onDestroyed: (sandbox: EnvdSandbox) => void;
  /** How long the rehearsal after a restore may take (TCG guests are slow). */
  rehearseTimeoutMs?: number;
}

/**
 * What every driver's sandbox has in common: one envd connection, dead once
 * its process exits or the channel drops, invocations traced as `handler`,
 * `prime` before a checkpoint and `rehearse` (Sandbox.warmup) after a
 * restore, and a destroy that unwinds the start's cleanup stack. A driver's
 * subclass adds only what is really its own: pause, unpause, and how a
 * checkpoint hangs up the channel or a crash is explained.
 */
export abstract class EnvdSandbox implements Sandbox {
  readonly id: string;
  readonly templateId: string;
  protected readonly connection: EnvdConnection;
  readonly #parts: EnvdSandboxParts;
  #dead = false;
  #destroying: Promise<void> | undefined;

  constructor(parts: EnvdSandboxParts) {
    this.#parts = parts;
    this.id = parts.id;
    this.templateId = parts.templateId;
    this.connection = parts.connection;
    void parts.exited.then(() => {
      this.#dead = true;
      // A dead sandbox never answers: fail the pending request now, not at its timeout.
      this.connection.close();
    });
  }

  get dead(): boolean {
    return this.#dead || this.connection.closed;
  }

  protected markDead(): void {
    this.#dead = true;
  }

  async invoke(request: WireRequest, options: InvokeOptions): Promise<InvocationOutcome> {
    if (this.dead) return crashedOutcome('the sandbox is no longer running');
    return tracer.startActiveSpan('handler', async (span): Promise<InvocationOutcome> => {
      try {
        const end = await invokeThroughEnvd(this.connection, request, options, (why) => this.explainCrash(why));
        // The destroy that follows kills it after a hard timeout.
        if (!end.reusable) this.#dead = true;
        await this.afterInvoke(end);
        return end.outcome;
      } finally {
        span.end();
      }
    });
  }

  settled(): Promise<void> {
    return this.connection.settled();
  }

  /** The rehearsal after a restore, off the request path (warm pool): envd's request path without the handler. */
  async warmup(): Promise<void> {
    await this.connection.rehearse(this.#parts.rehearseTimeoutMs);
  }

  /** Template builds only: warm envd's code paths and run beforeSnapshot, before the checkpoint. */
  async prime(timeoutMs?: number): Promise<void> {
    await this.connection.warmup(timeoutMs);
  }

  /** Template builds only: envd hangs up and waits for the next restore's channel. */
  async prepareCheckpoint(): Promise<void> {
    await this.connection.prepareCheckpoint();
  }

  abstract pause(): Promise<void>;
  abstract unpause(): Promise<void>;

  destroy(): Promise<void> {
    this.#destroying ??= this.#destroy();
    return this.#destroying;
  }

  async #destroy(): Promise<void> {
    this.#dead = true;
    this.connection.close();
    await this.#parts.cleanup.unwind();
    this.#parts.onDestroyed(this);
  }

  /** What the driver knows of a sandbox that died mid-invocation (gVisor: its cgroup's OOM count). */
  protected async explainCrash(why: string): Promise<CrashReport> {
    return { code: 'sandbox_crashed', message: why };
  }

  /** Driver-specific follow-up of an invocation (QEMU kills a VM stuck past its hard timeout). */
  protected async afterInvoke(_end: EnvdInvocationEnd): Promise<void> {}
}
