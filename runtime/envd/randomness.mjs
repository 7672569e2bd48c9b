// Fresh randomness in every sandbox restored from one template.
//
// Every sandbox restored from one template starts with the same V8 and
// OpenSSL random state: it is part of the snapshot. Left alone, Math.random,
// crypto.randomUUID and crypto.randomBytes return the same values in every
// sandbox. gVisor's /dev/urandom draws from the host on every read, so the
// random APIs are re-pointed at it, and bytes buffered before a (re)connect
// are thrown away. This runs before the handler is imported, so modules that
// keep a reference to these functions get the fresh ones too.

import fs from 'node:fs';
import { Buffer } from 'node:buffer';
import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';

const urandomFd = fs.openSync('/dev/urandom', 'r');
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let poolOffset = 0;

function readUrandom(target) {
  for (let off = 0; off < target.length; ) off += fs.readSync(urandomFd, target, off, target.length - off, null);
}

function freshBytes(n) {
  if (n > POOL_BYTES / 4) {
    const out = Buffer.allocUnsafe(n);
    readUrandom(out);
    return out;
  }
  if (poolOffset + n > pool.length) {
    pool = Buffer.allocUnsafe(POOL_BYTES);
    readUrandom(pool);
    poolOffset = 0;
  }
  const out = Buffer.from(pool.subarray(poolOffset, poolOffset + n));
  poolOffset += n;
  return out;
}

/** Called on every connect: after a restore, nothing buffered in the snapshot may be handed out. */
export function refreshRandomness() {
  pool = Buffer.alloc(0);
  poolOffset = 0;
}

function fillView(view, offset = 0, size) {
  const bytes = ArrayBuffer.isView(view) ? new Uint8Array(view.buffer, view.byteOffset, view.byteLength) : new Uint8Array(view);
  const length = size ?? bytes.length - offset;
  bytes.set(freshBytes(length), offset);
  return view;
}

function uuidV4() {
  const b = freshBytes(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function randomInt(min, max, callback) {
  if (max === undefined || typeof max === 'function') [min, max, callback] = [0, min, max];
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || max <= min) throw new RangeError('randomInt needs safe integers with min < max');
  const range = max - min;
  // Rejection sampling over 48 bits keeps the result unbiased.
  const limit = 2 ** 48 - (2 ** 48 % range);
  let x;
  do x = freshBytes(6).readUIntBE(0, 6);
  while (x >= limit);
  const value = min + (x % range);
  if (typeof callback === 'function') process.nextTick(callback, null, value);
  else return value;
}

/** Re-points every JavaScript-reachable random API at fresh bytes. */
export function installFreshRandomness() {
  Math.random = () => {
    const b = freshBytes(8);
    return (b.readUInt32BE(0) * 2 ** 21 + (b.readUInt32BE(4) >>> 11)) / 2 ** 53;
  };
  crypto.randomBytes = (size, callback) => {
    const out = freshBytes(size);
    if (typeof callback === 'function') process.nextTick(callback, null, out);
    else return out;
  };
  crypto.pseudoRandomBytes = crypto.randomBytes;
  crypto.randomFillSync = (view, offset, size) => fillView(view, offset, size);
  crypto.randomFill = (view, offset, size, callback) => {
    const cb = [offset, size, callback].find((a) => typeof a === 'function');
    fillView(view, typeof offset === 'number' ? offset : 0, typeof size === 'number' ? size : undefined);
    process.nextTick(cb, null, view);
  };
  crypto.randomUUID = () => uuidV4();
  crypto.randomInt = randomInt;
  // crypto.getRandomValues is a getter for webcrypto's; patching webcrypto below covers it.
  for (const target of [globalThis.crypto, crypto.webcrypto]) {
    if (!target) continue;
    Object.defineProperty(target, 'getRandomValues', { value: (view) => fillView(view), configurable: true, writable: true });
    Object.defineProperty(target, 'randomUUID', { value: () => uuidV4(), configurable: true, writable: true });
  }
  syncBuiltinESMExports();
}


