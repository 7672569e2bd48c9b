import type { Redis } from 'ioredis';
import { ConfigError } from '../config.ts';
import { KEY_PREFIX } from '../queue/job-data.ts';
import type { SecretsKey } from './envelope.ts';

/** The id (never the key) of the key this Redis's sealed data is under; the first node to start sets it. */
export const SECRETS_KEY_ID_KEY = `${KEY_PREFIX}:secrets:key-id`;

/**
 * A node with another key than the one Redis's sealed data is under could
 * open none of it: refuse to start (ConfigError, one line) rather than fail
 * every deployment and result one by one later.
 */
export async function checkSecretsKey(redis: Redis, key: SecretsKey): Promise<void> {
  await redis.set(SECRETS_KEY_ID_KEY, key.id, 'NX');
  const stored = await redis.get(SECRETS_KEY_ID_KEY);
  if (stored !== null && stored !== key.id) {
    throw new ConfigError(
      `this node's secrets key is ${key.id}, but the data in Redis is sealed under ${stored}: give every node the same SNAPFN_SECRETS_KEY (or, if what was sealed under ${stored} may be lost, DEL ${SECRETS_KEY_ID_KEY})`,
    );
  }
}
