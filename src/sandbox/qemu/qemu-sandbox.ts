import type { EnvdInvocationEnd } from '../envd/invoke-through-envd.ts';
import { EnvdSandbox, type EnvdSandboxParts } from '../lifecycle/envd-sandbox.ts';
import type { QemuVm } from './qemu-vm.ts';

export interface QemuSandboxParts extends EnvdSandboxParts {
  vm: QemuVm;
}

/** One QEMU microVM, talking to its envd over virtio-serial. */
export class QemuSandbox extends EnvdSandbox {
  readonly vm: QemuVm;

  constructor(parts: QemuSandboxParts) {
    super(parts);
    this.vm = parts.vm;
  }

  /** A synchronous loop never yields to envd: only killing the VM stops it. */
  protected override async afterInvoke(end: EnvdInvocationEnd): Promise<void> {
    if (end.hardTimeout) await this.vm.kill();
  }

  /**
   * Template builds only. A virtio-serial guest cannot hang up, so the host
   * does: a ping proves envd has finished everything it was sent, then the
   * host closes its end; the guest's next read() returns 0 and envd waits
   * for bytes from a new host (the next restore's).
   */
  override async prepareCheckpoint(): Promise<void> {
    await this.connection.ping(30_000);
    this.connection.close();
    // Let the port-closed event reach the guest before QEMU is stopped; a
    // read still blocked at save time would also be woken on restore, since
    // the restored port starts host-disconnected.
    await new Promise((r) => setTimeout(r, 200));
  }

  async pause(): Promise<void> {
    await this.vm.pause();
  }

  async unpause(): Promise<void> {
    await this.vm.unpause();
  }
}
