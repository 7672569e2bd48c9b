import type { InvokeOptions, ResumeOptions, Sandbox, SandboxDriver, Template } from '../../src/sandbox/driver.ts';
import type { InvocationOutcome, WireRequest } from '../../src/schemas/invocation.ts';

/*
 * The sandbox driver boundary faked for orchestrator unit tests: restores,
 * pauses and destroys take time and are counted, and a sandbox is live from
 * the start of its restore to the end of its destroy — the window the
 * node-wide cap must cover. The request URL steers an invocation:
 * ?ms=N handler time, ?crash=1 the sandbox dies (sandbox_crashed),
 * ?timeout=1 a timeout that leaves the sandbox looking alive (dead: false).
 */

export interface FakeDriverOptions {
  restoreMs?: number;
  pauseMs?: number;
  destroyMs?: number;
  invokeMs?: number;
}

export class FakeSandbox implements Sandbox {
  readonly id: string;
  readonly templateId: string;
  dead = false;
  paused = false;
  invocations = 0;
  readonly #driver: FakeDriver;

  constructor(driver: FakeDriver, id: string, templateId: string) {
    this.#driver = driver;
    this.id = id;
    this.templateId = templateId;
  }

  async invoke(request: WireRequest, options: InvokeOptions): Promise<InvocationOutcome> {
    if (this.dead) throw new Error(`invoke on dead sandbox ${this.id}`);
    if (this.paused) throw new Error(`invoke on paused sandbox ${this.id}`);
    this.invocations++;
    this.#driver.running++;
    this.#driver.maxRunning = Math.max(this.#driver.maxRunning, this.#driver.running);
    const url = new URL(request.url);
    try {
      await sleep(Number(url.searchParams.get('ms') ?? this.#driver.options.invokeMs));
    } finally {
      this.#driver.running--;
    }
    if (url.searchParams.get('crash') === '1') {
      this.dead = true;
      return { ok: false, error: { code: 'sandbox_crashed', message: 'the sandbox died' }, logs: [], logsTruncated: false };
    }
    if (url.searchParams.get('timeout') === '1') return { ok: false, error: { code: 'timeout', message: 'timed out' }, logs: [], logsTruncated: false };
    const body = { sandbox: this.id, n: this.invocations, invocationId: options.invocationId };
    return { ok: true, response: { status: 200, headers: [['content-type', 'application/json']], bodyBase64: Buffer.from(JSON.stringify(body)).toString('base64') }, logs: [], logsTruncated: false };
  }

  async warmup(): Promise<void> {}

  async pause(): Promise<void> {
    this.#driver.pauses++;
    await sleep(this.#driver.options.pauseMs);
    this.paused = true;
  }

  async unpause(): Promise<void> {
    this.#driver.unpauses++;
    await sleep(this.#driver.options.pauseMs);
    this.paused = false;
  }

  async destroy(): Promise<void> {
    if (this.#driver.destroyed.has(this.id)) return;
    this.dead = true;
    await sleep(this.#driver.options.destroyMs);
    if (this.#driver.destroyed.has(this.id)) return;
    this.#driver.destroyed.add(this.id);
    this.#driver.live--;
  }
}

export class FakeDriver implements SandboxDriver {
  readonly name = 'fake';
  readonly platform = 'none';
  readonly version = '1';
  readonly options: Required<FakeDriverOptions>;
  live = 0;
  maxLive = 0;
  running = 0;
  maxRunning = 0;
  resumes = 0;
  pauses = 0;
  unpauses = 0;
  readonly destroyed = new Set<string>();
  readonly sandboxes: FakeSandbox[] = [];

  constructor(options: FakeDriverOptions = {}) {
    this.options = { restoreMs: 30, pauseMs: 5, destroyMs: 10, invokeMs: 20, ...options };
  }

  async buildTemplate(): Promise<never> {
    throw new Error('the fake driver builds no templates');
  }

  async loadTemplate(id: string): Promise<Template> {
    return { id, driver: this.name, dir: '/nonexistent', handlerConfig: {}, buildMs: 0, imageBytes: 0 };
  }

  async resume(template: Template, _options: ResumeOptions): Promise<Sandbox> {
    const id = `sb-${++this.resumes}`;
    this.live++;
    this.maxLive = Math.max(this.maxLive, this.live);
    await sleep(this.options.restoreMs);
    const sandbox = new FakeSandbox(this, id, template.id);
    this.sandboxes.push(sandbox);
    return sandbox;
  }

  async coldBoot(): Promise<never> {
    throw new Error('the fake driver cannot cold boot');
  }

  liveSandboxes(): number {
    return this.live;
  }

  async close(): Promise<void> {}
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
