import { randomUUID } from 'node:crypto';
import { InvalidInputError, SnapfnError } from '../errors.ts';
import type { InvocationEngine } from '../orchestrator/types.ts';
import type { ProgressFn } from '../sandbox/driver.ts';
import { EvalRequest, type EvalInput, type EvalResult } from '../schemas/eval.ts';
import type { WireRequest } from '../schemas/invocation.ts';
import { RUNTIME_LANGUAGES, type RuntimeLanguage } from './eval-bundle.ts';
import { EvalDeployments } from './eval-deployments.ts';
import { failedResult, toEvalResult } from './eval-outcome.ts';
import { toScript } from './transpile.ts';

export interface EvalServiceOptions {
  engine: InvocationEngine;
  /** Where the per-language handler bundles are written, e.g. `$SNAPFN_HOME/eval`. */
  workDir: string;
  /** Whether a request may ask for outbound network (SNAPFN_EVAL_ALLOW_NETWORK). Default false. */
  allowNetwork?: boolean;
  /** Pre-restored sandboxes per language at the default memory (SNAPFN_EVAL_POOL_SIZE). Default 1. */
  poolSize?: number;
  /** Which runtimes get a template (typescript needs javascript). Default: all. */
  languages?: readonly RuntimeLanguage[];
  onProgress?: ProgressFn;
}

/**
 * Per-request isolated code evaluation: every call runs in a fresh sandbox
 * resumed from its language's eval template (a warm-pool sandbox when one is
 * ready) and discarded afterwards, so nothing survives between calls.
 */
export class EvalService {
  readonly allowNetwork: boolean;
  readonly #engine: InvocationEngine;
  readonly #deployments: EvalDeployments;
  #closed = false;

  private constructor(engine: InvocationEngine, deployments: EvalDeployments, allowNetwork: boolean) {
    this.#engine = engine;
    this.#deployments = deployments;
    this.allowNetwork = allowNetwork;
  }

  /** Builds (or finds, by content hash) the eval templates and fills their warm pools. */
  static async create(options: EvalServiceOptions): Promise<EvalService> {
    const deployments = await EvalDeployments.create({
      engine: options.engine,
      workDir: options.workDir,
      languages: options.languages ?? RUNTIME_LANGUAGES,
      poolSize: options.poolSize ?? 1,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
    return new EvalService(options.engine, deployments, options.allowNetwork ?? false);
  }

  /**
   * Runs one snippet. Invalid input throws InvalidInputError; a full node
   * (CapacityError) or a failed restore throw too. Everything the code
   * itself did, failures and limits included, comes back as an EvalResult.
   */
  async evaluate(input: EvalInput): Promise<EvalResult> {
    if (this.#closed) throw new SnapfnError('shutting_down', 503, 'the eval service is shut down');
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    const parsed = EvalRequest.safeParse(input);
    if (!parsed.success) throw new InvalidInputError(parsed.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; '));
    const request = parsed.data;
    if (request.network && !this.allowNetwork) {
      return failedResult('network_not_allowed', 'this server does not allow network access for evaluations (SNAPFN_EVAL_ALLOW_NETWORK)', elapsed());
    }
    const runtime: RuntimeLanguage = request.language === 'typescript' ? 'javascript' : request.language;
    const unavailable = this.#deployments.unavailable(runtime);
    if (unavailable) throw new SnapfnError('language_unavailable', 501, `${request.language} evaluation is not available on this server: ${unavailable}`);
    let code = request.code;
    if (request.language === 'javascript' || request.language === 'typescript') {
      const script = await toScript(request.language, code);
      if ('error' in script) return { ...failedResult('runtime_error', script.error, elapsed()), stderr: `${script.error}\n` };
      code = script.code;
    }
    const deployment = await this.#deployments.forRequest(runtime, request);
    const body = { language: runtime, code, stdin: request.stdin ?? '', timeoutMs: request.timeoutMs, memoryMb: request.memoryMb, files: request.files ?? {} };
    const wire: WireRequest = {
      method: 'POST',
      url: 'http://eval.snapfn.internal/',
      headers: [['content-type', 'application/json']],
      bodyBase64: Buffer.from(JSON.stringify(body)).toString('base64'),
    };
    const invoked = await this.#engine.invoke(deployment, wire, { invocationId: `eval-${randomUUID()}` });
    return toEvalResult(request, invoked, elapsed());
  }

  /** The templates evaluations run from (kept by the template collector). */
  templateIds(): string[] {
    return this.#deployments.templateIds();
  }

  /** Drops the eval deployments' warm pools. The engine belongs to the caller and stays open. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#deployments.close();
  }
}
