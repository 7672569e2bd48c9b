import fs from 'node:fs/promises';
import path from 'node:path';
import { echo, InvalidInputError, NotFoundError } from '../errors.ts';
import type { Deployment } from '../orchestrator/types.ts';
import { FunctionName, type FunctionConfig } from '../schemas/function-config.ts';
import { readJsonFile, writeFileAtomic, writeFileExclusive } from './atomic-file.ts';
import { InvocationLog } from './invocation-log.ts';
import { KeyedMutex } from './keyed-mutex.ts';
import { BlobStore } from './blob-store.ts';
import { SourceStore } from './source-store.ts';
import { FunctionRecord, SecretsFile, VersionRecord } from './records.ts';

export { FunctionRecord, VersionRecord } from './records.ts';

/** Everything needed to serve a function's active version, resolved once and cached. */
export interface ServingVersion {
  fn: FunctionRecord;
  version: VersionRecord;
  deployment: Deployment;
  /** For redacting them out of captured logs and error messages. */
  secretValues: string[];
}

export interface NewVersion {
  templateId: string;
  source: VersionRecord['source'];
  config: FunctionConfig;
  env: Record<string, string>;
  secrets: Record<string, string>;
  bundleHash: string;
  fingerprint: string;
}

export interface FunctionStoreOptions {
  /** Size at which a function's invocation log rotates (one old generation is kept). */
  maxLogBytes?: number;
}

const SECRETS_MODE = 0o600;
/** Records of a function (its env values included): as private as the directory they are in. */
const PRIVATE_FILE_MODE = 0o600;
const PRIVATE_DIR_MODE = 0o700;

/**
 * Functions and their immutable versions under `<home>/functions/<name>/`:
 *
 *   function.json          name, active version, timestamps
 *   versions/<n>.json      one VersionRecord per version, never rewritten
 *   secrets.json           secret values per version (0600, never returned by the API)
 *   bundles/<sha256>.mjs   the bundled handler of a version deployed before sources were kept whole
 *   logs/                  invocation log (see InvocationLog)
 *
 * A version's source (the whole function directory as mounted at /fn) is
 * kept by content: `<home>/sources/<sha256>.json` lists its files, whose
 * bytes live once in `<home>/blobs` (see SourceStore, BlobStore).
 *
 * Only this process writes these files, so an in-memory cache of what each
 * function serves is coherent; every write goes through a per-function lock.
 */
export class FunctionStore {
  readonly root: string;
  readonly logs: InvocationLog;
  /** File contents by sha256, shared by every function (uploads land here). */
  readonly blobs: BlobStore;
  readonly sources: SourceStore;
  readonly #mutex = new KeyedMutex();
  readonly #serving = new Map<string, Promise<ServingVersion | undefined>>();

  private constructor(root: string, logs: InvocationLog, blobs: BlobStore, sources: SourceStore) {
    this.root = root;
    this.logs = logs;
    this.blobs = blobs;
    this.sources = sources;
  }

  static async open(home: string, options: FunctionStoreOptions = {}): Promise<FunctionStore> {
    const root = path.join(home, 'functions');
    await fs.mkdir(root, { recursive: true, mode: PRIVATE_DIR_MODE });
    // Versions, secrets and invocation logs are under it: closed to others, also in a home an older snapfn made.
    await fs.chmod(root, PRIVATE_DIR_MODE);
    const logs = new InvocationLog((name) => path.join(root, checkedName(name), 'logs'), { maxBytes: options.maxLogBytes });
    const blobs = new BlobStore(path.join(home, 'blobs'));
    return new FunctionStore(root, logs, blobs, new SourceStore(path.join(home, 'sources'), blobs));
  }

  /** Runs `work` with exclusive write access to function `name`. */
  lock<T>(name: string, work: () => Promise<T>): Promise<T> {
    return this.#mutex.run(checkedName(name), work);
  }

  async list(): Promise<FunctionRecord[]> {
    const entries = await fs.readdir(this.root, { withFileTypes: true });
    const records = await Promise.all(entries.filter((e) => e.isDirectory() && FunctionName.safeParse(e.name).success).map((e) => this.get(e.name)));
    return records.filter((r): r is FunctionRecord => r !== undefined).sort((a, b) => a.name.localeCompare(b.name));
  }

