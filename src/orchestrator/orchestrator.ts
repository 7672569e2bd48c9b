import { trace, type Span } from '@opentelemetry/api';
import { NotFoundError, SnapfnError } from '../errors.ts';
import { isStreaming, type InvocationOutcome, type StreamingRequest, type WireRequest } from '../schemas/invocation.ts';
import type { ProgressFn, Sandbox, SandboxDriver, Template, TemplateSource } from '../sandbox/driver.ts';
import { SandboxCapacity, type Grant } from './capacity.ts';
import { Teardowns } from './teardowns.ts';
import { TemplateUse } from './template-use.ts';
import { templateGate } from '../sandbox/template/template-gate.ts';
import { activeFunction, isSound, type ActiveFunction } from './active-function.ts';
import { PoolTargets, type PoolPolicyOptions } from './pool-target.ts';
import type { Deployment, InvocationEngine, InvokeResult, OrchestratorStats, PhaseTimings } from './types.ts';

const tracer = trace.getTracer('snapfn');

export interface OrchestratorOptions<D extends SandboxDriver = SandboxDriver> {
  driver: D;
  /** Node-wide cap on live sandboxes (pooled, kept warm, busy and starting). */
  maxSandboxes: number;
  /**
   * A fixed warm pool size for every function without its own config.poolSize
   * (SNAPFN_POOL_SIZE). Unset: pools follow each function's traffic, down to config.minWarm.
   */
  poolSize?: number | undefined;
  /** The traffic-following pool's policy (src/orchestrator/pool-target.ts); checkMs: how often idle pools are looked at. */
  pool?: PoolPolicyOptions & { checkMs?: number; maxFills?: number };
  /** How long an invocation may wait for a free sandbox before a 429. */
  maxWaitMs?: number;
  /** SNAPFN_MAX_RESPONSE_BYTES: a response body past it fails with response_too_large. */
  maxResponseBytes?: number;
  /** SNAPFN_PAUSE_AFTER_MS: an idle keepWarm sandbox is frozen only after this long without an invocation (default 1000). */
  pauseAfterMs?: number;
  /** Paused keepWarm sandboxes kept per function once it has been quiet for idleTrimMs. */
  maxIdlePerFunction?: number;
  /** How long a burst's extra paused sandboxes outlive it (default 2 s). */
  idleTrimMs?: number;
}

/**
 * Turns invocations into sandboxes: a pool hit, a keepWarm reuse, or a
 * restore from the template, under a node-wide cap; afterwards the sandbox
 * is discarded (per-request isolation) or, for keepWarm, handed to the next
 * waiter of its function or paused for reuse (docs/engine.md, "keepWarm
 * under load").
 */
export class Orchestrator<D extends SandboxDriver = SandboxDriver> implements InvocationEngine {
  readonly #driver: D;
  readonly #capacity: SandboxCapacity<Sandbox>;
  readonly #defaultPoolSize: number | undefined;
  readonly #poolTargets: PoolTargets;
  readonly #poolCheckMs: number;
  readonly #maxFills: number;
  #shrinkTimer: NodeJS.Timeout | undefined;
  readonly #maxWaitMs: number;
  readonly #maxResponseBytes: number | undefined;
  readonly #pauseAfterMs: number;
  /** Idle keepWarm sandboxes not frozen yet, with the timer that will freeze them. */
  readonly #unpaused = new Map<Sandbox, NodeJS.Timeout>();
  readonly #maxIdle: number;
  readonly #idleTrimMs: number;
  readonly #functions = new Map<string, ActiveFunction>();
  readonly #teardowns: Teardowns;
  readonly #templateUse = new TemplateUse();
  #busy = 0;
  #inFlight = 0;
  #poolHits = 0;
  #poolMisses = 0;
  #restores = 0;
  #keepWarmReuses = 0;
  #handoffs = 0;
  #templateBuilds = 0;
  #closed = false;

