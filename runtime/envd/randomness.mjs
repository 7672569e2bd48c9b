// Fresh randomness in every sandbox restored from one template.
//
// A restored sandbox starts with its template's memory, so every random
// state inside node starts out the same in all of them. What holds such
// state in node 20, and what refreshes it (docs/engine.md, "Randomness after
// a restore", has the whole list):
// - OpenSSL's DRBGs (crypto.randomBytes, key generation, crypto.subtle, TLS)
//   and V8's generator and Math.random state: reseed.node's reseed().
// - node's own JavaScript caches of OpenSSL output: randomUUID's batch of 128
//   UUIDs and randomInt's 6 KiB. Drained here, so that what they hand out
//   next was drawn after the reseed.
// Everything else draws from those at the time of the call. The random APIs
// themselves stay node's own (same validation, errors, speed); randomInt
// only gets a wrapper that notes it was ever used, because draining its
// cache costs ~1 ms and is needed only then.
//
// refreshRandomness() runs on every (re)connect to the host, i.e. after every
// restore, before the first invocation. It must stay synchronous and fast.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { addon } from './reseed-addon.mjs';

// Sizes of node 20's caches (lib/internal/crypto/random.js): a drain makes at
// least this many draws, so each cache is refilled at least once in it.
const UUID_BATCH = 128;
const RANDOM_INT_SLOTS = (6 * 1024) / 6;
const RANDOM_INT_MAX = 2 ** 48 - 1;

// Captured before anything else runs: a handler may replace the exports.
const nativeRandomUUID = crypto.randomUUID;
const nativeRandomInt = crypto.randomInt;
let randomIntUsed = false;
let installed = false;

function drainCaches() {
  for (let i = 0; i < UUID_BATCH; i++) nativeRandomUUID();
  // Once used, the cache holds bytes from before whatever snapshot comes next.
  if (randomIntUsed) for (let i = 0; i < RANDOM_INT_SLOTS; i++) nativeRandomInt(RANDOM_INT_MAX);
}

/**
 * After a restore: new entropy into OpenSSL and V8, then node's caches of
 * old output are used up. A failure ends the process: a sandbox that cannot
 * promise fresh randomness must not serve (the host sees it crash).
 */
export function refreshRandomness() {
  try {
    addon.reseed();
    drainCaches();
  } catch (err) {
    fs.writeSync(2, `snapfn: refreshing randomness after a restore failed, exiting: ${err?.stack ?? err}\n`);
    process.exit(70);
  }
}

/** Once at startup: wraps randomInt and proves the addon works before any snapshot is taken. */
export function installFreshRandomness() {
  if (installed) return;
  installed = true;
  // Named parameters: the same length as node's function.
  crypto.randomInt = /** @type {typeof crypto.randomInt} */ (
    function randomInt(min, max, callback) {
      randomIntUsed = true;
      return Reflect.apply(nativeRandomInt, this, arguments);
    }
  );
  syncBuiltinESMExports();
  refreshRandomness();
}
