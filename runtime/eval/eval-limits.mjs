// How an evaluation ended, in the terms the API reports (src/schemas/eval.ts).
//
// A limit inside the sandbox shows up as whatever the runtime makes of it:
// an errno in a message, a signal, a fatal V8 error. These patterns turn
// them back into one error code each. They are only consulted when the
// snippet failed, so a program that merely prints such text still succeeds.

const KEEP_BYTES = 64 * 1024;
const TAIL_BYTES = 4096;

const PROCESS_LIMIT = /fork: (retry: )?(Resource temporarily unavailable|Cannot allocate memory)|\[Errno 11\] Resource temporarily unavailable|can't start new thread|\bspawn(Sync)? \S+ EAGAIN\b|uv_thread_create|ERR_WORKER_INIT_FAILED/;
const MEMORY_LIMIT = /JavaScript heap out of memory|Reached heap limit|Allocation failed|MemoryError|Cannot allocate memory|std::bad_alloc|Array buffer allocation failed|Out of memory/i;
const FILE_SIZE_LIMIT = /File size limit exceeded|File too large|EFBIG/;

/** Keeps the first 64 KiB of a stream (what is returned) and its last 4 KiB (what is classified). */
export class OutputSink {
  constructor() {
    this.head = [];
    this.kept = 0;
    this.total = 0;
    this.last = Buffer.alloc(0);
  }

  add(chunk) {
    this.total += chunk.length;
    if (this.kept < KEEP_BYTES) {
      const part = chunk.subarray(0, KEEP_BYTES - this.kept);
      this.head.push(part);
      this.kept += part.length;
    }
    this.last = Buffer.concat([this.last, chunk]).subarray(-TAIL_BYTES);
  }

  get truncated() {
    return this.total > this.kept;
  }

  text() {
    return Buffer.concat(this.head).toString('utf8');
  }

  tail() {
    return this.last.toString('utf8');
  }
}

function failure(code, message) {
  return { code, message };
}

const mib = (bytes) => `${Math.round(bytes / (1024 * 1024))} MiB`;

/** The `error` of an evaluation, or undefined when it succeeded. */
export function classify(run) {
  const { language, req, startup, timedOut, lingering, limit, exit, result, stderrTail } = run;
  if (timedOut && lingering) return failure('timeout', `the code's background processes still held its output open after ${req.timeoutMs} ms and were stopped`);
  if (timedOut) return failure('timeout', `the code did not finish within ${req.timeoutMs} ms and was stopped`);
  if (startup === 'deadline') return failure('timeout', `the ${language} runtime did not start in time`);
  if (limit === 'process_limit') return failure('process_limit', "the code hit the sandbox's limit on processes and threads and was stopped");
  if (limit === 'output_limit') return failure('output_limit', `the code wrote more than ${mib(run.outputCapBytes)} of output and was stopped`);
  if (exit?.spawnError) return failure('runtime_error', `the ${language} runtime could not be started: ${exit.spawnError}`);
  const failed = exit?.code !== 0 || exit?.signal || (result && !result.ok);
  if (!failed) {
    if (run.resultTooLarge || (result?.json?.length ?? 0) > run.resultCapBytes) return failure('output_limit', `the result is larger than ${mib(run.resultCapBytes)} of JSON`);
    return undefined;
  }
  const said = `${result?.error ? `${result.error.name}: ${result.error.message}\n` : ''}${stderrTail}`;
  if (PROCESS_LIMIT.test(said)) return failure('process_limit', "the code hit the sandbox's limit on processes and threads");
  if (exit?.signal === 'SIGXFSZ' || FILE_SIZE_LIMIT.test(said)) return failure('file_size_limit', `the code wrote a file larger than the ${mib(run.fileSizeBytes)} limit`);
  if (MEMORY_LIMIT.test(said)) return failure('memory_limit', `the code ran out of memory (limit ${req.memoryMb} MiB)`);
  if (result?.error) return failure('runtime_error', `${result.error.name}: ${result.error.message}`);
  // An error the runner could not catch (thrown in a callback) is on stderr: the last "FooError: ..." line.
  const thrown = [...stderrTail.matchAll(/^((?:[A-Z]\w*)?(?:Error|Exception)\b.*)$/gm)].at(-1)?.[1];
  if (thrown) return failure('runtime_error', thrown.slice(0, 500));
  if (exit?.signal) return failure('runtime_error', `the ${language} process was killed by ${exit.signal}`);
  return failure('runtime_error', `the ${language} process exited with code ${exit?.code}`);
}