  constructor(options: OrchestratorOptions<D>) {
    this.#driver = options.driver;
    this.#capacity = new SandboxCapacity<Sandbox>(options.maxSandboxes);
    this.#teardowns = new Teardowns(this.#capacity, () => this.#refill());
    this.#defaultPoolSize = options.poolSize;
    this.#poolTargets = new PoolTargets(options.pool);
    this.#poolCheckMs = options.pool?.checkMs ?? 1000;
    this.#maxFills = options.pool?.maxFills ?? 2;
    this.#maxWaitMs = options.maxWaitMs ?? 30_000;
    this.#maxResponseBytes = options.maxResponseBytes;
    this.#pauseAfterMs = options.pauseAfterMs ?? 1000;
    this.#maxIdle = options.maxIdlePerFunction ?? 2;
    this.#idleTrimMs = options.idleTrimMs ?? 2000;
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
    // Shared side of the template gate: the collector cannot remove the template between load and use.
    await templateGate.shared(async () => {
      const template = await this.#driver.loadTemplate(deployment.templateId);
      if (!template) throw new NotFoundError(`template ${deployment.templateId} of ${deployment.name} v${deployment.version} is not built on this node`);
      const previous = this.#functions.get(deployment.name);
      if (previous && previous.template.id === template.id) {
        previous.deployment = deployment;
      } else {
        if (previous) this.#drain(previous);
        this.#functions.set(deployment.name, activeFunction(deployment, template));
        this.#poolTargets.notePresence(deployment.name);
      }
    });
    this.#refill();
  }