  async get(name: string): Promise<FunctionRecord | undefined> {
    const raw = await readJsonFile(path.join(this.#dir(name), 'function.json'));
    return raw === undefined ? undefined : FunctionRecord.parse(raw);
  }

  async require(name: string): Promise<FunctionRecord> {
    const fn = await this.get(name);
    if (!fn) throw new NotFoundError(`no function named ${echo(name)}`);
    return fn;
  }

  async versions(name: string): Promise<VersionRecord[]> {
    const dir = path.join(this.#dir(name), 'versions');
    const files = await fs.readdir(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
    const versions = await Promise.all(files.filter((f) => /^\d+\.json$/.test(f)).map(async (f) => VersionRecord.parse(await readJsonFile(path.join(dir, f)))));
    return versions.sort((a, b) => a.version - b.version);
  }

  async version(name: string, version: number): Promise<VersionRecord | undefined> {
    const raw = await readJsonFile(path.join(this.#dir(name), 'versions', `${version}.json`));
    return raw === undefined ? undefined : VersionRecord.parse(raw);
  }

  /** The active version of `name`, ready to invoke; undefined when the function does not exist or never activated. */
  serving(name: string): Promise<ServingVersion | undefined> {
    const key = checkedName(name);
    let cached = this.#serving.get(key);
    if (!cached) {
      cached = this.#loadServing(key);
      this.#serving.set(key, cached);
      cached.catch(() => this.#serving.delete(key));
    }
    return cached;
  }

  async deploymentOf(name: string, version: VersionRecord): Promise<Deployment> {
    return deploymentFrom(name, version, await this.secretsOf(name, version.version));
  }

  /**
   * A deployment as queued jobs name it: a pinned version, or 'active'.
   * NotFoundError when the function or version is gone (the job is then
   * dead-lettered, not retried).
   */
  async resolveDeployment(name: string, version: number | 'active'): Promise<Deployment> {
    const serving = await this.serving(name);
    if (!serving) throw new NotFoundError(`no function named ${name} with an active version`);
    // The common case, from the cache: the job pinned the version that still serves.
    if (version === 'active' || version === serving.version.version) return serving.deployment;
    const record = await this.version(name, version);
    if (!record) throw new NotFoundError(`${name} has no version ${version}`);
    return this.deploymentOf(name, record);
  }

  /** Secret values of a version, for redacting what it printed. */
  async secretValuesOf(name: string, version: number): Promise<string[]> {
    const serving = await this.serving(name).catch(() => undefined);
    if (serving?.version.version === version) return serving.secretValues;
    return Object.values(await this.secretsOf(name, version));
  }

  async secretsOf(name: string, version: number): Promise<Record<string, string>> {
    const all = await this.#readSecrets(name);
    return all[String(version)] ?? {};
  }

  /** Where a version deployed before whole sources were kept has its single-file bundle. */
  legacyBundleFile(name: string, bundleHash: string): string {
    return path.join(this.#dir(name), 'bundles', `${bundleHash}.mjs`);
  }

  /**
   * Stores a version (not yet active); creates the function on its first
   * version. `sourceDir` (the prepared function directory) may be omitted
   * when a version with the same bundleHash already stored it. Call under `lock(name)`.
   */
  async addVersion(name: string, draft: NewVersion, sourceDir: string | undefined): Promise<VersionRecord> {
    const dir = this.#dir(name);
    const now = new Date().toISOString();
    await fs.mkdir(path.join(dir, 'versions'), { recursive: true, mode: PRIVATE_DIR_MODE });
    await fs.mkdir(path.join(dir, 'logs'), { recursive: true, mode: PRIVATE_DIR_MODE });
    const fn = (await this.get(name)) ?? { name, active: null, createdAt: now, updatedAt: now };
    const existing = await this.versions(name);
    const number = (existing.at(-1)?.version ?? 0) + 1;
    const record = VersionRecord.parse({
      version: number,
      templateId: draft.templateId,
      createdAt: now,
      source: draft.source,
      config: draft.config,
      env: draft.env,
      secretNames: Object.keys(draft.secrets).sort(),
      bundleHash: draft.bundleHash,
      fingerprint: draft.fingerprint,
    });
    if (!(await this.sources.has(draft.bundleHash)) && !(await exists(this.legacyBundleFile(name, draft.bundleHash)))) {
      if (sourceDir === undefined) throw new NotFoundError(`the source ${draft.bundleHash} of ${name} is not stored`);
      await this.sources.save(draft.bundleHash, sourceDir);
    }
    if (record.secretNames.length > 0) {
      const secrets = await this.#readSecrets(name);
      secrets[String(number)] = { ...draft.secrets };
      await writeFileAtomic(path.join(dir, 'secrets.json'), JSON.stringify(secrets), { mode: SECRETS_MODE });
    }
    // Exclusive: two writers racing for one number is a bug the lock should have prevented; fail loudly.
    await writeFileExclusive(path.join(dir, 'versions', `${number}.json`), JSON.stringify(record, null, 2), { mode: PRIVATE_FILE_MODE });
    if (!(await this.get(name))) await writeFileAtomic(path.join(dir, 'function.json'), JSON.stringify(fn, null, 2), { mode: PRIVATE_FILE_MODE });
    this.#serving.delete(name);
    return record;
  }

  /** Points `name` at `version`, atomically. Call under `lock(name)`. */
  async setActive(name: string, version: number): Promise<FunctionRecord> {
    const fn = await this.require(name);
    if (!(await this.version(name, version))) throw new NotFoundError(`${name} has no version ${version}`);
    const updated: FunctionRecord = { ...fn, active: version, updatedAt: new Date().toISOString() };
    await writeFileAtomic(path.join(this.#dir(name), 'function.json'), JSON.stringify(updated, null, 2), { mode: PRIVATE_FILE_MODE });
    this.#serving.delete(name);
    return updated;
  }

  /** Deletes the function with all its versions, secrets and logs. Call under `lock(name)`. */
  async remove(name: string): Promise<boolean> {
    const fn = await this.get(name);
    if (!fn) return false;
    // Rename first so that a concurrent reader sees either the whole function or nothing.
    const graveyard = path.join(this.root, `.deleted-${name}-${Date.now()}`);
    await fs.rename(this.#dir(name), graveyard);
    this.#serving.delete(name);
    this.logs.closeFollowers(name);
    await fs.rm(graveyard, { recursive: true, force: true });
    return true;
  }

  async close(): Promise<void> {
    this.logs.close();
    this.#serving.clear();
  }

  async #loadServing(name: string): Promise<ServingVersion | undefined> {
    const fn = await this.get(name);
    if (!fn || fn.active === null) return undefined;
    const version = await this.version(name, fn.active);
    if (!version) throw new NotFoundError(`${name} points at version ${fn.active}, which does not exist`);
    const secrets = await this.secretsOf(name, version.version);
    return { fn, version, deployment: deploymentFrom(name, version, secrets), secretValues: Object.values(secrets) };
  }

  async #readSecrets(name: string): Promise<SecretsFile> {
    const raw = await readJsonFile(path.join(this.#dir(name), 'secrets.json'));
    return raw === undefined ? {} : SecretsFile.parse(raw);
  }

  #dir(name: string): string {
    return path.join(this.root, checkedName(name));
  }
}

function deploymentFrom(name: string, version: VersionRecord, secrets: Record<string, string>): Deployment {
  const secretNames = Object.keys(secrets).sort();
  return { name, version: version.version, templateId: version.templateId, config: version.config, env: { ...version.env, ...secrets }, ...(secretNames.length > 0 ? { secretNames } : {}) };
}

/** Names become directory names: anything outside FunctionName never reaches the file system. */
function checkedName(name: string): string {
  const parsed = FunctionName.safeParse(name);
  if (!parsed.success) throw new InvalidInputError(`invalid function name ${JSON.stringify(echo(name))}: ${parsed.error.issues[0]?.message ?? 'not a valid name'}`);
  return parsed.data;
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}
