import fs from 'node:fs/promises';
import { trace } from '@opentelemetry/api';
import type { InvocationOutcome, WireRequest } from '../../schemas/invocation.ts';
import type { InvokeOptions, Sandbox } from '../driver.ts';
import type { EnvdConnection } from '../envd/envd-connection.ts';
import { crashedOutcome, invokeThroughEnvd } from '../envd/invoke-through-envd.ts';
import type { QemuVm } from './qemu-vm.ts';

const tracer = trace.getTracer('snapfn');


export interface QemuSandboxParts {
  id: string;
  templateId: string;
  vm: QemuVm;
  connection: EnvdConnection;
  stateDir: string;
  /** Returns the sandbox's network slot, if it has one. */
  releaseNetwork?: (() => Promise<void>) | undefined;
  onDestroyed: (sandbox: QemuSandbox) => void;
}

/** One QEMU microVM, talking to its envd over virtio-serial. */
export class QemuSandbox implements Sandbox {
  readonly id: string;
  readonly templateId: string;
  readonly #parts: QemuSandboxParts;
  #dead = false;
  #destroying: Promise<void> | undefined;

  constructor(parts: QemuSandboxParts) {
    this.#parts = parts;
    this.id = parts.id;
    this.templateId = parts.templateId;
    void parts.vm.exited.then(() => {
      this.#dead = true;
      // A dead VM never answers: fail the pending request now, not at its timeout.
      parts.connection.close();
    });
  }

  get dead(): boolean {
    return this.#dead || this.#parts.connection.closed;
  }

  get vm(): QemuVm {
    return this.#parts.vm;
  }

  async invoke(request: WireRequest, options: InvokeOptions): Promise<InvocationOutcome> {
    if (this.dead) return crashedOutcome('the sandbox is no longer running');
    return tracer.startActiveSpan('handler', async (span): Promise<InvocationOutcome> => {
      try {
        const end = await invokeThroughEnvd(this.#parts.connection, request, options);
        if (!end.reusable) this.#dead = true;
        // A synchronous loop never yields to envd: only killing the VM stops it.
        if (end.hardTimeout) await this.#parts.vm.kill();
        return end.outcome;
      } finally {
        span.end();
      }
    });
  }

  settled(): Promise<void> {
    return this.#parts.connection.settled();
  }

  async warmup(): Promise<void> {
    await this.#parts.connection.warmup(60_000);
  }

  /**
   * Template builds only. A virtio-serial guest cannot hang up, so the host
   * does: a ping proves envd has finished everything it was sent, then the
   * host closes its end; the guest's next read() returns 0 and envd waits
   * for bytes from a new host (the next restore's).
   */
  async hangUpForSnapshot(): Promise<void> {
    await this.#parts.connection.ping(30_000);
    this.#parts.connection.close();
    // Let the port-closed event reach the guest before QEMU is stopped; a
    // read still blocked at save time would also be woken on restore, since
    // the restored port starts host-disconnected.
    await new Promise((r) => setTimeout(r, 200));
  }

  async pause(): Promise<void> {
    await this.#parts.vm.pause();
  }

  async unpause(): Promise<void> {
    await this.#parts.vm.unpause();
  }

  destroy(): Promise<void> {
    this.#destroying ??= this.#destroy();
    return this.#destroying;
  }

  async #destroy(): Promise<void> {
    this.#dead = true;
    this.#parts.connection.close();
    await this.#parts.vm.kill();
    await this.#parts.releaseNetwork?.();
    await fs.rm(this.#parts.stateDir, { recursive: true, force: true });
    this.#parts.onDestroyed(this);
  }
}

