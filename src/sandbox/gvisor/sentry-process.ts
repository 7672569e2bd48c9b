import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * The host process of one gVisor sandbox (the Sentry) and its cgroup freezer.
 *
 * Why not the runsc CLI: `runsc kill`, `pause` and `resume` each start a Go
 * binary that connects to the sandbox over urpc, ~30-60 ms of CPU per call on
 * this host, and on the request path for keepWarm. A signal and a write to a
 * cgroup file do the same job in microseconds:
 * - destroy: SIGKILL the Sentry; the foreground `runsc run/restore` that
 *   started it sees it die and removes its state, gofer and cgroups itself.
 * - pause/unpause: freeze/thaw the sandbox's own cgroup (as runc does). The
 *   Sentry and its ptrace stubs stop together; its clocks jump on thaw just as
 *   after `runsc pause`.
 */
export class SentryProcess {
  readonly pid: number;
  readonly #containerId: string;
  readonly #freezer: Freezer | undefined;

  private constructor(pid: number, containerId: string, freezer: Freezer | undefined) {
    this.pid = pid;
    this.#containerId = containerId;
    this.#freezer = freezer;
  }

  /** Reads runsc's state file; undefined when it has no sandbox pid (another runsc version). */
  static async find(stateRoot: string, containerId: string): Promise<SentryProcess | undefined> {
    const file = path.join(stateRoot, `${containerId}_sandbox:${containerId}.state`);
    const state = await fs.readFile(file, 'utf8').then(
      (text) => JSON.parse(text) as { sandbox?: { pid?: unknown } },
      () => undefined,
    );
    const pid = state?.sandbox?.pid;
    if (typeof pid !== 'number' || pid <= 1) return undefined;
    if (!(await isSentryOf(pid, containerId))) return undefined;
    return new SentryProcess(pid, containerId, await findFreezer(pid, containerId));
  }

  get canFreeze(): boolean {
    return this.#freezer !== undefined;
  }

  /** SIGKILL, only while the pid still belongs to this sandbox (pids get reused). False if it was gone. */
  async kill(): Promise<boolean> {
    if (!(await isSentryOf(this.pid, this.#containerId))) return false;
    // A task frozen by a cgroup v1 freezer does not die until it is thawed.
    if (this.#freezer) await this.#freezer.thaw().catch(() => {});
    try {
      process.kill(this.pid, 'SIGKILL');
      return true;
    } catch {
      return false;
    }
  }

  /** Resolves once every task of the sandbox is frozen; throws if it cannot be (the caller falls back to `runsc pause`). */
  async freeze(timeoutMs = 1000): Promise<void> {
    if (!this.#freezer) throw new Error('no cgroup freezer of its own for this sandbox');
    await this.#freezer.freeze(timeoutMs);
  }

  async thaw(): Promise<void> {
    if (!this.#freezer) throw new Error('no cgroup freezer of its own for this sandbox');
    await this.#freezer.thaw();
  }
}

interface Freezer {
  freeze(timeoutMs: number): Promise<void>;
  thaw(): Promise<void>;
}

async function isSentryOf(pid: number, containerId: string): Promise<boolean> {
  const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.includes('runsc') && cmdline.includes(containerId);
}

/**
 * The freezer of the sandbox's OWN cgroup. With --ignore-cgroups the Sentry
 * sits in its parent's cgroup (ours): freezing that would freeze snapfn, so a
 * cgroup whose path does not name the container is never used.
 */
async function findFreezer(pid: number, containerId: string): Promise<Freezer | undefined> {
  const lines = (await fs.readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '')).split('\n');
  const own = (p: string | undefined) => p !== undefined && p.split('/').includes(containerId);
  const v1 = lines.map((l) => l.split(':')).find((f) => f[1]?.split(',').includes('freezer'));
  if (v1 && own(v1[2])) {
    const state = path.join('/sys/fs/cgroup/freezer', v1[2]!, 'freezer.state');
    if (await exists(state)) return v1Freezer(state);
  }
  const v2 = lines.map((l) => l.split(':')).find((f) => f[0] === '0' && f[1] === '');
  if (v2 && own(v2[2])) {
    const dir = path.join('/sys/fs/cgroup', v2[2]!);
    if (await exists(path.join(dir, 'cgroup.freeze'))) return v2Freezer(dir);
  }
  return undefined;
}

function v1Freezer(stateFile: string): Freezer {
  return {
    async freeze(timeoutMs) {
      await fs.writeFile(stateFile, 'FROZEN');
      await until(async () => (await fs.readFile(stateFile, 'utf8')).trim() === 'FROZEN', timeoutMs, async () => {
        await fs.writeFile(stateFile, 'THAWED').catch(() => {});
      });
    },
    async thaw() {
      await fs.writeFile(stateFile, 'THAWED');
    },
  };
}

function v2Freezer(dir: string): Freezer {
  const events = path.join(dir, 'cgroup.events');
  return {
    async freeze(timeoutMs) {
      await fs.writeFile(path.join(dir, 'cgroup.freeze'), '1');
      await until(async () => /^frozen 1$/m.test(await fs.readFile(events, 'utf8')), timeoutMs, async () => {
        await fs.writeFile(path.join(dir, 'cgroup.freeze'), '0').catch(() => {});
      });
    },
    async thaw() {
      await fs.writeFile(path.join(dir, 'cgroup.freeze'), '0');
    },
  };
}

async function until(check: () => Promise<boolean>, timeoutMs: number, onTimeout: () => Promise<void>): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) {
      await onTimeout();
      throw new Error(`the sandbox did not freeze within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}
