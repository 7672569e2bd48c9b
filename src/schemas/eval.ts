import { z } from 'zod';

/*
 * POST /v1/eval: run a snippet in a fresh sandbox and get back the value of
 * its last expression and its output. The limits below are the ones the API
 * promises; the sandbox-side ones (output kept, process count, file size)
 * are enforced in runtime/eval/ and documented in docs/eval.md.
 */

const KiB = 1024;
const MiB = 1024 * KiB;

export const EVAL_LIMITS = {
  codeBytes: 256 * KiB,
  stdinBytes: 1 * MiB,
  files: 200,
  filesBytes: 8 * MiB,
  defaultTimeoutMs: 5000,
  maxTimeoutMs: 60_000,
  defaultMemoryMb: 256,
  maxMemoryMb: 2048,
  /** Each of stdout and stderr is cut here (and flagged); the code keeps running. */
  outputKeptBytes: 64 * KiB,
} as const;

export const EvalLanguage = z.enum(['javascript', 'typescript', 'python', 'bash']);
export type EvalLanguage = z.infer<typeof EvalLanguage>;

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

/** A path inside the snippet's working directory: relative, "/"-separated, never leaving it. */
const WorkPath = z
  .string()
  .min(1)
  .max(512)
  .refine(
    (p) => !p.startsWith('/') && !p.includes('\\') && !p.includes('\0') && p.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..'),
    'file paths must be relative, use "/" and contain no "." or ".." segments',
  );

export const EvalRequest = z
  .object({
    language: EvalLanguage,
    code: z.string().min(1).refine((s) => bytes(s) <= EVAL_LIMITS.codeBytes, `code is at most ${EVAL_LIMITS.codeBytes} bytes`),
    stdin: z.string().refine((s) => bytes(s) <= EVAL_LIMITS.stdinBytes, `stdin is at most ${EVAL_LIMITS.stdinBytes} bytes`).optional(),
    timeoutMs: z.number().int().min(100).max(EVAL_LIMITS.maxTimeoutMs).default(EVAL_LIMITS.defaultTimeoutMs),
    memoryMb: z.number().int().min(64).max(EVAL_LIMITS.maxMemoryMb).default(EVAL_LIMITS.defaultMemoryMb),
    /** Written into the working directory before the code runs; contents are UTF-8 text. */
    files: z
      .record(WorkPath, z.string())
      .refine((f) => Object.keys(f).length <= EVAL_LIMITS.files, `at most ${EVAL_LIMITS.files} files`)
      .refine((f) => Object.values(f).reduce((n, s) => n + bytes(s), 0) <= EVAL_LIMITS.filesBytes, `files hold at most ${EVAL_LIMITS.filesBytes} bytes in all`)
      .optional(),
    /** Outbound internet for this evaluation; refused unless the server allows it (SNAPFN_EVAL_ALLOW_NETWORK). */
    network: z.boolean().default(false),
  })
  .strict();
/** What a caller sends (defaults optional). */
export type EvalInput = z.input<typeof EvalRequest>;
/** After validation, defaults applied. */
export type EvalRequest = z.output<typeof EvalRequest>;

export const EvalErrorCode = z.enum(['timeout', 'memory_limit', 'output_limit', 'process_limit', 'file_size_limit', 'runtime_error', 'network_not_allowed']);
export type EvalErrorCode = z.infer<typeof EvalErrorCode>;

export const EvalResult = z.object({
  /** The value of the last expression (javascript, typescript, python), as JSON; null for bash or on failure. */
  result: z.unknown(),
  stdout: z.string(),
  stderr: z.string(),
  stdoutTruncated: z.boolean(),
  stderrTruncated: z.boolean(),
  /** null when the process was killed (timeout, limit) or never started. */
  exitCode: z.number().int().nullable(),
  /** End to end, as the caller waited: queueing, sandbox, the run. */
  durationMs: z.number(),
  error: z.object({ code: EvalErrorCode, message: z.string() }).optional(),
  /**
   * Where the time went: waiting for capacity, restoring (0 on a warm-pool hit), the code's own run;
   * when the sandbox answered, also the whole round trip into it (`handlerMs`) and inside it, up to
   * the runtime's start (`startMs`: the request, the control line, compiling) and from the code's
   * result to the end of its process and output (`exitMs`).
   */
  timings: z
    .object({
      queueMs: z.number(),
      restoreMs: z.number(),
      runMs: z.number(),
      sandbox: z.enum(['pool', 'keep-warm', 'restore', 'none']),
      handlerMs: z.number().optional(),
      startMs: z.number().optional(),
      exitMs: z.number().optional(),
    })
    .optional(),
});
export type EvalResult = z.infer<typeof EvalResult>;
