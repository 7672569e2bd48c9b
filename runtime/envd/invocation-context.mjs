// @ts-check
// What belongs to one invocation while several run at once in one sandbox
// (config.concurrency): its captured output and its environment. Carried by
// AsyncLocalStorage, so a handler's callbacks, timers and promises see their
// own invocation's, as Cloud Run and Knative users expect of one instance.

import { AsyncLocalStorage } from 'node:async_hooks';

/** @typedef {{ logs: Array<{ stream: 'stdout' | 'stderr', text: string, t: number }>, bytes: number, truncated: boolean, start: number, closed: boolean }} Capture */
/** @typedef {{ capture: Capture, env: Record<string, string | undefined> }} InvocationStore */

/** @type {AsyncLocalStorage<InvocationStore>} */
export const invocationContext = new AsyncLocalStorage();

/**
 * process.env as a view of the current invocation's environment (envd's own
 * outside any invocation). Reads, writes, deletes and enumeration all go to
 * the invocation's copy, so one invocation's `process.env.X = ...` is not
 * another's.
 * @param {Record<string, string | undefined>} base
 */
export function installEnvironment(base) {
  const target = () => invocationContext.getStore()?.env ?? base;
  process.env = new Proxy(
    {},
    {
      get: (_, key) => (typeof key === 'string' ? target()[key] : undefined),
      set: (_, key, value) => {
        if (typeof key === 'string') target()[key] = String(value);
        return true;
      },
      has: (_, key) => typeof key === 'string' && key in target(),
      deleteProperty: (_, key) => {
        if (typeof key === 'string') delete target()[key];
        return true;
      },
      ownKeys: () => Object.keys(target()),
      getOwnPropertyDescriptor: (_, key) => {
        const env = target();
        return typeof key === 'string' && key in env ? { value: env[key], writable: true, enumerable: true, configurable: true } : undefined;
      },
    },
  );
}
