import type { Sandbox, SandboxDriver, Template } from '../sandbox/driver.ts';

/**
 * Counts, per template, the sandboxes restored from it that are not yet
 * destroyed (a restore in progress included). A sandbox keeps needing its
 * template's directory after the restore (its bundle is mounted from
 * there), and one may outlive its function's activation (a drained pool
 * sandbox being destroyed, a busy one finishing its invocation): the
 * template collector must see those too, not only the active functions.
 */
export class TemplateUse {
  readonly #counts = new Map<string, number>();

  ids(): string[] {
    return [...this.#counts.keys()];
  }

  /** `driver.resume`, counted until the sandbox is destroyed (or the resume fails). */
  async resume(driver: SandboxDriver, template: Template, options: Parameters<SandboxDriver['resume']>[1]): Promise<Sandbox> {
    this.#acquire(template.id);
    let sandbox: Sandbox;
    try {
      sandbox = await driver.resume(template, options);
    } catch (err) {
      this.#release(template.id);
      throw err;
    }
    return this.#tracked(sandbox, template.id);
  }

  #tracked(sandbox: Sandbox, templateId: string): Sandbox {
    let released = false;
    const destroy = async () => {
      try {
        await sandbox.destroy();
      } finally {
        if (!released) {
          released = true;
          this.#release(templateId);
        }
      }
    };
    // A proxy rather than a copy: `dead` and driver-specific members stay live.
    return new Proxy(sandbox, {
      get(target, prop) {
        if (prop === 'destroy') return destroy;
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  #acquire(id: string): void {
    this.#counts.set(id, (this.#counts.get(id) ?? 0) + 1);
  }

  #release(id: string): void {
    const n = (this.#counts.get(id) ?? 1) - 1;
    if (n <= 0) this.#counts.delete(id);
    else this.#counts.set(id, n);
  }
}
