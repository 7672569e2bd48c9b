import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { InvocationEngine } from '../orchestrator/types.ts';
import type { FunctionQueues } from '../queue/function-queues.ts';
import type { Template } from '../sandbox/driver.ts';
import type { FunctionStore } from '../registry/function-store.ts';
import type { DeployRequest } from '../schemas/api.ts';
import type { FunctionConfig } from '../schemas/function-config.ts';
import { mergeConfig } from './config-merge.ts';
import { InvalidConfigError } from './deploy-errors.ts';
import { prepareSource, type PreparedSource } from './prepare-source.ts';
import { deployFingerprint } from './fingerprint.ts';
import { activateVersion, type Released } from './activate.ts';
import { templateGate } from '../sandbox/template/template-gate.ts';
import { checkUploadSize, writeUpload } from './upload.ts';

export interface DeployDeps {
  engine: InvocationEngine;
  store: FunctionStore;
  maxDeployBytes: number;
  queue?: FunctionQueues | undefined;
}

export type DeployProgress = (step: string, detail?: Record<string, unknown>) => void;

export interface DeployOutcome extends Released {
  /** True when the active version already was exactly this deploy and nothing changed. */
  unchanged: boolean;
}

/**
 * A deploy in two phases. `prepare` does everything that can reject the
 * upload quickly (validation, size, transpiling, the static export check), so
 * those failures are ordinary HTTP errors; `run` does the slow part (template
 * build, activation) while progress streams to the client.
 */
export class PreparedDeploy {
  readonly request: DeployRequest;
  readonly source: PreparedSource;
  readonly fingerprint: string;
  readonly #deps: DeployDeps;
  readonly #workDir: string;

  private constructor(deps: DeployDeps, request: DeployRequest, workDir: string, source: PreparedSource) {
    this.#deps = deps;
    this.request = request;
    this.#workDir = workDir;
    this.source = source;
    this.fingerprint = deployFingerprint({ bundleHash: source.hash, config: request.config, env: request.env, secretNames: Object.keys(request.secrets ?? {}) });
  }

  /** Writes the upload and prepares it as the function directory. The caller must `close()` the result. */
  static async prepare(deps: DeployDeps, request: DeployRequest): Promise<PreparedDeploy> {
    checkUploadSize(request.files, deps.maxDeployBytes);
    const workDir = await fs.mkdtemp(path.join(os.tmpdir(), `snapfn-deploy-${request.name}-`));
    try {
      const sourceDir = path.join(workDir, 'src');
      await fs.mkdir(sourceDir);
      await writeUpload(sourceDir, request, { blobs: deps.store.blobs, maxBytes: deps.maxDeployBytes });
      const source = await prepareSource(sourceDir, { handler: request.config?.handler });
      return new PreparedDeploy(deps, request, workDir, source);
    } catch (err) {
      await fs.rm(workDir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Builds the template, stores a new version and makes it active. Any
   * failure leaves the previous version serving. Holds the shared side of
   * the template gate throughout: between the build and the version record
   * nothing else marks the new template as needed.
   */
  run(onProgress: DeployProgress = () => {}, options: { skipIfUnchanged?: boolean } = {}): Promise<DeployOutcome> {
    return templateGate.shared(() => this.#run(onProgress, options));
  }

  async #run(onProgress: DeployProgress, options: { skipIfUnchanged?: boolean }): Promise<DeployOutcome> {
    const { engine, store, queue } = this.#deps;
    const { name } = this.request;
    onProgress('prepared', { files: this.source.files, bytes: this.source.bytes, entry: this.source.entry, sourceHash: this.source.hash });
    if (options.skipIfUnchanged) {
      const unchanged = await this.#activeIfUnchanged();
      if (unchanged) return { ...unchanged, unchanged: true };
    }
    const patch = this.request.config ?? {};
    // The template's network mode is fixed at build time, but the handler's own
    // `export const config` (which may ask for egress) is only known once the
    // sandbox has imported it: build with the API's choice, and rebuild in the
    // rare case the handler's config turns out to need the other mode.
    let network: FunctionConfig['network'] = patch.network ?? 'none';
    let template = await this.#build(network, onProgress);
    const config = mergeConfig(template.handlerConfig, patch);
    if (config.handler !== patch.handler) {
      throw new InvalidConfigError('`handler` names the module to load, so it cannot come from that module\'s own `export const config`: give it to fn deploy --handler (or the API\'s config.handler)');
    }
    if (config.network !== network) {
      network = config.network;
      onProgress('rebuild', { network });
      template = await this.#build(network, onProgress);
    }
    onProgress('activating', { templateId: template.id });
    const secrets = this.request.secrets ?? {};
    const released = await store.lock(name, async () => {
      const version = await store.addVersion(
        name,
        { templateId: template.id, source: 'deploy', config, env: this.request.env ?? {}, secrets, bundleHash: this.source.hash, fingerprint: this.fingerprint },
        this.source.dir,
      );
      return activateVersion({ engine, store, queue }, name, version);
    });
    onProgress('activated', { version: released.version.version });
    return { ...released, unchanged: false };
  }

  async close(): Promise<void> {
    await fs.rm(this.#workDir, { recursive: true, force: true });
  }

  #build(network: FunctionConfig['network'], onProgress: DeployProgress): Promise<Template> {
    return this.#deps.engine.buildTemplate({ functionName: this.request.name, sourceDir: this.source.dir, sourceHash: this.source.hash, network }, onProgress);
  }

  async #activeIfUnchanged(): Promise<Released | undefined> {
    const { store } = this.#deps;
    const serving = await store.serving(this.request.name);
    if (!serving || serving.version.fingerprint !== this.fingerprint) return undefined;
    const stored = await store.secretsOf(this.request.name, serving.version.version);
    const wanted = this.request.secrets ?? {};
    const same = Object.keys(stored).length === Object.keys(wanted).length && Object.entries(wanted).every(([k, v]) => stored[k] === v);
    return same ? { fn: serving.fn, version: serving.version } : undefined;
  }
}
