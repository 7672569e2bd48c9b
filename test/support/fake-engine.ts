import fs from 'node:fs';
import { SandboxCapacity } from '../../src/orchestrator/capacity.ts';
import type { Deployment, InvocationEngine, InvokeResult, OrchestratorStats } from '../../src/orchestrator/types.ts';
import { FunctionConfig } from '../../src/schemas/function-config.ts';
import type { WireRequest } from '../../src/schemas/invocation.ts';

/*
 * The engine boundary faked for queue-mechanics tests: a node with
 * `capacity` sandboxes (the real SandboxCapacity, so an over-commit waits in
 * FIFO exactly like the orchestrator), each invocation sleeping `invokeMs`.
 * The request URL steers it: ?fail=1 fails every attempt, ?failTimes=N the
 * first N attempts of an invocation, ?ms=N overrides the duration.
 */

export interface FakeCall {
  invocationId: string;
  name: string;
  version: number;
  startedAt: number;
  finishedAt: number;
}

export interface FakeEngineOptions {
  capacity?: number;
  invokeMs?: number;
  /** Appends `<invocationId>\n` per finished invocation: counts survive a SIGKILLed process. */
  recordFile?: string;
}

export class FakeEngine implements InvocationEngine {
  readonly calls: FakeCall[] = [];
  readonly capacity: SandboxCapacity;
  readonly invokeMs: number;
  readonly #recordFile: string | undefined;
  readonly #attempts = new Map<string, number>();
  #running = 0;
  maxRunning = 0;
  /** Most invocations ever waiting for a sandbox at once (queue over-commit). */
  maxWaiting = 0;

  constructor(options: FakeEngineOptions = {}) {
    this.capacity = new SandboxCapacity(options.capacity ?? 2);
    this.invokeMs = options.invokeMs ?? 20;
    this.#recordFile = options.recordFile;
  }

  async buildTemplate(): Promise<never> {
    throw new Error('the fake engine builds no templates');
  }
  async activate(): Promise<void> {}
  async deactivate(): Promise<void> {}

  async invoke(deployment: Deployment, request: WireRequest, options: { invocationId: string }): Promise<InvokeResult> {
    const acquireStarted = performance.now();
    const reservation = this.capacity.reserve(deployment.name, deployment.templateId, 30_000);
    this.maxWaiting = Math.max(this.maxWaiting, this.capacity.waiting);
    await reservation;
    const acquireMs = performance.now() - acquireStarted;
    this.#running++;
    this.maxRunning = Math.max(this.maxRunning, this.#running);
    const startedAt = Date.now();
    const url = new URL(request.url);
    const attempt = (this.#attempts.get(options.invocationId) ?? 0) + 1;
    this.#attempts.set(options.invocationId, attempt);
    try {
      await new Promise((r) => setTimeout(r, Number(url.searchParams.get('ms') ?? this.invokeMs)));
    } finally {
      this.#running--;
      this.capacity.release(deployment.name);
    }
    const finishedAt = Date.now();
    this.calls.push({ invocationId: options.invocationId, name: deployment.name, version: deployment.version, startedAt, finishedAt });
    if (this.#recordFile) fs.appendFileSync(this.#recordFile, `${options.invocationId}\n`);
    const failTimes = url.searchParams.get('fail') === '1' ? Infinity : Number(url.searchParams.get('failTimes') ?? 0);
    const timings = { acquireMs, restoreMs: 0, handlerMs: finishedAt - startedAt, source: 'pool' as const };
    if (attempt <= failTimes) {
      return { outcome: { ok: false, error: { code: 'handler_error', message: `attempt ${attempt} failed on purpose` }, logs: [], logsTruncated: false }, timings };
    }
    const body = Buffer.from(JSON.stringify({ id: options.invocationId, path: url.pathname + url.search, attempt })).toString('base64');
    return {
      outcome: { ok: true, response: { status: 200, headers: [['content-type', 'application/json']], bodyBase64: body }, logs: [{ stream: 'stdout', text: `ran ${options.invocationId}\n`, t: 0 }], logsTruncated: false },
      timings,
    };
  }

  freeCapacity(): number {
    return this.capacity.free;
  }

  stats(): OrchestratorStats {
    return { liveSandboxes: this.capacity.used, maxSandboxes: this.capacity.max, busySandboxes: this.#running, pooled: {}, poolHits: 0, poolMisses: 0, restores: 0, keepWarmReuses: 0, handoffs: 0, templateBuilds: 0 };
  }

  async close(): Promise<void> {}

  /** Executions per invocation id. */
  counts(): Map<string, number> {
    const m = new Map<string, number>();
    for (const c of this.calls) m.set(c.invocationId, (m.get(c.invocationId) ?? 0) + 1);
    return m;
  }
}

/** What a worker's resolveDeployment returns in fake tests: any name, any version. */
export async function fakeDeployment(name: string, version: number | 'active'): Promise<Deployment> {
  return { name, version: version === 'active' ? 1 : version, templateId: 'fake', config: FunctionConfig.parse({}), env: {} };
}

/** Executions per id from record files (several processes, possibly killed). */
export function recordedCounts(...files: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const file of files) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    for (const id of text.split('\n').filter(Boolean)) m.set(id, (m.get(id) ?? 0) + 1);
  }
  return m;
}
