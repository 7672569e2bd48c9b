import fs from 'node:fs/promises';
import path from 'node:path';

const CGROUP_ROOT = '/sys/fs/cgroup';

/**
 * The memory cgroup of one gVisor sandbox, made by snapfn before runsc starts.
 *
 * Why not runsc's own: runsc removes the cgroups it created as soon as its
 * sandbox exits, usually before the host has even noticed the envd channel
 * close, so the one record of an out-of-memory kill (memory.events /
 * memory.oom_control `oom_kill`) was gone by the time a crash was explained,
 * and every crash had to be described as "maybe out of memory". runsc joins a
 * cgroup that already exists and leaves it alone (neither sets its limits nor
 * removes it), so this one outlives the sandbox until `remove()`.
 *
 * cgroup v1: only the memory hierarchy is pre-created; runsc still makes
 * (and removes) the others (pids, freezer...) from the spec. cgroup v2 has one
 * directory for every controller, so there the pids limit is set here too.
 */
export class SandboxCgroup {
  readonly dir: string;
  readonly #version: 1 | 2;

  private constructor(dir: string, version: 1 | 2) {
    this.dir = dir;
    this.#version = version;
  }

  /** `cgroupsPath` is the OCI spec's (e.g. `/snapfn/sfn-…`). Undefined where there is no memory controller to use. */
  static async create(cgroupsPath: string, limits: { memoryBytes: number; pids: number }): Promise<SandboxCgroup | undefined> {
    const layout = await detectLayout();
    if (!layout) return undefined;
    const dir = path.join(layout.memoryRoot, cgroupsPath);
    if (layout.version === 2) await enableControllers(layout.memoryRoot, path.dirname(cgroupsPath));
    await fs.mkdir(dir, { recursive: true });
    const cgroup = new SandboxCgroup(dir, layout.version);
    try {
      if (layout.version === 1) {
        await fs.writeFile(path.join(dir, 'memory.limit_in_bytes'), String(limits.memoryBytes));
      } else {
        await fs.writeFile(path.join(dir, 'memory.max'), String(limits.memoryBytes));
        // No swap for a sandbox: its limit is what it may hold in RAM.
        await fs.writeFile(path.join(dir, 'memory.swap.max'), '0').catch(() => {});
        await fs.writeFile(path.join(dir, 'pids.max'), String(limits.pids)).catch(() => {});
      }
    } catch (err) {
      await cgroup.remove();
      throw err;
    }
    return cgroup;
  }

  /** How many processes the kernel's OOM killer killed in this cgroup (0 when the counter cannot be read). */
  async oomKills(): Promise<number> {
    const file = path.join(this.dir, this.#version === 1 ? 'memory.oom_control' : 'memory.events');
    const text = await fs.readFile(file, 'utf8').catch(() => '');
    return Number(/^oom_kill (\d+)$/m.exec(text)?.[1] ?? 0);
  }

  /** The memory limit as the kernel applies it. */
  async limitBytes(): Promise<number | undefined> {
    const text = await fs.readFile(path.join(this.dir, this.#version === 1 ? 'memory.limit_in_bytes' : 'memory.max'), 'utf8').catch(() => undefined);
    const n = Number(text?.trim());
    return Number.isFinite(n) ? n : undefined;
  }

  /** Once the sandbox's processes are gone; retried briefly while the kernel finishes tearing them down. */
  async remove(): Promise<void> {
    await removeDir(this.dir);
  }

  /** A cgroup left by a process that died (its sandbox reaped): `cgroupsPath` as given to create. */
  static async removeStale(cgroupsPath: string): Promise<void> {
    const layout = await detectLayout();
    if (layout) await removeDir(path.join(layout.memoryRoot, cgroupsPath));
  }
}

interface Layout {
  version: 1 | 2;
  /** Where cgroupsPath is resolved for the memory controller. */
  memoryRoot: string;
}

let layout: Promise<Layout | undefined> | undefined;

function detectLayout(): Promise<Layout | undefined> {
  layout ??= (async () => {
    const v2 = await fs.readFile(path.join(CGROUP_ROOT, 'cgroup.controllers'), 'utf8').catch(() => undefined);
    if (v2 !== undefined) return v2.split(/\s+/).includes('memory') ? { version: 2 as const, memoryRoot: CGROUP_ROOT } : undefined;
    const v1 = path.join(CGROUP_ROOT, 'memory');
    return (await exists(path.join(v1, 'memory.limit_in_bytes'))) ? { version: 1 as const, memoryRoot: v1 } : undefined;
  })();
  return layout;
}

/** v2: a child only has the controllers its parent delegates (runsc did this for the cgroups it made). */
async function enableControllers(root: string, parent: string): Promise<void> {
  let dir = root;
  for (const part of parent.split('/').filter(Boolean)) {
    await fs.writeFile(path.join(dir, 'cgroup.subtree_control'), '+memory +pids').catch(() => {});
    dir = path.join(dir, part);
    await fs.mkdir(dir, { recursive: true });
  }
  await fs.writeFile(path.join(dir, 'cgroup.subtree_control'), '+memory +pids').catch(() => {});
}

async function removeDir(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await fs.rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      // EBUSY: the last tasks are still exiting.
      if (attempt >= 50) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}
