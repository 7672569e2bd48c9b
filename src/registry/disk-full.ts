import fs from 'node:fs/promises';
import { SnapfnError } from '../errors.ts';

/** Less than this free in SNAPFN_HOME after a failed build: the build ran out of room (a template image is tens of MiB). */
const LOW_SPACE_BYTES = 64 * 1024 * 1024;

/**
 * SNAPFN_HOME ran out of space (or quota) mid-way. Said as such, with the
 * HTTP status meant for it, rather than as an internal error: the operator
 * can act on it, and nothing was changed (the active version keeps serving;
 * what the failed step wrote is removed, so the same deploy works once there
 * is room again).
 */
export class StorageFullError extends SnapfnError {
  constructor(detail: string) {
    super('insufficient_storage', 507, `SNAPFN_HOME is out of disk space (${detail}); free some and try again, the active version keeps serving`);
  }
}

/** ENOSPC/EDQUOT anywhere in the cause chain, or in the text of a child process's error (runsc, tar...). */
export function diskFullDetail(err: unknown): string | undefined {
  for (let e = err as (NodeJS.ErrnoException & { cause?: unknown; stderr?: unknown }) | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (e.code === 'ENOSPC' || e.code === 'EDQUOT') return [e.code, e.syscall, e.path].filter(Boolean).join(' ');
    const text = `${typeof e.message === 'string' ? e.message : ''}\n${typeof e.stderr === 'string' ? e.stderr : ''}`;
    const m = /no space left on device|disk quota exceeded/i.exec(text);
    if (m) return m[0].toLowerCase();
  }
  return undefined;
}

/**
 * A deploy that failed because SNAPFN_HOME filled up, as a StorageFullError.
 * runsc's checkpoint does not always say why it failed (exit 128, nothing on
 * stderr), so a failed build (not the client's fault) with the home nearly
 * full counts too.
 */
export async function storageFailure(err: unknown, home: string): Promise<StorageFullError | undefined> {
  if (err instanceof StorageFullError) return err;
  const detail = diskFullDetail(err);
  if (detail) return new StorageFullError(detail);
  if (err instanceof SnapfnError && err.status < 500 && err.code !== 'template_build_failed') return undefined;
  const stat = await fs.statfs(home).catch(() => undefined);
  if (!stat) return undefined;
  const free = stat.bavail * stat.bsize;
  return free < LOW_SPACE_BYTES ? new StorageFullError(`${Math.floor(free / 1024 / 1024)} MiB free after: ${err instanceof Error ? err.message.split('\n')[0]!.slice(0, 200) : String(err)}`) : undefined;
}
