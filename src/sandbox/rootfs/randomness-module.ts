import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const SOURCE = fileURLToPath(new URL('../../../runtime/envd/randomness.mjs', import.meta.url));

/**
 * Where the root filesystem holds envd's randomness module on its own, for
 * processes other than envd that are started before a checkpoint and must
 * refresh their random state after a restore (the eval JavaScript runner).
 * envd has its own copy inside its bundle; both come from the same source.
 */
export const RANDOMNESS_GUEST_NAME = 'randomness.mjs';

let cached: Promise<{ code: string; sha256: string }> | undefined;

/** runtime/envd/randomness.mjs as one ES module; it loads reseed.node from beside itself. */
export function randomnessModule(): Promise<{ code: string; sha256: string }> {
  cached ??= build({
    entryPoints: [SOURCE],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['*.node'],
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
    absWorkingDir: path.dirname(SOURCE),
  }).then((out) => {
    const code = out.outputFiles[0]!.text;
    return { code, sha256: crypto.createHash('sha256').update(code).digest('hex') };
  });
  cached.catch(() => (cached = undefined));
  return cached;
}
