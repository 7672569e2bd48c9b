import { SnapfnError } from '../errors.ts';
import type { FunctionRecord, VersionRecord } from '../registry/records.ts';
import type { GcReport } from '../schemas/gc.ts';
import { templateGate, type TemplateGate } from '../sandbox/template/template-gate.ts';
import type { TemplateStore } from '../sandbox/template/template-store.ts';
import { retainedTemplates, type LiveReason } from './retention.ts';

export class CollectorClosedError extends SnapfnError {
  constructor() {
    super('shutting_down', 503, 'template garbage collection is shut down');
  }
}

/** The registry as the collector reads it (FunctionStore fits). */
export interface VersionSource {
  list(): Promise<FunctionRecord[]>;
  versions(name: string): Promise<VersionRecord[]>;
}

export interface TemplateCollectorOptions {
  templates: TemplateStore;
  registry: VersionSource;
  /** Templates this node's sandboxes run from or are being restored from (Orchestrator.templatesInUse). */
  inUse?: () => Iterable<string>;
  /** Templates of the eval service (per language). */
  evalTemplates?: () => Iterable<string>;
  /** Templates of deployments published to worker-only nodes (shared Redis): they may be running there. */
  published?: () => Promise<Iterable<string>>;
  /** Default number of newest versions per function whose templates are kept (besides the active one). */
  keepVersions: number;
  /**
   * Templates younger than this are kept whatever the registry says. Only
   * needed for a store shared with other gateways, whose builds do not go
   * through this process's gate.
   */
  minAgeMs: number;
  gate?: TemplateGate;
  log?: (line: string) => void;
  now?: () => number;
}

export interface CollectOptions {
  dryRun?: boolean;
  keepVersions?: number;
}

/**
 * Removes templates nothing needs any more (see retention.ts for what the
 * registry needs). Only the gateway runs one: the function registry is the
 * source of truth, and worker-only nodes run only published deployments,
 * which count as live (docs/gc.md).
 *
 * Safety: liveness is decided and the dead templates are renamed into the
 * trash under the exclusive side of the template gate, which every build
 * (build + version record + activation) and every activation holds shared;
 * sandboxes restored from a template count as in use until destroyed. The
 * slow part, deleting the trash, runs after the gate is released.
 */
export class TemplateCollector {
  readonly #o: TemplateCollectorOptions;
  readonly #gate: TemplateGate;
  #tail: Promise<unknown> = Promise.resolve();
  #background: Promise<void> | undefined;
  #again = false;
  #closed = false;

  constructor(options: TemplateCollectorOptions) {
    this.#o = options;
    this.#gate = options.gate ?? templateGate;
  }

  /** One collection; runs after any collection already under way. */
  collect(options: CollectOptions = {}): Promise<GcReport> {
    if (this.#closed) return Promise.reject(new CollectorClosedError());
    const run = this.#tail.then(() => this.#collect(options));
    this.#tail = run.catch(() => {});
    return run;
  }

  /**
   * Collects in the background, after a deploy or a delete: never throws,
   * never delays the caller; requests during a run coalesce into one more run.
   */
  schedule(reason: string): void {
    if (this.#closed) return;
    if (this.#background) {
      this.#again = true;
      return;
    }
    this.#background = (async () => {
      await new Promise<void>((resolve) => setImmediate(resolve));
      do {
        this.#again = false;
        try {
          const report = await this.collect();
          if (report.removed.length > 0) this.#o.log?.(`gc (${reason}): removed ${report.removed.length} template(s), ${report.bytesFreed} bytes`);
        } catch (err) {
          if (!(err instanceof CollectorClosedError)) this.#o.log?.(`gc (${reason}) failed: ${(err as Error).message}`);
        }
      } while (this.#again && !this.#closed);
    })().finally(() => {
      this.#background = undefined;
    });
  }

  /** Stops scheduling and waits for a run under way. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#background;
    await this.#tail;
  }

  async #collect(options: CollectOptions): Promise<GcReport> {
    const started = performance.now();
    const dryRun = options.dryRun ?? false;
    const keepVersions = options.keepVersions ?? this.#o.keepVersions;
    const { templates } = this.#o;
    // Network I/O stays outside the gate. A deployment published after this
    // read was activated under the gate, so the registry below covers it.
    const published = new Set(this.#o.published ? await this.#o.published() : []);
    const { removed, kept } = await this.#gate.exclusive(async () => {
      const live = await this.#liveSet(keepVersions, published);
      const removed: GcReport['removed'] = [];
      const kept: GcReport['kept'] = [];
      for (const t of await templates.list()) {
        const reason = live.get(t.id) ?? (this.#now() - t.createdAt.getTime() < this.#o.minAgeMs ? 'too-young' : undefined);
        if (reason) {
          kept.push({ id: t.id, reason });
          continue;
        }
        const bytes = await templates.sizeOf(t.id);
        if (dryRun || (await templates.moveToTrash(t.id))) removed.push({ id: t.id, bytes, createdAt: t.createdAt.toISOString() });
      }
      return { removed, kept };
    });
    if (!dryRun) await templates.emptyTrash();
    return {
      dryRun,
      keepVersions,
      removed,
      kept,
      bytesFreed: removed.reduce((sum, r) => sum + r.bytes, 0),
      durationMs: Math.round(performance.now() - started),
    };
  }

  async #liveSet(keepVersions: number, published: Set<string>): Promise<Map<string, LiveReason>> {
    const { registry } = this.#o;
    const functions = await Promise.all((await registry.list()).map(async (fn) => ({ name: fn.name, active: fn.active, versions: await registry.versions(fn.name) })));
    const live = retainedTemplates(functions, keepVersions);
    const add = (ids: Iterable<string> | undefined, reason: LiveReason) => {
      for (const id of ids ?? []) if (!live.has(id)) live.set(id, reason);
    };
    add(this.#o.inUse?.(), 'in-use');
    add(this.#o.evalTemplates?.(), 'eval');
    add(published, 'published');
    return live;
  }

  #now(): number {
    return this.#o.now ? this.#o.now() : Date.now();
  }
}
