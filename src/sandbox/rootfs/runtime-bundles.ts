import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/**
 * The JavaScript the root filesystem carries to /opt/snapfn, each as one ES
 * module bundled from runtime/envd at rootfs build time:
 *   envd.mjs        envd with src/sandbox/envd/protocol.ts compiled in, so
 *                   the sandbox side of the protocol is the very code the
 *                   host checks against;
 *   randomness.mjs  envd's randomness module on its own, for processes other
 *                   than envd started before a checkpoint that must refresh
 *                   their random state after a restore (the eval JavaScript
 *                   runner); both copies come from the same source.
 * Native addons stay files beside them (`*.node` is external). Deterministic
 * for the same sources, so the rootfs hash is stable.
 */
const ENTRIES = {
  'envd.mjs': fileURLToPath(new URL('../../../runtime/envd/envd.mjs', import.meta.url)),
  'randomness.mjs': fileURLToPath(new URL('../../../runtime/envd/randomness.mjs', import.meta.url)),
} as const;

export type RuntimeBundleName = keyof typeof ENTRIES;
export const RANDOMNESS_GUEST_NAME: RuntimeBundleName = 'randomness.mjs';

export interface RuntimeBundle {
  code: string;
  sha256: string;
}

const cache = new Map<RuntimeBundleName, Promise<RuntimeBundle>>();

export function runtimeBundle(name: RuntimeBundleName): Promise<RuntimeBundle> {
  let bundle = cache.get(name);
  if (!bundle) {
    const entry = ENTRIES[name];
    bundle = build({
      entryPoints: [entry],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      external: ['*.node'],
      write: false,
      logLevel: 'silent',
      legalComments: 'none',
      absWorkingDir: path.dirname(entry),
    }).then((out) => {
      const code = out.outputFiles[0]!.text;
      return { code, sha256: crypto.createHash('sha256').update(code).digest('hex') };
    });
    cache.set(name, bundle);
    bundle.catch(() => cache.delete(name));
  }
  return bundle;
}
