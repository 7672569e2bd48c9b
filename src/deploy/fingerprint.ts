import crypto from 'node:crypto';
import type { FunctionConfigPatch } from '../schemas/api.ts';

function sorted(record: Record<string, unknown> | undefined): Array<[string, unknown]> {
  return Object.entries(record ?? {})
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => a.localeCompare(b));
}

/**
 * What a deploy asked for, minus secret values (a hash of a short secret is
 * guessable, and this one is stored next to the version in plain JSON).
 */
export function deployFingerprint(input: { bundleHash: string; config?: FunctionConfigPatch | undefined; env?: Record<string, string> | undefined; secretNames: string[] }): string {
  const canonical = JSON.stringify({
    bundle: input.bundleHash,
    config: sorted(input.config),
    env: sorted(input.env),
    secretNames: [...input.secretNames].sort(),
  });
  return crypto.createHash('sha256').update(canonical).digest('hex');
}
