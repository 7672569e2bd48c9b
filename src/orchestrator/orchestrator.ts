import { context, trace, type Span } from '@opentelemetry/api';
import { NotFoundError, SnapfnError } from '../errors.ts';
import type { InvocationOutcome, WireRequest } from '../schemas/invocation.ts';
import type { ProgressFn, Sandbox, SandboxDriver, Template, TemplateSource } from '../sandbox/driver.ts';
import { SandboxCapacity } from './capacity.ts';
import type { Deployment, InvocationEngine, InvokeResult, OrchestratorStats, PhaseTimings } from './types.ts';

const tracer = trace.getTracer('snapfn');

export interface OrchestratorOptions<D extends SandboxDriver = SandboxDriver> {
  driver: D;
  /** Node-wide cap on live sandboxes (pooled, kept warm, busy and starting). */
  maxSandboxes: number;
  /** Default warm pool size per active function (a function's config.poolSize overrides it). */
  poolSize: number;
  /** How long an invocation may wait for a free sandbox before a 429. */
  maxWaitMs?: number;
  /** Paused keepWarm sandboxes kept per function. */
  maxIdlePerFunction?: number;
}

/** The serving state of one active function on this node. */
interface ActiveFunction {
  deployment: Deployment;
  template: Template;
  /** Pre-restored, never-used sandboxes. */
  pool: Sandbox[];
  /** Paused keepWarm sandboxes, used before. */
  idle: Sandbox[];
  filling: number;
  fillFailures: number;
}

/**
 * Turns invocations into sandboxes: a pool hit, a keepWarm reuse, or a
 * restore from the template, under a node-wide cap; afterwards the sandbox
 * is discarded (per-request isolation) or paused for reuse.
 */
export class Orchestrator<D extends SandboxDriver = SandboxDriver> implements InvocationEngine {
  readonly #driver: D;
  readonly #capacity: SandboxCapacity;
  readonly #defaultPoolSize: number;
  readonly #maxWaitMs: number;
  readonly #maxIdle: number;
  readonly #functions = new Map<string, ActiveFunction>();
  readonly #teardowns = new Set<Promise<void>>();
  #busy = 0;
  #poolHits = 0;
  #poolMisses = 0;
  #templateBuilds = 0;
  #closed = false;

  constructor(options: OrchestratorOptions<D>) {
    this.#driver = options.driver;
    this.#capacity = new SandboxCapacity(options.maxSandboxes);
    this.#defaultPoolSize = options.poolSize;
    this.#maxWaitMs = options.maxWaitMs ?? 30_000;
    this.#maxIdle = options.maxIdlePerFunction ?? 2;
  }

  get driver(): D {
    return this.#driver;
  }

  async buildTemplate(source: TemplateSource, onProgress?: ProgressFn): Promise<Template> {
    return tracer.startActiveSpan('template build', async (span) => {
      try {
        const template = await this.#driver.buildTemplate(source, onProgress);
        this.#templateBuilds++;
        return template;
      } finally {
        span.end();
      }
    });
  }

  async activate(deployment: Deployment): Promise<void> {
    const template = await this.#driver.loadTemplate(deployment.templateId);
    if (!template) throw new NotFoundError(`template ${deployment.templateId} of ${deployment.name} v${deployment.version} is not built on this node`);
    const previous = this.#functions.get(deployment.name);
    if (previous && previous.template.id === template.id) {
      previous.deployment = deployment;
    } else {
      if (previous) this.#drain(previous);
      this.#functions.set(deployment.name, { deployment, template, pool: [], idle: [], filling: 0, fillFailures: 0 });
    }
    this.#refill();
  }

  async deactivate(name: string): Promise<void> {
    const fn = this.#functions.get(name);
    if (!fn) return;
    this.#functions.delete(name);
    this.#drain(fn);
  }