  /** Templates this node needs right now: of active functions, and of every sandbox not yet destroyed. */
  templatesInUse(): string[] {
    return [...new Set([...[...this.#functions.values()].map((fn) => fn.template.id), ...this.#templateUse.ids()])];
  }

  async deactivate(name: string): Promise<void> {
    const fn = this.#functions.get(name);
    if (!fn) return;
    this.#functions.delete(name);
    this.#poolTargets.forget(name);
    this.#drain(fn);
  }

  /** Places an invocation could take now; for `name`, free slots of its busy sandboxes (config.concurrency) count too. */
  freeCapacity(name?: string): number {
    let idle = 0;
    for (const fn of this.#functions.values()) idle += fn.pool.length + fn.idle.length;
    const fn = name === undefined ? undefined : this.#functions.get(name);
    let slots = 0;
    if (fn) for (const entry of fn.serving.values()) if (entry.open) slots += Math.max(0, fn.deployment.config.concurrency - entry.running);
    return this.#capacity.free + idle + slots;
  }

  inFlight(): number {
    return this.#inFlight;
  }

  reusableFor(name: string): number {
    const fn = this.#functions.get(name);
    return fn?.deployment.config.keepWarm ? fn.busy : 0;
  }

  stats(): OrchestratorStats {
    const pooled: Record<string, number> = {};
    const poolTargets: Record<string, number> = {};
    for (const [name, fn] of this.#functions) {
      pooled[name] = fn.pool.length;
      poolTargets[name] = this.#poolTarget(fn);
    }
    return {
      liveSandboxes: this.#driver.liveSandboxes(),
      maxSandboxes: this.#capacity.max,
      busySandboxes: this.#busy,
      pooled,
      poolTargets,
      poolHits: this.#poolHits,
      poolMisses: this.#poolMisses,
      restores: this.#restores,
      keepWarmReuses: this.#keepWarmReuses,
      handoffs: this.#handoffs,
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

  async invoke(deployment: Deployment, request: StreamingRequest, options: { invocationId: string; stream?: boolean }): Promise<InvokeResult> {
    this.#poolTargets.noteArrival(deployment.name);
    if (this.#closed) throw new SnapfnError('shutting_down', 503, 'this node is shutting down');
    let fn = this.#functions.get(deployment.name);
    if (!fn || fn.template.id !== deployment.templateId) {
      await this.activate(deployment);
      fn = this.#functions.get(deployment.name)!;
    }
    return tracer.startActiveSpan('invoke', { attributes: { 'fn.name': deployment.name, 'invocation.id': options.invocationId } }, async (span) => {
      this.#inFlight++;
      try {
        const acquired = await this.#acquire(fn!, span);
        if ('failure' in acquired) return { outcome: acquired.failure, timings: acquired.timings };
        const { sandbox, timings } = acquired;
        if (!fn!.serving.has(sandbox)) fn!.serving.set(sandbox, { running: 1, open: true });
        this.#busy++;
        fn!.busy++;
        fn!.lastActive = performance.now();
        const started = performance.now();
        let outcome: InvocationOutcome;
        try {
          outcome = await sandbox.invoke(request, {
            timeoutMs: deployment.config.timeoutMs,
            env: deployment.env,
            invocationId: options.invocationId,
            functionName: deployment.name,
            version: deployment.version,
            memoryMb: deployment.config.memoryMb,
            maxResponseBytes: this.#maxResponseBytes,
            ...(options.stream ? { stream: true } : {}),
          });
        } finally {
          this.#busy--;
          fn!.busy--;
          fn!.lastActive = performance.now();
        }
        timings.handlerMs = performance.now() - started;
        // Teardown (runsc kill/pause) and the pool refill after it are CPU
        // work: let the caller send its response first. A streamed body and
        // ctx.waitUntil work keep the sandbox (and its place) until they end.
        const final = isStreaming(outcome) ? outcome.completion : Promise.resolve(outcome);
        const released = final.then(async (end) => {
          // Another invocation still runs in it (config.concurrency): it stays where it is.
          const { running, sound } = this.#leave(fn!, sandbox, isSound(sandbox, end));
          if (running > 0) return;
          if (sound && sandbox.settled) await sandbox.settled();
          await new Promise<void>((done) => setImmediate(() => (this.#release(fn!, sandbox, sound && !sandbox.dead), done())));
        });
        this.#teardowns.track(released);
        return { outcome, timings };
      } finally {
        this.#inFlight--;
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
    await this.#teardowns.settle();
    await this.#driver.close();
  }

  async #acquire(fn: ActiveFunction, span: Span): Promise<{ sandbox: Sandbox; timings: PhaseTimings } | { failure: InvocationOutcome; timings: PhaseTimings }> {
    const timings: PhaseTimings = { acquireMs: 0, restoreMs: 0, handlerMs: 0, source: 'restore' };
    const name = fn.deployment.name;
    const started = performance.now();
    // A sandbox already serving this function with a free slot takes it at once.
    const joined = this.#join(fn);
    if (joined) {
      this.#keepWarmReuses++;
      timings.source = 'keep-warm';
      span.setAttribute('sandbox.source', 'concurrent');
      return { sandbox: joined, timings };
    }
    const reused = (sandbox: Sandbox) => {
      this.#keepWarmReuses++;
      timings.source = 'keep-warm';
      timings.acquireMs = performance.now() - started;
      span.setAttribute('sandbox.source', timings.source);
      return { sandbox, timings };
    };
    while (fn.idle.length > 0) {
      const sandbox = fn.idle.pop()!;
      // Still running (its pause is only scheduled): no freezer round trip at all.
      if (this.#unpaused.has(sandbox)) {
        this.#forgetIdle(sandbox);
        if (!sandbox.dead) return reused(sandbox);
        this.#teardowns.destroy(name, sandbox);
        continue;
      }
      try {
        await sandbox.unpause();
        if (!sandbox.dead) return reused(sandbox);
      } catch {
        // fall through: discard it and try the next way
      }
      this.#teardowns.destroy(name, sandbox);
    }
    while (fn.pool.length > 0) {
      const sandbox = fn.pool.shift()!;
      if (sandbox.dead) {
        this.#teardowns.destroy(name, sandbox);
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
    // Everything up to the first await is synchronous: the place is taken
    // (or the waiter queued) before the caller yields, see freeCapacity().
    const grant = await tracer.startActiveSpan('queue wait', async (wait): Promise<Grant<Sandbox>> => {
      try {
        if (this.#capacity.tryReserve(name)) return { kind: 'place' };
        if (await this.#evictIdle(fn)) return { kind: 'place' };
        return await this.#capacity.reserve(name, fn.template.id, this.#maxWaitMs);
      } finally {
        wait.end();
      }
    });
    if (grant.kind === 'sandbox') {
      // Handed on by the invocation before us: its place comes with it.
      const { sandbox } = grant;
      this.#handoffs++;
      try {
        if (grant.paused) await sandbox.unpause();
        if (!sandbox.dead) return reused(sandbox);
      } catch {
        // dead after all: restore into its place once it is gone
      }
      this.#handoffs--;
      await this.#teardowns.destroyForPlace(name, sandbox);
    }
    timings.acquireMs = performance.now() - started;
    const restoreStarted = performance.now();
    span.setAttribute('sandbox.source', 'restore');
    try {
      const sandbox = await this.#restore(fn);
      timings.restoreMs = performance.now() - restoreStarted;
      return { sandbox, timings };
    } catch (err) {
      this.#capacity.release(name);
      timings.restoreMs = performance.now() - restoreStarted;
      return {
        failure: { ok: false, error: { code: 'restore_failed', message: `could not restore a sandbox for ${name} (tried twice): ${(err as Error).message}` }, logs: [], logsTruncated: false },
        timings,
      };
    }
  }

  /** Restore with one retry: a restore can fail transiently under load. */
  async #restore(fn: ActiveFunction): Promise<Sandbox> {
    this.#restores++;
    const options = { memoryMb: fn.deployment.config.memoryMb, network: fn.deployment.config.network };
    const resume = async () => {
      const started = performance.now();
      const sandbox = await this.#templateUse.resume(this.#driver, fn.template, options);
      this.#poolTargets.noteRestore(fn.deployment.name, performance.now() - started);
      return sandbox;
    };
    try {
      return await resume();
    } catch {
      return await resume();
    }
  }

  /**
   * After an invocation. Only a sound sandbox of a keepWarm function that
   * still serves is reused: straight to a waiter of its template, else paused
   * and kept — unless another function waits for its place (see
   * SandboxCapacity.offer for who wins).
   */
  #release(fn: ActiveFunction, sandbox: Sandbox, sound: boolean): void {
    if (!sound || sandbox.dead || !fn.deployment.config.keepWarm || !this.#serves(fn)) {
      this.#teardowns.destroy(fn.deployment.name, sandbox);
      return;
    }
    this.#offer(fn, sandbox, false);
  }

  #offer(fn: ActiveFunction, sandbox: Sandbox, paused: boolean): void {
    const name = fn.deployment.name;
    const decision = this.#capacity.offer(name, fn.template.id, sandbox, paused);
    if (decision.kind === 'handed') return;
    if (decision.kind === 'evict') {
      this.#teardowns.destroy(name, sandbox, { passPlace: decision.passPlace });
      return;
    }
    fn.idle.push(sandbox);
    this.#scheduleTrim(fn);
    if (paused) return;
    // Back-to-back invocations find it running; it is frozen only once it
    // has been idle for pauseAfterMs, so a steady stream never pays a
    // freezer round trip (and never races a pause for its sandbox).
    this.#unpaused.set(
      sandbox,
      setTimeout(() => {
        this.#forgetIdle(sandbox);
        const at = fn.idle.indexOf(sandbox);
        if (at < 0) return;
        fn.idle.splice(at, 1);
        this.#teardowns.pause(sandbox, (paused) => {
          // A waiter may have come while it paused: offer it again.
          if (paused && this.#serves(fn) && !sandbox.dead) this.#offer(fn, sandbox, true);
          else this.#teardowns.destroy(name, sandbox);
        });
      }, this.#pauseAfterMs).unref(),
    );
  }

  /** A serving sandbox of `fn` with a free slot (config.concurrency), its slot taken. */
  #join(fn: ActiveFunction): Sandbox | undefined {
    const slots = fn.deployment.config.concurrency;
    if (slots <= 1) return undefined;
    for (const [sandbox, entry] of fn.serving) {
      if (entry.open && entry.running < slots && !sandbox.dead) {
        entry.running++;
        return sandbox;
      }
    }
    return undefined;
  }

  /**
   * An invocation ended in `sandbox`: how many still run in it, and whether
   * it is still fit to serve. One that ended unsound closes the sandbox to
   * new invocations; the last to leave releases it.
   */
  #leave(fn: ActiveFunction, sandbox: Sandbox, sound: boolean): { running: number; sound: boolean } {
    const entry = fn.serving.get(sandbox);
    if (!entry) return { running: 0, sound };
    entry.running--;
    entry.open &&= sound;
    if (entry.running <= 0) fn.serving.delete(sandbox);
    return { running: Math.max(0, entry.running), sound: entry.open };
  }

  /** A sandbox leaves the idle list (reused, trimmed, evicted): its scheduled pause goes too. */
  #forgetIdle(sandbox: Sandbox): void {
    clearTimeout(this.#unpaused.get(sandbox));
    this.#unpaused.delete(sandbox);
  }

  /**
   * Beyond maxIdle, paused sandboxes are destroyed only once the function
   * has been quiet for idleTrimMs: in a burst whose requests trickle in
   * (through the queue, or a CPU-starved gateway) there are moments with
   * nobody waiting, and destroying then meant a restore for the next
   * request. Until trimmed they cost memory, not CPU, and another function
   * that needs a place evicts them at once.
   */
  #scheduleTrim(fn: ActiveFunction, delayMs = this.#idleTrimMs): void {
    if (fn.idle.length <= this.#maxIdle || fn.trimTimer) return;
    fn.trimTimer = setTimeout(() => {
      fn.trimTimer = undefined;
      if (!this.#serves(fn)) return;
      // Quiet means nothing ran for the whole delay, not a gap between two queue fetches.
      const quietFor = performance.now() - fn.lastActive;
      if (fn.busy > 0 || quietFor < this.#idleTrimMs) return this.#scheduleTrim(fn, Math.max(50, this.#idleTrimMs - quietFor));
      // The least recently used go first (idle is taken from the end).
      while (fn.idle.length > this.#maxIdle) {
        const sandbox = fn.idle.shift()!;
        this.#forgetIdle(sandbox);
        this.#teardowns.destroy(fn.deployment.name, sandbox);
      }
    }, delayMs);
    fn.trimTimer.unref();
  }

  #serves(fn: ActiveFunction): boolean {
    return !this.#closed && this.#functions.get(fn.deployment.name) === fn;
  }

  /**
   * Frees a place held by an idle sandbox of another function (or this
   * one's pool) for the requester: taken synchronously, resolved once the
   * victim is gone.
   */
  async #evictIdle(requester: ActiveFunction): Promise<boolean> {
    const candidates = [...this.#functions.values()].sort((a, b) => (a === requester ? 1 : 0) - (b === requester ? 1 : 0));
    for (const fn of candidates) {
      const victim = fn.idle.shift() ?? (fn === requester ? undefined : fn.pool.shift());
      if (victim) {
        this.#forgetIdle(victim);
        this.#capacity.transfer(fn.deployment.name, requester.deployment.name);
        await this.#teardowns.destroyForPlace(fn.deployment.name, victim);
        return true;
      }
    }
    return false;
  }

  #drain(fn: ActiveFunction): void {
    clearTimeout(fn.trimTimer);
    fn.trimTimer = undefined;
    for (const sandbox of [...fn.pool, ...fn.idle]) {
      this.#forgetIdle(sandbox);
      this.#teardowns.destroy(fn.deployment.name, sandbox);
    }
    fn.pool = [];
    fn.idle = [];
  }

  /** Tops warm pools up using free capacity only; never waits, never evicts. */
  #refill(): void {
    if (this.#closed) return;
    this.#scheduleShrink();
    let again = false;
    for (const fn of this.#functions.values()) {
      const target = this.#poolTarget(fn);
      // One restore at a time per function keeps pool filling from starving
      // the request path on a small machine; failures back off. A pool that
      // follows traffic runs two while it is two or more short: one at a
      // time cannot keep up once arrivals come about once per restore time.
      const fillsAtOnce = this.#adaptive(fn) && target - fn.pool.length >= 2 ? this.#maxFills : 1;
      if (fn.pool.length + fn.filling >= target || fn.filling >= fillsAtOnce || fn.fillFailures > 3) continue;
      if (this.#capacity.waiting > 0 || !this.#capacity.tryReserve(fn.deployment.name)) return;
      fn.filling++;
      again ||= fn.filling < fillsAtOnce && fn.pool.length + fn.filling < target;
      const fillStarted = performance.now();
      this.#teardowns.track(
        this.#templateUse
          .resume(this.#driver, fn.template, { memoryMb: fn.deployment.config.memoryMb, network: fn.deployment.config.network })
          .then(async (sandbox) => {
            await sandbox.warmup().catch(() => {});
            // Until it can serve: how long the pool stays one short.
            this.#poolTargets.noteRestore(fn.deployment.name, performance.now() - fillStarted);
            return sandbox;
          })
          .then(
            (sandbox) => {
              fn.fillFailures = 0;
              if (this.#functions.get(fn.deployment.name) === fn && !this.#closed) fn.pool.push(sandbox);
              else this.#teardowns.destroy(fn.deployment.name, sandbox);
            },
            () => {
              fn.fillFailures++;
              this.#capacity.release(fn.deployment.name);
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
    if (again) this.#refill();
  }

  /** Without its own poolSize or SNAPFN_POOL_SIZE, a fresh-per-request function's pool follows its traffic. */
  #adaptive(fn: ActiveFunction): boolean {
    const config = fn.deployment.config;
    return config.poolSize === undefined && this.#defaultPoolSize === undefined && !config.keepWarm;
  }

  /** keepWarm functions serve traffic from their own kept sandboxes: their pool stays at minWarm. */
  #poolTarget(fn: ActiveFunction): number {
    const config = fn.deployment.config;
    const fixed = config.poolSize ?? this.#defaultPoolSize;
    if (fixed !== undefined) return fixed;
    const minWarm = config.minWarm ?? 0;
    if (!this.#adaptive(fn)) return minWarm;
    return this.#poolTargets.target(fn.deployment.name, { minWarm, memoryMb: config.memoryMb, maxSandboxes: this.#capacity.max, current: fn.pool.length + fn.filling });
  }

  /**
   * Under traffic a pool shrinks by itself (taken sandboxes are not replaced
   * past a lower target); with no arrivals nothing takes them, so the
   * surplus of a function idle for the idle period is destroyed here.
   */
  #scheduleShrink(): void {
    if (this.#shrinkTimer || this.#closed) return;
    const above = [...this.#functions.values()].some((fn) => this.#adaptive(fn) && fn.pool.length + fn.filling > (fn.deployment.config.minWarm ?? 0));
    if (!above) return;
    this.#shrinkTimer = setTimeout(() => {
      this.#shrinkTimer = undefined;
      if (this.#closed) return;
      for (const fn of this.#functions.values()) {
        if (!this.#adaptive(fn) || !this.#poolTargets.idle(fn.deployment.name)) continue;
        const target = this.#poolTarget(fn);
        while (fn.pool.length > target) this.#teardowns.destroy(fn.deployment.name, fn.pool.shift()!);
      }
      this.#scheduleShrink();
    }, this.#poolCheckMs);
    this.#shrinkTimer.unref();
  }
}
