import { SnapfnError } from '../../errors.ts';

/**
 * The page server did not come up (bad arguments, unreadable memory file,
 * socket path in use) or did not say it was listening in time.
 */
export class UffdServerStartError extends SnapfnError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('uffd_server_start_failed', 503, message, options);
  }
}

/**
 * The page server exited while its VM still needed it. A Firecracker VM whose
 * page server is gone hangs on its next page fault instead of crashing, so
 * whoever supervises the VM must treat this as the VM's death.
 */
export class UffdServerExitedError extends SnapfnError {
  readonly exitCode: number | undefined;
  readonly signal: string | undefined;
  readonly stderrTail: string;

  constructor(exitCode: number | undefined, signal: string | undefined, stderrTail: string) {
    const how = signal ? `was killed by ${signal}` : `exited with code ${exitCode}`;
    super('uffd_server_exited', 503, `the UFFD page server ${how}${stderrTail ? `: ${stderrTail}` : ''}`);
    this.exitCode = exitCode;
    this.signal = signal;
    this.stderrTail = stderrTail;
  }
}
