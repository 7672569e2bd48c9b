import { z } from 'zod';
import { RestoreFailedError, SnapfnError } from '../errors.ts';
import type { InvokeResult } from '../orchestrator/types.ts';
import { EvalResult, type EvalErrorCode, type EvalRequest } from '../schemas/eval.ts';

/** What runtime/eval/eval-handler.mjs answers from inside the sandbox. */
const HandlerReply = EvalResult.pick({ result: true, stdout: true, stderr: true, stdoutTruncated: true, stderrTruncated: true, exitCode: true }).extend({
  runMs: z.number(),
  startMs: z.number().optional(),
  exitMs: z.number().optional(),
  // Checked against the known codes below, not here: an unknown one becomes runtime_error.
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});

const ERROR_CODES = new Set<string>(['timeout', 'memory_limit', 'output_limit', 'process_limit', 'file_size_limit', 'runtime_error']);

const tenths = (ms: number) => Math.round(ms * 10) / 10;

export function failedResult(code: EvalErrorCode, message: string, durationMs: number): EvalResult {
  return { result: null, stdout: '', stderr: '', stdoutTruncated: false, stderrTruncated: false, exitCode: null, durationMs, error: { code, message } };
}

/**
 * The engine's invocation outcome as an EvalResult. The handler classifies
 * what it saw itself; the cases it cannot report (the whole sandbox killed)
 * come from the engine: its timeout, and a sandbox crash, which for an eval
 * sandbox is its cgroup memory limit (the process limit is kept well below
 * what would crash it, see eval-handler.mjs).
 */
export function toEvalResult(request: EvalRequest, invoked: InvokeResult, durationMs: number): EvalResult {
  const { outcome, timings } = invoked;
  const base = { queueMs: Math.round(timings.acquireMs), restoreMs: Math.round(timings.restoreMs), sandbox: timings.source };
  if (!outcome.ok) {
    const { code, message } = outcome.error;
    const failed = (c: EvalErrorCode, m: string) => ({ ...failedResult(c, m, durationMs), timings: { ...base, runMs: Math.round(timings.handlerMs) } });
    switch (code) {
      case 'timeout':
        return failed('timeout', `the code did not finish within ${request.timeoutMs} ms; its sandbox was killed`);
      case 'out_of_memory':
        return failed('memory_limit', `the code went over its memory (${request.memoryMb} MiB): ${message}`);
      case 'sandbox_crashed':
        // gVisor lets code signal PID 1, so SIGKILL to envd looks the same (runsc exit 137).
        return failed('memory_limit', `the sandbox died: most likely the code went over its memory (${request.memoryMb} MiB), unless it killed the sandbox's init process (${message})`);
      case 'handler_error':
        return failed('runtime_error', `the evaluation could not run: ${message}`);
      case 'restore_failed':
        throw new RestoreFailedError(message);
      default:
        throw new SnapfnError('internal_error', 500, `eval sandbox: ${code}: ${message}`);
    }
  }
  const body = Buffer.from(outcome.response.bodyBase64, 'base64').toString('utf8');
  const reply = HandlerReply.parse(JSON.parse(body));
  const error = reply.error ? { code: (ERROR_CODES.has(reply.error.code) ? reply.error.code : 'runtime_error') as EvalErrorCode, message: reply.error.message } : undefined;
  return {
    result: reply.result ?? null,
    stdout: reply.stdout,
    stderr: reply.stderr,
    stdoutTruncated: reply.stdoutTruncated,
    stderrTruncated: reply.stderrTruncated,
    exitCode: reply.exitCode,
    durationMs,
    ...(error ? { error } : {}),
    timings: {
      ...base,
      runMs: reply.runMs,
      handlerMs: tenths(timings.handlerMs),
      ...(reply.startMs !== undefined ? { startMs: reply.startMs } : {}),
      ...(reply.exitMs !== undefined ? { exitMs: reply.exitMs } : {}),
    },
  };
}
