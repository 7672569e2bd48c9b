import fs from 'node:fs/promises';
import type { InvocationOutcome, WireRequest } from '../../schemas/invocation.ts';
import type { InvokeOptions, Sandbox } from '../driver.ts';
import type { EnvdConnection } from '../envd/envd-connection.ts';
import { crashedOutcome, invokeThroughEnvd } from '../envd/invoke-through-envd.ts';
import type { NetworkSlot, NetworkSlotPool } from '../network/network-slot-pool.ts';
import type { UffdPageServer } from '../uffd/uffd-page-server.ts';
import type { FirecrackerVm } from './firecracker-vm.ts';


export interface FirecrackerSandboxParts {
  id: string;
  templateId: string;
  vm: FirecrackerVm;
  /** Absent for a cold boot (anonymous guest memory, no snapshot). */
  pageServer: UffdPageServer | undefined;
  connection: EnvdConnection;
  slot: NetworkSlot;
  slots: NetworkSlotPool;
  stateDir: string;
  onDestroyed: (sandbox: FirecrackerSandbox) => void;
}

/** One Firecracker microVM resumed from a template (or cold-booted), talking to envd over vsock. */
export class FirecrackerSandbox implements Sandbox {
  readonly id: string;
  readonly templateId: string;
  readonly #parts: FirecrackerSandboxParts;
  #dead = false;
  #destroying: Promise<void> | undefined;

  constructor(parts: FirecrackerSandboxParts) {
    this.#parts = parts;
    this.id = parts.id;
    this.templateId = parts.templateId;
    void parts.vm.exited.then(() => (this.#dead = true));
    // A VM whose page server died would hang on its next fault, never crash:
    // declare it dead and kill it so nothing waits on it.
    parts.pageServer?.failed.catch(() => {
      this.#dead = true;
      void parts.vm.kill();
    });
  }

  get dead(): boolean {
    return this.#dead || this.#parts.connection.closed;
  }

  get vm(): FirecrackerVm {
    return this.#parts.vm;
  }

  async invoke(request: WireRequest, options: InvokeOptions): Promise<InvocationOutcome> {
    if (this.dead) return crashedOutcome('the sandbox is no longer running');
    const end = await invokeThroughEnvd(this.#parts.connection, request, options);
    if (!end.reusable) this.#dead = true;
    return end.outcome;
  }

  settled(): Promise<void> {
    return this.#parts.connection.settled();
  }

  async warmup(): Promise<void> {
    await this.#parts.connection.warmup();
  }

  /** Template builds only: envd hangs up and goes back to dialling. */
  async prepareCheckpoint(): Promise<void> {
    await this.#parts.connection.prepareCheckpoint();
  }

  async pause(): Promise<void> {
    await this.#parts.vm.api.pause();
  }

  async unpause(): Promise<void> {
    await this.#parts.vm.api.resume();
  }

  destroy(): Promise<void> {
    this.#destroying ??= this.#destroy();
    return this.#destroying;
  }

  async #destroy(): Promise<void> {
    this.#dead = true;
    const { vm, pageServer, connection, slot, slots, stateDir } = this.#parts;
    connection.close();
    // The VM first: the page server then sees its socket hang up and exits
    // by itself; close() only covers the case where it did not.
    await vm.kill();
    await pageServer?.close();
    await fs.rm(stateDir, { recursive: true, force: true });
    await slots.release(slot);
    this.#parts.onDestroyed(this);
  }
}

