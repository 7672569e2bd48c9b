import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BUILD_SCRIPT = `${ROOT}scripts/build-native.sh`;

/** The UFFD page server and its test peer, built by scripts/build-native.sh. */
export const UFFD_SERVER_BIN = `${ROOT}native/uffd/build/uffd-server`;
export const UFFD_PEER_BIN = `${ROOT}native/uffd/build/uffd-peer`;

let built: Promise<void> | undefined;

/**
 * Runs the build script once per process. It is a ~30 ms no-op when the
 * binaries are current, so callers need not care whether setup already ran
 * (e.g. `node --test test/uffd.test.ts` straight from a fresh checkout).
 */
export function ensureUffdBinaries(): Promise<void> {
  built ??= execa('bash', [BUILD_SCRIPT], { stdin: 'ignore', all: true })
    .then(() => undefined)
    .catch((err: unknown) => {
      built = undefined;
      const output = (err as { all?: string }).all ?? String(err);
      throw new Error(`building native/uffd failed (gcc/make installed?): ${output.slice(-800)}`);
    });
  return built;
}
