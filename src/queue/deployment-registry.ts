import type { Redis } from 'ioredis';
import { z } from 'zod';
import { NotFoundError } from '../errors.ts';
import type { Deployment } from '../orchestrator/types.ts';
import { EnvVars, FunctionConfig, FunctionName } from '../schemas/function-config.ts';
import type { SecretsKey } from '../secrets/envelope.ts';
import { KEY_PREFIX } from './job-data.ts';

/*
 * How a worker-only node learns what to run: the gateway (which owns the
 * function store) publishes each deployment it serves as a small JSON record
 * in Redis, and the name -> active version map. Env vars travel in clear;
 * secrets sealed under the secrets key (AES-256-GCM, bound to the record's
 * function and version), opened in memory by the node that runs the job.
 * See docs/scale-out.md.
 */

const DeploymentRecord = z.object({
  name: FunctionName,
  version: z.number().int().positive(),
  templateId: z.string().min(1),
  config: FunctionConfig,
  /** The plain env vars only, in records with `sealedSecrets`; env and secrets merged in records of older gateways. */
  env: EnvVars,
  secretNames: z.array(z.string()).optional(),
  /** `{ NAME: value }` of the secrets, sealed (src/secrets/envelope.ts). */
  sealedSecrets: z.string().optional(),
});
type DeploymentRecord = z.infer<typeof DeploymentRecord>;

const SecretValues = z.record(z.string(), z.string());

/** Superseded versions linger this long for jobs that pinned them while queued. */
const SUPERSEDED_TTL_SECONDS = 24 * 3600;

export function deploymentKey(name: string, version: number): string {
  return `${KEY_PREFIX}:deployment:${name}:${version}`;
}

export const ACTIVE_DEPLOYMENTS_KEY = `${KEY_PREFIX}:deployments:active`;

export class DeploymentRegistry {
  readonly #redis: Redis;
  readonly #secretsKey: SecretsKey | undefined;

  /** `redis` stays the caller's: the registry never closes it. Without `secretsKey` it can neither publish nor read a deployment with secrets. */
  constructor(redis: Redis, secretsKey?: SecretsKey) {
    this.#redis = redis;
    this.#secretsKey = secretsKey;
  }

  /** Publishes a deployment; `activate` (default) also makes it the version scheduled runs and workers pick. */
  async publish(deployment: Deployment, options: { activate?: boolean } = {}): Promise<void> {
    const record = this.#sealed(deployment);
    const previous = await this.#redis.hget(ACTIVE_DEPLOYMENTS_KEY, record.name);
    const tx = this.#redis.multi().set(deploymentKey(record.name, record.version), JSON.stringify(record));
    if (options.activate ?? true) {
      tx.hset(ACTIVE_DEPLOYMENTS_KEY, record.name, String(record.version));
      if (previous !== null && Number(previous) !== record.version) tx.expire(deploymentKey(record.name, Number(previous)), SUPERSEDED_TTL_SECONDS);
      tx.persist(deploymentKey(record.name, record.version));
    }
    await tx.exec();
  }

  async get(name: string, version: number | 'active'): Promise<Deployment> {
    const v = version === 'active' ? await this.activeVersion(name) : version;
    if (v === undefined) throw new NotFoundError(`function ${name} has no active deployment`);
    const raw = await this.#redis.get(deploymentKey(name, v));
    if (raw === null) throw new NotFoundError(`deployment ${name} v${v} is not published`);
    return this.#opened(DeploymentRecord.parse(JSON.parse(raw)));
  }

  async activeVersion(name: string): Promise<number | undefined> {
    const v = await this.#redis.hget(ACTIVE_DEPLOYMENTS_KEY, name);
    return v === null ? undefined : Number(v);
  }

  /** name -> active version of every published function. */
  async active(): Promise<Map<string, number>> {
    const all = await this.#redis.hgetall(ACTIVE_DEPLOYMENTS_KEY);
    return new Map(Object.entries(all).map(([name, v]) => [name, Number(v)]));
  }

  /**
   * Template ids of every published deployment, superseded ones included
   * (worker nodes may still run jobs pinned to them): the template
   * collector keeps these.
   */
  async templateIds(): Promise<Set<string>> {
    const ids = new Set<string>();
    let cursor = '0';
    do {
      const [next, keys] = await this.#redis.scan(cursor, 'MATCH', `${KEY_PREFIX}:deployment:*`, 'COUNT', 500);
      cursor = next;
      if (keys.length === 0) continue;
      for (const raw of await this.#redis.mget(...keys)) {
        if (raw === null) continue;
        let json: unknown;
        try {
          json = JSON.parse(raw);
        } catch {
          continue;
        }
        const parsed = DeploymentRecord.safeParse(json);
        if (parsed.success) ids.add(parsed.data.templateId);
      }
    } while (cursor !== '0');
    return ids;
  }

  /** The function was deleted: forget every version. */
  async unpublish(name: string): Promise<void> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.#redis.scan(cursor, 'MATCH', `${KEY_PREFIX}:deployment:${name}:*`, 'COUNT', 200);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    const tx = this.#redis.multi().hdel(ACTIVE_DEPLOYMENTS_KEY, name);
    if (keys.length > 0) tx.del(...keys);
    await tx.exec();
  }

  #sealed(deployment: Deployment): DeploymentRecord {
    const { secretNames = [], ...rest } = deployment;
    const base = DeploymentRecord.parse(rest);
    if (secretNames.length === 0) return base;
    if (!this.#secretsKey) throw new Error(`publishing ${deployment.name} v${deployment.version}: its secrets can only be published sealed, and no secrets key was given`);
    const secret = new Set(secretNames);
    const env = Object.fromEntries(Object.entries(rest.env).filter(([k]) => !secret.has(k)));
    const values = Object.fromEntries(Object.entries(rest.env).filter(([k]) => secret.has(k)));
    return { ...base, env, secretNames: [...secretNames].sort(), sealedSecrets: this.#secretsKey.seal(JSON.stringify(values), recordContext(base.name, base.version)) };
  }

  /** In memory only: the opened secrets are never written back anywhere. */
  #opened(record: DeploymentRecord): Deployment {
    const { sealedSecrets, secretNames, ...rest } = record;
    if (sealedSecrets === undefined) return rest;
    if (!this.#secretsKey) throw new Error(`deployment ${record.name} v${record.version} has sealed secrets and this node has no secrets key (SNAPFN_SECRETS_KEY)`);
    const values = SecretValues.parse(JSON.parse(this.#secretsKey.open(sealedSecrets, recordContext(record.name, record.version)).toString('utf8')));
    return { ...rest, env: { ...rest.env, ...values }, secretNames: secretNames ?? Object.keys(values).sort() };
  }

  /** A `resolveDeployment` for InvocationWorkers. */
  resolver(): (name: string, version: number | 'active') => Promise<Deployment> {
    return (name, version) => this.get(name, version);
  }
}

function recordContext(name: string, version: number): string {
  return `snapfn deployment ${name} v${version}`;
}
