import fs from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** native/reseed/reseed.c built for this machine's node; envd loads it in every sandbox (runtime/envd/reseed-addon.mjs). */
export const RESEED_ADDON = `${ROOT}native/reseed/build/reseed.node`;
/** Where the base root filesystem puts it: next to envd, which loads it relative to itself. */
export const RESEED_ADDON_GUEST_NAME = 'reseed.node';

let built: Promise<string> | undefined;

/**
 * Runs scripts/build-native.sh once per process (a no-op when the addon is
 * newer than its source and the node binary) and returns the addon's path.
 * A base root filesystem cannot be built without it: envd refuses to run.
 */
export function ensureReseedAddon(): Promise<string> {
  built ??= execa('bash', [`${ROOT}scripts/build-native.sh`], { stdin: 'ignore', all: true })
    .then(async () => {
      await fs.access(RESEED_ADDON);
      return RESEED_ADDON;
    })
    .catch((err: unknown) => {
      built = undefined;
      const output = (err as { all?: string }).all ?? String(err);
      throw new Error(`building native/reseed failed (a C compiler and node's headers are needed): ${output.slice(-800)}`);
    });
  return built;
}
