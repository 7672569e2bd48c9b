import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/** envd's entry; its modules and the protocol module it imports are bundled into one file. */
export const ENVD_ENTRY = fileURLToPath(new URL('../../../runtime/envd/envd.mjs', import.meta.url));

export interface EnvdBundle {
  code: string;
  sha256: string;
}

let cached: Promise<EnvdBundle> | undefined;

/**
 * envd as the single ES module the root filesystem holds at
 * /opt/snapfn/envd.mjs, with src/sandbox/envd/protocol.ts compiled in:
 * the sandbox side of the protocol is the very code the host checks
 * against. Native addons stay files beside it (`*.node` is external).
 * Deterministic for the same sources, so the rootfs hash is stable.
 */
export function envdBundle(): Promise<EnvdBundle> {
  cached ??= build({
    entryPoints: [ENVD_ENTRY],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['*.node'],
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
    absWorkingDir: path.dirname(ENVD_ENTRY),
  }).then((out) => {
    const code = out.outputFiles[0]!.text;
    return { code, sha256: crypto.createHash('sha256').update(code).digest('hex') };
  });
  cached.catch(() => (cached = undefined));
  return cached;
}
