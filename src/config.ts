import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { parseCidr } from './sandbox/network/cidr.ts';
import { parseSecretsKey, type SecretsKey } from './secrets/envelope.ts';

const MiB = 1024 * 1024;

/** An unset variable and an empty one mean the same thing: `FOO= npm start` must not configure an empty API key. */
const optionalString = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === '' ? undefined : value));

/** An integer setting: unset or empty means `fallback`. */
function intSetting(fallback: number, min: number, max = Number.MAX_SAFE_INTEGER) {
  return optionalInt(min, max).transform((v) => v ?? fallback);
}

function optionalInt(min: number, max = Number.MAX_SAFE_INTEGER) {
  return optionalString.pipe(z.coerce.number<string | undefined>().int().min(min).max(max).optional());
}

/** Comma- or space-separated CIDRs (IPv4 or IPv6; a bare address is one host), normalized to their network addresses. */
const cidrList = (name: string) =>
  optionalString.transform((value, ctx) => {
    const out: string[] = [];
    for (const item of (value ?? '').split(/[\s,]+/).filter(Boolean)) {
      const cidr = parseCidr(item);
      if (cidr) out.push(cidr.text);
      else ctx.addIssue({ code: 'custom', message: `${name}: ${JSON.stringify(item.slice(0, 64))} is not a CIDR (a.b.c.d/n or an IPv6 prefix)` });
    }
    return out;
  });

