import crypto from 'node:crypto';

/*
 * The one format snapfn seals data in before it leaves the process for
 * Redis: AES-256-GCM under the node's secrets key, as one ASCII string
 *
 *   snapfn-sealed.v1.<key id>.<iv>.<tag>.<ciphertext>   (base64url parts)
 *
 * The key id (not secret: a hash of the key) lets a node with the wrong key
 * say so instead of "unable to authenticate data". `context` is bound in as
 * associated data, so a ciphertext moved to another record (another
 * function's deployment, another invocation's result) does not open there.
 */

const PREFIX = 'snapfn-sealed.v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
export const KEY_BYTES = 32;

/** A sealed value that does not open: tampered with, sealed under another key or for another record, or not an envelope at all. */
export class SealedDataError extends Error {
  override readonly name = 'SealedDataError';
}

export class SecretsKey {
  readonly #key: Buffer;
  /** 16 hex digits derived from the key; safe to print and to keep in Redis. */
  readonly id: string;

  constructor(key: Buffer) {
    if (key.length !== KEY_BYTES) throw new Error(`a secrets key is ${KEY_BYTES} bytes, not ${key.length}`);
    this.#key = Buffer.from(key);
    this.id = crypto.createHash('sha256').update('snapfn secrets key id\0').update(key).digest('hex').slice(0, 16);
  }

  static generate(): SecretsKey {
    return new SecretsKey(crypto.randomBytes(KEY_BYTES));
  }

  /** The key as SNAPFN_SECRETS_KEY and the key file spell it. */
  toBase64(): string {
    return this.#key.toString('base64');
  }

  seal(plaintext: string | Buffer, context: string): string {
    const iv = crypto.randomBytes(IV_BYTES);
    const cipher = crypto.createCipheriv('aes-256-gcm', this.#key, iv);
    cipher.setAAD(Buffer.from(context));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return [PREFIX, this.id, b64(iv), b64(cipher.getAuthTag()), b64(ciphertext)].join('.');
  }

  open(envelope: string, context: string): Buffer {
    const parts = envelope.split('.');
    if (parts.length !== 6 || `${parts[0]}.${parts[1]}` !== PREFIX) throw new SealedDataError('not a sealed value (snapfn-sealed.v1.…)');
    const [, , keyId, iv, tag, ciphertext] = parts as [string, string, string, string, string, string];
    if (keyId !== this.id) throw new SealedDataError(`sealed under the secrets key ${keyId}, but this node's key is ${this.id}: every node needs the same SNAPFN_SECRETS_KEY`);
    const ivBytes = Buffer.from(iv, 'base64url');
    const tagBytes = Buffer.from(tag, 'base64url');
    if (ivBytes.length !== IV_BYTES || tagBytes.length !== TAG_BYTES) throw new SealedDataError('a sealed value with a malformed iv or tag');
    const decipher = crypto.createDecipheriv('aes-256-gcm', this.#key, ivBytes);
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(tagBytes);
    try {
      return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]);
    } catch {
      throw new SealedDataError(`a sealed value for ${context} does not authenticate: it was altered, or sealed for another record`);
    }
  }
}

export function isSealed(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(`${PREFIX}.`);
}

/**
 * SNAPFN_SECRETS_KEY: 32 bytes as base64 (`openssl rand -base64 32`) or 64
 * hex digits. Anything else is refused, never stretched into a key.
 */
export function parseSecretsKey(text: string): SecretsKey | undefined {
  const value = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(value)) return new SecretsKey(Buffer.from(value, 'hex'));
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(value)) {
    const bytes = Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (bytes.length === KEY_BYTES) return new SecretsKey(bytes);
  }
  return undefined;
}

function b64(bytes: Buffer): string {
  return bytes.toString('base64url');
}
