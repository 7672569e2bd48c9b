import fs from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../config.ts';
import { parseSecretsKey, SecretsKey } from './envelope.ts';

export const KEY_FILE = 'secrets.key';
const KEY_FILE_MODE = 0o600;

export interface ResolvedSecretsKey {
  key: SecretsKey;
  /** Where it came from, for the start-up line: other nodes need the same key. */
  source: 'SNAPFN_SECRETS_KEY' | 'generated' | 'key file';
  file?: string;
}

/**
 * The key a gateway seals with: SNAPFN_SECRETS_KEY when set (every node of
 * an install must have the same), else `<home>/secrets.key`, generated
 * (0600, created exclusively so two starts never pick different keys) on
 * the first start. A key file that is unreadable, malformed or readable by
 * others stops the start: sealing under a key nobody can reproduce, or one
 * anyone can read, is worse than not starting.
 */
export async function resolveSecretsKey(home: string, fromEnv: SecretsKey | undefined): Promise<ResolvedSecretsKey> {
  if (fromEnv) return { key: fromEnv, source: 'SNAPFN_SECRETS_KEY' };
  const file = path.join(home, KEY_FILE);
  const existing = await readKeyFile(file);
  if (existing) return { key: existing, source: 'key file', file };
  const key = SecretsKey.generate();
  try {
    const handle = await fs.open(file, 'wx', KEY_FILE_MODE);
    try {
      await handle.writeFile(`${key.toBase64()}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    // Another start of the same home won the race: use its key.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return { key: (await readKeyFile(file))!, source: 'key file', file };
    throw new ConfigError(`could not create the secrets key ${file}: ${(err as Error).message}`);
  }
  return { key, source: 'generated', file };
}

async function readKeyFile(file: string): Promise<SecretsKey | undefined> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(`could not read the secrets key ${file}: ${(err as Error).message}`);
  }
  try {
    const { mode } = await handle.stat();
    if ((mode & 0o077) !== 0) throw new ConfigError(`the secrets key ${file} is readable by others (mode ${(mode & 0o777).toString(8)}): chmod 600 it`);
    const key = parseSecretsKey(await handle.readFile('utf8'));
    if (!key) throw new ConfigError(`the secrets key ${file} is not 32 bytes of base64: restore it, or set SNAPFN_SECRETS_KEY`);
    return key;
  } finally {
    await handle.close();
  }
}