  freeCapacity(): number {
    let idle = 0;
    for (const fn of this.#functions.values()) idle += fn.pool.length + fn.idle.length;
    return this.#capacity.free + idle;
  }

  stats(): OrchestratorStats {
    const pooled: Record<string, number> = {};
    for (const [name, fn] of this.#functions) pooled[name] = fn.pool.length;
    return {
      liveSandboxes: this.#driver.liveSandboxes(),
      maxSandboxes: this.#capacity.max,
      busySandboxes: this.#busy,
      pooled,
      poolHits: this.#poolHits,
      poolMisses: this.#poolMisses,
      templateBuilds: this.#templateBuilds,
    };
  }

  driverInfo(): { name: string; platform: string } {
    return { name: this.#driver.name, platform: this.#driver.platform };
  }

  /** Ids of pre-restored sandboxes waiting in warm pools (for memory measurements). */
  pooledSandboxIds(): string[] {
    return [...this.#functions.values()].flatMap((fn) => fn.pool.map((s) => s.id));
  }

  async invoke(deployment: Deployment, request: WireRequest, options: { invocationId: string }): Promise<InvokeResult> {
    if (this.#closed) throw new SnapfnError('shutting_down', 503, 'this node is shutting down');
    let fn = this.#functions.get(deployment.name);
    if (!fn || fn.template.id !== deployment.templateId) {
      await this.activate(deployment);
      fn = this.#functions.get(deployment.name)!;
    }
    return tracer.startActiveSpan('invoke', { attributes: { 'fn.name': deployment.name, 'invocation.id': options.invocationId } }, async (span) => {
      try {
        const acquired = await this.#acquire(fn!, span);
        if ('failure' in acquired) return { outcome: acquired.failure, timings: acquired.timings };
        const { sandbox, timings } = acquired;
        this.#busy++;
        const started = performance.now();
        let outcome: InvocationOutcome;
        try {
          outcome = await sandbox.invoke(request, { timeoutMs: deployment.config.timeoutMs, env: deployment.env, invocationId: options.invocationId });
        } finally {
          this.#busy--;
        }
        timings.handlerMs = performance.now() - started;
        // Teardown (runsc kill/pause) and the pool refill after it are CPU
        // work: let the caller send its response first.
        setImmediate(() => this.#release(fn!, sandbox));
        return { outcome, timings };
      } finally {
        span.end();
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#capacity.rejectAll(new SnapfnError('shutting_down', 503, 'this node is shutting down'));
    for (const fn of this.#functions.values()) this.#drain(fn);
    this.#functions.clear();
    await Promise.allSettled([...this.#teardowns]);
    await this.#driver.close();
  }

  async #acquire(fn: ActiveFunction, span: Span): Promise<{ sandbox: Sandbox; timings: PhaseTimings } | { failure: InvocationOutcome; timings: PhaseTimings }> {
    const timings: PhaseTimings = { acquireMs: 0, restoreMs: 0, handlerMs: 0, source: 'restore' };
    const started = performance.now();
    while (fn.idle.length > 0) {
      const sandbox = fn.idle.pop()!;
      try {
        await sandbox.unpause();
        if (!sandbox.dead) {
          timings.source = 'keep-warm';
          timings.acquireMs = performance.now() - started;
          span.setAttribute('sandbox.source', timings.source);
          return { sandbox, timings };
        }
      } catch {
        // fall through: discard it and try the next way
      }
      this.#discard(sandbox);
    }
    while (fn.pool.length > 0) {
      const sandbox = fn.pool.shift()!;
      if (sandbox.dead) {
        this.#discard(sandbox);
        continue;
      }
      this.#poolHits++;
      timings.source = 'pool';
      timings.acquireMs = performance.now() - started;
      span.setAttribute('sandbox.source', timings.source);
      // No refill here: a restore started now would share the two cores with
      // this very invocation. It starts once this sandbox is released.
      return { sandbox, timings };
    }
    this.#poolMisses++;
    await tracer.startActiveSpan('queue wait', async (wait) => {
      try {
        if (!this.#capacity.tryReserve() && !this.#evictIdle(fn)) await this.#capacity.reserve(this.#maxWaitMs);
      } finally {
        wait.end();
      }
    });
    timings.acquireMs = performance.now() - started;
    const restoreStarted = performance.now();
    span.setAttribute('sandbox.source', 'restore');
    try {
      const sandbox = await this.#restore(fn);
      timings.restoreMs = performance.now() - restoreStarted;
      return { sandbox, timings };
    } catch (err) {
      this.#capacity.release();
      timings.restoreMs = performance.now() - restoreStarted;
      return {
        failure: { ok: false, error: { code: 'restore_failed', message: `could not restore a sandbox for ${fn.deployment.name} (tried twice): ${(err as Error).message}` }, logs: [], logsTruncated: false },
        timings,
      };
    }
  }

  /** Restore with one retry: a restore can fail transiently under load. */
  async #restore(fn: ActiveFunction): Promise<Sandbox> {
    const options = { memoryMb: fn.deployment.config.memoryMb, network: fn.deployment.config.network };
    try {
      return await this.#driver.resume(fn.template, options);
    } catch {
      return await this.#driver.resume(fn.template, options);
    }
  }

  #release(fn: ActiveFunction, sandbox: Sandbox): void {
    const current = this.#functions.get(fn.deployment.name);
    // Not while others wait for a place: an idle sandbox keeps its place, and
    // a waiter is only woken by a place being released, so it would starve
    // (queued jobs that over-committed the node did, for their full maxWaitMs).
    const reusable = fn.deployment.config.keepWarm && !sandbox.dead && current === fn && fn.idle.length < this.#maxIdle && !this.#closed && this.#capacity.waiting === 0;
    if (!reusable) {
      this.#discard(sandbox);
      return;
    }
    this.#track(
      tracer.startActiveSpan('teardown', { attributes: { 'teardown.kind': 'pause' } }, async (span) => {
        try {
          await sandbox.pause();
          if (this.#functions.get(fn.deployment.name) === fn && !this.#closed && this.#capacity.waiting === 0) fn.idle.push(sandbox);
          else this.#discard(sandbox);
        } catch {
          this.#discard(sandbox);
        } finally {
          span.end();
        }
      }),
    );
  }

  /** Destroys in the background; its capacity place is freed when it is gone. */
  #discard(sandbox: Sandbox, options: { keepPlace?: boolean } = {}): void {
    this.#track(
      tracer.startActiveSpan('teardown', { attributes: { 'teardown.kind': 'destroy' } }, context.active(), async (span) => {
        try {
          await sandbox.destroy();
        } finally {
          span.end();
          if (!options.keepPlace) {
            this.#capacity.release();
            this.#refill();
          }
        }
      }),
    );
  }

  /** Frees a place held by an idle sandbox of another function (or this one's pool). Its place passes to the caller. */
  #evictIdle(requester: ActiveFunction): boolean {
    const candidates = [...this.#functions.values()].sort((a, b) => (a === requester ? 1 : 0) - (b === requester ? 1 : 0));
    for (const fn of candidates) {
      const victim = fn.idle.shift() ?? (fn === requester ? undefined : fn.pool.shift());
      if (victim) {
        this.#discard(victim, { keepPlace: true });
        return true;
      }
    }
    return false;
  }

  #drain(fn: ActiveFunction): void {
    for (const sandbox of [...fn.pool, ...fn.idle]) this.#discard(sandbox);
    fn.pool = [];
    fn.idle = [];
  }

  /** Tops warm pools up using free capacity only; never waits, never evicts. */
  #refill(): void {
    if (this.#closed) return;
    for (const fn of this.#functions.values()) {
      const target = fn.deployment.config.poolSize ?? this.#defaultPoolSize;
      // One restore at a time per function keeps pool filling from starving
      // the request path on a small machine; failures back off.
      if (fn.pool.length + fn.filling >= target || fn.filling > 0 || fn.fillFailures > 3) continue;
      if (this.#capacity.waiting > 0 || !this.#capacity.tryReserve()) return;
      fn.filling++;
      this.#track(
        this.#driver
          .resume(fn.template, { memoryMb: fn.deployment.config.memoryMb, network: fn.deployment.config.network })
          .then(async (sandbox) => {
            await sandbox.warmup().catch(() => {});
            return sandbox;
          })
          .then(
            (sandbox) => {
              fn.fillFailures = 0;
              if (this.#functions.get(fn.deployment.name) === fn && !this.#closed) fn.pool.push(sandbox);
              else this.#discard(sandbox);
            },
            () => {
              fn.fillFailures++;
              this.#capacity.release();
              setTimeout(() => {
                fn.fillFailures = Math.min(fn.fillFailures, 3);
                this.#refill();
              }, 2000 * fn.fillFailures).unref();
            },
          )
          .finally(() => {
            fn.filling--;
            this.#refill();
          }),
      );
    }
  }

  #track(p: Promise<void>): void {
    this.#teardowns.add(p);
    void p.finally(() => this.#teardowns.delete(p)).catch(() => {});
  }
}