const PublicUrl = optionalString.pipe(
  z
    .string()
    .regex(/^https?:\/\/[^/?#\s]+(\/[^?#\s]*)?$/, 'SNAPFN_PUBLIC_URL must be an http:// or https:// URL without query or fragment')
    .transform((url) => url.replace(/\/+$/, ''))
    .optional(),
);

/** Never echoed in the message: a mistyped key is still most of a key. */
const SecretsKeySetting = optionalString.transform((value, ctx) => {
  if (value === undefined) return undefined;
  const key = parseSecretsKey(value);
  if (!key) ctx.addIssue({ code: 'custom', message: 'SNAPFN_SECRETS_KEY must be 32 bytes as base64 (openssl rand -base64 32) or 64 hex digits' });
  return key;
});

const EgressEnv = z.object({
  SNAPFN_EGRESS_DENY: cidrList('SNAPFN_EGRESS_DENY'),
  SNAPFN_EGRESS_ALLOW: cidrList('SNAPFN_EGRESS_ALLOW'),
});

const Env = EgressEnv.extend({
  PORT: intSetting(8080, 0, 65_535),
  SNAPFN_HOME: optionalString,
  SNAPFN_API_KEY: optionalString.pipe(z.string().min(8, 'SNAPFN_API_KEY must be at least 8 characters').optional()),
  SNAPFN_MAX_SANDBOXES: intSetting(8, 1),
  SNAPFN_POOL_SIZE: optionalInt(0),
  SNAPFN_MAX_BODY_BYTES: intSetting(6 * MiB, 1),
  SNAPFN_MAX_RESPONSE_BYTES: intSetting(100 * MiB, 1),
  SNAPFN_PAUSE_AFTER_MS: intSetting(1000, 0, 10 * 60_000),
  SNAPFN_MAX_DEPLOY_BYTES: optionalInt(1),
  /** The old name of SNAPFN_MAX_DEPLOY_BYTES, from when a deploy was one bundle; still accepted. */
  SNAPFN_MAX_BUNDLE_BYTES: optionalInt(1),
  REDIS_URL: optionalString.pipe(z.string().regex(/^rediss?:\/\//, 'REDIS_URL must start with redis:// or rediss://').optional()),
  SNAPFN_TEMPLATE_STORE: optionalString,
  SNAPFN_MAX_QUEUE_WAIT_MS: intSetting(30_000, 100, 15 * 60_000),
  SNAPFN_MAX_QUEUED_PER_FUNCTION: intSetting(1000, 1),
  SNAPFN_EVAL: optionalString.pipe(z.enum(['0', '1', 'true', 'false'], { error: 'SNAPFN_EVAL must be 0, 1, true or false' }).optional()),
  SNAPFN_GC_KEEP_VERSIONS: intSetting(3, 0, 10_000),
  SNAPFN_GC_MIN_AGE_MS: intSetting(600_000, 0),
  SNAPFN_EXAMPLES: optionalString.pipe(z.enum(['0', '1', 'true', 'false'], { error: 'SNAPFN_EXAMPLES must be 0, 1, true or false' }).optional()),
  SNAPFN_PUBLIC_URL: PublicUrl,
  SNAPFN_SECRETS_KEY: SecretsKeySetting,
});

/**
 * `network: 'egress'` beyond the ranges always dropped (private, loopback,
 * link-local, CGNAT, and every address and subnet of the host's own
 * interfaces): `deny` drops more, `allow` opens destinations the deny list
 * would drop (say one database on the private network). docs/engine.md.
 */
export interface EgressPolicy {
  deny: string[];
  allow: string[];
}

/** The egress policy alone, for the network slot pool of any node kind (gateway, worker, tests). */
export function loadEgressPolicy(env: NodeJS.ProcessEnv = process.env): EgressPolicy {
  const parsed = EgressEnv.safeParse(env);
  if (!parsed.success) throw new ConfigError(`invalid configuration: ${parsed.error.issues.map((issue) => issue.message).join('; ')}`);
  return { deny: parsed.data.SNAPFN_EGRESS_DENY, allow: parsed.data.SNAPFN_EGRESS_ALLOW };
}

export interface SnapfnConfig {
  port: number;
  /** Root of everything snapfn keeps on disk (functions, templates, logs). */
  home: string;
  /** When unset, the management API is loopback-only. */
  apiKey: string | undefined;
  maxSandboxes: number;
  /** A fixed warm pool per function (the functions' own poolSize aside). Unset: each pool follows its function's traffic. */
  poolSize: number | undefined;
  maxBodyBytes: number;
  /** Largest function directory a deploy may unpack (all its files together; Lambda's figure by default). */
  maxDeployBytes: number;
  /** A response body past it is cut (response_too_large); streamed responses are never held whole. */
  maxResponseBytes: number;
  /** An idle keepWarm sandbox keeps running this long before it is frozen (back-to-back invocations never pay a thaw). */
  pauseAfterMs: number;
  /** Shared Redis (multi-node). Unset: the node starts its own under `<home>/redis`. */
  redisUrl: string | undefined;
  /** Template directory shared with other nodes; `<home>/templates` becomes a symlink to it. */
  templateStore: string | undefined;
  /** How long a synchronous request waits for its queued invocation. */
  maxQueueWaitMs: number;
  /** Default backlog cap per function (a function's `maxQueued` overrides it). */
  maxQueuedPerFunction: number;
  /** Template GC keeps the templates of the active version and of this many newest versions per function. */
  gcKeepVersions: number;
  /** Template GC spares templates younger than this, but only in a store shared with other nodes (SNAPFN_TEMPLATE_STORE). */
  gcMinAgeMs: number;
  /** Deploy the example functions at start-up. */
  examples: boolean;
  /** Base of the URLs API views give out (SNAPFN_PUBLIC_URL, no trailing slash); unset: the address the gateway listens on. Never the request's Host. */
  publicUrl: string | undefined;
  egress: EgressPolicy;
  /**
   * Seals what leaves the node for Redis (deployment records' secrets, queued
   * results). Unset: a single node generates one into `<home>/secrets.key`;
   * worker nodes must have it (see src/secrets/key-source.ts).
   */
  secretsKey: SecretsKey | undefined;
  /** Serve POST /v1/eval (builds one eval template per language at start). */
  eval: boolean;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Reads snapfn's settings from environment variables; throws one readable ConfigError on bad values. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): SnapfnConfig {
  const parsed = Env.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  return {
    port: e.PORT,
    home: path.resolve(e.SNAPFN_HOME ?? path.join(os.homedir(), '.snapfn')),
    apiKey: e.SNAPFN_API_KEY,
    maxSandboxes: e.SNAPFN_MAX_SANDBOXES,
    poolSize: e.SNAPFN_POOL_SIZE,
    maxBodyBytes: e.SNAPFN_MAX_BODY_BYTES,
    maxResponseBytes: e.SNAPFN_MAX_RESPONSE_BYTES,
    pauseAfterMs: e.SNAPFN_PAUSE_AFTER_MS,
    maxDeployBytes: e.SNAPFN_MAX_DEPLOY_BYTES ?? e.SNAPFN_MAX_BUNDLE_BYTES ?? 250 * MiB,
    redisUrl: e.REDIS_URL,
    templateStore: e.SNAPFN_TEMPLATE_STORE === undefined ? undefined : path.resolve(e.SNAPFN_TEMPLATE_STORE),
    maxQueueWaitMs: e.SNAPFN_MAX_QUEUE_WAIT_MS,
    maxQueuedPerFunction: e.SNAPFN_MAX_QUEUED_PER_FUNCTION,
    gcKeepVersions: e.SNAPFN_GC_KEEP_VERSIONS,
    gcMinAgeMs: e.SNAPFN_GC_MIN_AGE_MS,
    eval: e.SNAPFN_EVAL === undefined || e.SNAPFN_EVAL === '1' || e.SNAPFN_EVAL === 'true',
    examples: e.SNAPFN_EXAMPLES === undefined || e.SNAPFN_EXAMPLES === '1' || e.SNAPFN_EXAMPLES === 'true',
    publicUrl: e.SNAPFN_PUBLIC_URL,
    egress: { deny: e.SNAPFN_EGRESS_DENY, allow: e.SNAPFN_EGRESS_ALLOW },
    secretsKey: e.SNAPFN_SECRETS_KEY,
  };
}
