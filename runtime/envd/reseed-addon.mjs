// Loads reseed.node (native/reseed/reseed.c), copied next to this file into
// /opt/snapfn by the base root filesystem.
//
// There is no fallback: without it every sandbox restored from one template
// would share OpenSSL's and V8's random state, so a process that cannot load
// it must not serve. The error says so and ends the importing process.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

function load() {
  try {
    return require('./reseed.node');
  } catch (err) {
    throw new Error(
      `snapfn: cannot load ${new URL('./reseed.node', import.meta.url).pathname} (${err?.message ?? err}); ` +
        'without it sandboxes restored from one snapshot share their random state, so this process refuses to run. ' +
        'Build it with scripts/build-native.sh against the node that runs the sandboxes.',
      { cause: err },
    );
  }
}

/** @type {{ reseed(): { kernelReseeded: boolean }, setHeapLimit(mb: number): void }} */
export const addon = load();
