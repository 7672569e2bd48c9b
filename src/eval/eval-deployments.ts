import path from 'node:path';
import type { Deployment, InvocationEngine } from '../orchestrator/types.ts';
import type { ProgressFn } from '../sandbox/driver.ts';
import { FunctionConfig } from '../schemas/function-config.ts';
import { singleModuleSource } from '../sandbox/template/function-source.ts';
import { templateGate } from '../sandbox/template/template-gate.ts';
import { writeEvalBundle, type RuntimeLanguage } from './eval-bundle.ts';

/**
 * Memory of the sandbox on top of what the snippet may use: envd (a node
 * process), gVisor's own kernel and the runner's interpreter. The snippet's
 * own limit (V8 heap, RLIMIT_AS) is exact; this cgroup limit is the backstop.
 */
const SANDBOX_OVERHEAD_MB = 192;
/** Sandbox memory is rounded up to one of these, so few deployments exist (one warm pool: the default). */
const MEMORY_BUCKETS_MB = [256, 512, 1024, 2048];
/** On top of the snippet's timeout: runner startup allowance (8 s, see eval-handler.mjs) and reporting. */
const HANDLER_GRACE_MS = 10_000;

/** Internal function names start with "__", which no deployed function name can (FunctionName). */
const PREFIX = '__eval-';

export interface EvalDeploymentsOptions {
  engine: InvocationEngine;
  workDir: string;
  languages: readonly RuntimeLanguage[];
  poolSize: number;
  onProgress?: ProgressFn;
}

/**
 * The eval templates (one per runtime language, built once, content
 * addressed) and the internal Deployments that serve them: one pooled
 * deployment per language at the default memory without network, others
 * activated on first use without a pool. All share their language's
 * template; only the sandbox's memory and network differ.
 */
export class EvalDeployments {
  readonly #engine: InvocationEngine;
  readonly #poolSize: number;
  readonly #templates = new Map<RuntimeLanguage, string>();
  readonly #active = new Map<string, Deployment>();
  readonly #unavailable = new Map<RuntimeLanguage, string>();

  private constructor(options: EvalDeploymentsOptions) {
    this.#engine = options.engine;
    this.#poolSize = options.poolSize;
  }

  static async create(options: EvalDeploymentsOptions): Promise<EvalDeployments> {
    const deployments = new EvalDeployments(options);
    // One at a time: a template build boots a sandbox at 1 GiB, and they compete for two cores.
    for (const language of options.languages) {
      try {
        const bundleFile = await writeEvalBundle(language, path.join(options.workDir, 'bundles'));
        const source = await singleModuleSource(bundleFile, path.join(options.workDir, 'sources'));
        // Build and activation under the template gate: the collector must not see the template unclaimed in between.
        await templateGate.shared(async () => {
          const template = await options.engine.buildTemplate({ functionName: `${PREFIX}${language}`, ...source, network: 'none', rootfs: 'eval' }, options.onProgress);
          deployments.#templates.set(language, template.id);
          await deployments.#activate(deployments.#describe(language, MEMORY_BUCKETS_MB[0]!, false));
        });
      } catch (err) {
        // A host without python still serves javascript and bash.
        deployments.#unavailable.set(language, (err as Error).message);
        options.onProgress?.('eval-language-unavailable', { language, reason: (err as Error).message });
      }
    }
    if (deployments.#templates.size === 0) throw new Error(`no eval template could be built: ${[...deployments.#unavailable].map(([l, why]) => `${l}: ${why}`).join('; ')}`);
    return deployments;
  }

  /** The per-language templates: the template collector must keep them. */
  templateIds(): string[] {
    return [...this.#templates.values()];
  }

  /** Why a language cannot be evaluated here, or undefined when it can. */
  unavailable(language: RuntimeLanguage): string | undefined {
    return this.#templates.has(language) ? undefined : (this.#unavailable.get(language) ?? 'not enabled on this server');
  }

  /** The deployment to invoke for one evaluation, with that evaluation's timeout. */
  async forRequest(language: RuntimeLanguage, request: { memoryMb: number; timeoutMs: number; network: boolean }): Promise<Deployment> {
    const bucket = MEMORY_BUCKETS_MB.find((mb) => mb >= request.memoryMb) ?? MEMORY_BUCKETS_MB.at(-1)!;
    const wanted = this.#describe(language, bucket, request.network);
    const deployment = this.#active.get(wanted.name) ?? (await this.#activate(wanted));
    // The orchestrator takes the invocation timeout from the deployment passed
    // in; memory, network and the pool come from the activated one.
    return { ...deployment, config: { ...deployment.config, timeoutMs: request.timeoutMs + HANDLER_GRACE_MS } };
  }

  async close(): Promise<void> {
    const names = [...this.#active.keys()];
    this.#active.clear();
    await Promise.all(names.map((name) => this.#engine.deactivate(name)));
  }

  #describe(language: RuntimeLanguage, bucketMb: number, network: boolean): Deployment {
    const templateId = this.#templates.get(language);
    if (!templateId) throw new Error(`no eval template for ${language}`);
    const pooled = bucketMb === MEMORY_BUCKETS_MB[0] && !network;
    const name = pooled ? `${PREFIX}${language}` : `${PREFIX}${language}-${bucketMb}m${network ? '-net' : ''}`;
    const config = FunctionConfig.parse({
      timeoutMs: HANDLER_GRACE_MS,
      memoryMb: bucketMb + SANDBOX_OVERHEAD_MB,
      keepWarm: false,
      network: network ? 'egress' : 'none',
      poolSize: pooled ? this.#poolSize : 0,
    });
    return { name, version: 1, templateId, config, env: {} };
  }

  async #activate(deployment: Deployment): Promise<Deployment> {
    await this.#engine.activate(deployment);
    this.#active.set(deployment.name, deployment);
    return deployment;
  }
}
