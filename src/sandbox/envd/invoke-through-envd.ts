import type { InvocationOutcome, WireRequest } from '../../schemas/invocation.ts';
import type { InvokeOptions } from '../driver.ts';
import { EnvdClosedError, EnvdTimeoutError, type EnvdConnection } from './envd-connection.ts';

/** Grace on top of the handler's timeout before the host stops waiting for envd and kills the sandbox. */
export const HARD_TIMEOUT_GRACE_MS = 1000;

export interface EnvdInvocationEnd {
  outcome: InvocationOutcome;
  /** False after a timeout (the handler may still hold work in flight) or a dead channel: never reuse. */
  reusable: boolean;
  /** envd itself stopped answering (a synchronous loop never yields): only killing the sandbox stops it. */
  hardTimeout: boolean;
}

export function crashedOutcome(message: string): InvocationOutcome {
  return { ok: false, error: { code: 'sandbox_crashed', message }, logs: [], logsTruncated: false };
}

/**
 * One invocation over envd, every driver alike: each way it can end becomes
 * an outcome. `explainCrash` lets a driver add what it knows of a dead
 * sandbox (an exit code, say).
 */
export async function invokeThroughEnvd(
  connection: EnvdConnection,
  request: WireRequest,
  options: InvokeOptions,
  explainCrash: (why: string) => Promise<string> = async (why) => why,
): Promise<EnvdInvocationEnd> {
  try {
    const invocation = { id: options.invocationId, functionName: options.functionName ?? 'function', memoryMb: options.memoryMb ?? 256, env: options.env, ...(options.version !== undefined ? { version: options.version } : {}) };
    const outcome = await connection.invoke(request, invocation, options.timeoutMs, options.timeoutMs + HARD_TIMEOUT_GRACE_MS);
    const timedOut = !outcome.ok && outcome.error.code === 'timeout';
    return { outcome, reusable: !timedOut, hardTimeout: false };
  } catch (err) {
    if (err instanceof EnvdTimeoutError) {
      const outcome: InvocationOutcome = { ok: false, error: { code: 'timeout', message: `handler did not finish within ${options.timeoutMs} ms; its sandbox was killed` }, logs: [], logsTruncated: false };
      return { outcome, reusable: false, hardTimeout: true };
    }
    const why = err instanceof EnvdClosedError ? 'the sandbox died during the invocation' : String(err);
    return { outcome: crashedOutcome(await explainCrash(why)), reusable: false, hardTimeout: false };
  }
}
