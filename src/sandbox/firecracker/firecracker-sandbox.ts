import { EnvdSandbox, type EnvdSandboxParts } from '../lifecycle/envd-sandbox.ts';
import type { UffdPageServer } from '../uffd/uffd-page-server.ts';
import type { FirecrackerVm } from './firecracker-vm.ts';

export interface FirecrackerSandboxParts extends EnvdSandboxParts {
  vm: FirecrackerVm;
  /** Absent for a cold boot (anonymous guest memory, no snapshot). */
  pageServer: UffdPageServer | undefined;
}

/** One Firecracker microVM resumed from a template (or cold-booted), talking to envd over vsock. */
export class FirecrackerSandbox extends EnvdSandbox {
  readonly vm: FirecrackerVm;

  constructor(parts: FirecrackerSandboxParts) {
    super(parts);
    this.vm = parts.vm;
    // A VM whose page server died would hang on its next fault, never crash:
    // declare it dead and kill it so nothing waits on it.
    parts.pageServer?.failed.catch(() => {
      this.markDead();
      void parts.vm.kill();
    });
  }

  async pause(): Promise<void> {
    await this.vm.api.pause();
  }

  async unpause(): Promise<void> {
    await this.vm.api.resume();
  }
}
