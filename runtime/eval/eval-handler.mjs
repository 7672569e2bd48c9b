// The envd handler of an eval template: runs one snippet per sandbox.
//
// The snippet never runs in envd's process: a runner child process (see the
// *-runner files) executes it under rlimits, so a crash, an abort on OOM or
// process.exit only ends the child, and this handler still reports what
// happened. The sandbox is discarded after the request either way.
//
// The host prepends `globalThis.SNAPFN_EVAL = { language, runnerSource }`
// when it writes the per-language bundle (src/eval/eval-bundle.ts).
import fs from 'node:fs';
import path from 'node:path';
import { classify } from './eval-limits.mjs';
import { Run, countTasks } from './eval-run.mjs';

const { language, runnerSource } = globalThis.SNAPFN_EVAL;
const EVAL_DIR = '/opt/snapfn-eval';
const WORK_DIR = '/home/user';
const MiB = 1024 * 1024;
// RLIMIT_NPROC counts every task of the uid, envd's ~11 threads included. On
// the ptrace platform each guest task costs several host tasks and the
// sandbox's host pids cgroup (512) kills the whole sandbox when reached:
// measured, a fork bomb at 40 stays near 330 host tasks, at 64 it crashes.
const NPROC = 40;
// Files live in the sandbox's memory: 32 MiB each keeps a runaway writer
// from eating the memory its code was given.
const FILE_SIZE_BYTES = 32 * MiB;
// 64 KiB of each stream is returned; past 1 MiB in all the run is stopped
// (on this gVisor platform a line-by-line flood writes ~0.5 MB/s, so a cap
// much higher would only ever end in the timeout).
const OUTPUT_CAP_BYTES = 1 * MiB;
const RESULT_CAP_BYTES = 1 * MiB;
const STARTUP_TIMEOUT_MS = 8000;
// EvalRequest's lower bound on memoryMb (src/schemas/eval.ts).
const MIN_MEMORY_MB = 64;

const CHILD_ENV = { PATH: '/usr/bin:/bin', HOME: WORK_DIR, LANG: 'C.UTF-8', TERM: 'dumb', PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' };
const runnerFile = path.join(EVAL_DIR, { javascript: 'runner.cjs', python: 'runner.py', bash: 'runner.sh' }[language]);
const codeFile = path.join(EVAL_DIR, { javascript: 'snippet.js', python: 'snippet.py', bash: 'snippet.sh' }[language]);

/**
 * Per language: the runner's command line and its control line. Every
 * runner is started before the checkpoint and waits in the snapshot for its
 * control line, so a request pays neither a fork of envd's large process nor
 * the runtime's startup.
 */
const RUNNERS = {
  // Started with the smallest heap limit a request can ask for: the runner
  // raises it to the request's own after the control line (js-runner.cjs).
  // --single-threaded: V8 posts no background work (concurrent GC, compile
  // jobs), which node's exit would wait for: ~3 ms less from the result to
  // the end of the run under load; a snippet's Workers still get threads.
  javascript: {
    argv: () => ['/usr/bin/node', `--max-old-space-size=${MIN_MEMORY_MB}`, '--single-threaded', '--expose-internals', runnerFile],
    // The code travels in the control line: no file to write and read back.
    control: (req) => JSON.stringify({ code: req.code, cwd: WORK_DIR, memoryMb: req.memoryMb }),
    codeInControl: true,
  },
  python: {
    argv: () => ['/usr/bin/python3', '-u', runnerFile],
    control: (req) => JSON.stringify({ codeFile, cwd: WORK_DIR, memoryBytes: req.memoryMb * MiB }),
  },
  bash: {
    argv: () => ['/usr/bin/bash', '--noprofile', '--norc', runnerFile],
    control: (req) => `${req.memoryMb * 1024 + 16 * 1024} ${freshSeed()} ${codeFile} ${WORK_DIR}`,
  },
};
const runner = RUNNERS[language];

/** bash's $RANDOM seed, read per request: the snapshot holds the one bash started with. */
function freshSeed() {
  const fd = fs.openSync('/dev/urandom', 'r');
  try {
    const buf = Buffer.alloc(4);
    fs.readSync(fd, buf, 0, 4, null);
    return buf.readUInt32LE(0) & 0x7fffffff;
  } finally {
    fs.closeSync(fd);
  }
}

function writeFiles(files) {
  for (const [rel, content] of Object.entries(files ?? {})) {
    const target = path.resolve(WORK_DIR, rel);
    if (!target.startsWith(WORK_DIR + '/')) throw new Error(`files: ${rel} is outside the working directory`);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, content);
  }
}

const tenths = (ms) => Math.round(ms * 10) / 10;

/** Everything else in the sandbox (a fork bomb's leftovers, detached children) goes too. */
function killEverything(run) {
  run.kill();
  if (process.pid === 1) {
    try {
      process.kill(-1, 'SIGKILL');
    } catch {
      // nothing else is running
    }
  }
}

function startRun(req) {
  const limits = ['/usr/bin/prlimit', `--nproc=${NPROC}`, `--fsize=${FILE_SIZE_BYTES}`, '--core=0', '--'];
  return new Run([...limits, ...runner.argv(req)], { cwd: WORK_DIR, env: CHILD_ENV, outputCapBytes: OUTPUT_CAP_BYTES, resultCapBytes: RESULT_CAP_BYTES });
}

async function startRunner(req) {
  const run = startRun(req);
  if ((await run.waitFor(['ready', 'exit'], STARTUP_TIMEOUT_MS)) !== 'ready') {
    run.kill();
    throw new Error(`the ${language} runner did not start: ${run.stderr.text() || JSON.stringify(run.exit)}`);
  }
  return run;
}

/**
 * The run ends when the snippet's process has exited AND its output is
 * closed (background jobs writing to it are part of the snippet), when a
 * limit stops it, or at the deadline, which starts once the runtime is up.
 */
async function supervise(run, timeoutMs) {
  const startup = await run.waitFor(['started', 'exit', 'limit'], STARTUP_TIMEOUT_MS);
  if (startup !== 'started') return { startup, end: startup, runMs: 0 };
  const started = performance.now();
  const left = () => Math.max(0, timeoutMs - (performance.now() - started));
  let end = await run.waitFor(['exit', 'limit'], timeoutMs);
  let lingering = false;
  if (end === 'exit') {
    end = (await run.waitFor(['drained', 'limit'], left())) === 'deadline' ? 'deadline' : 'exit';
    lingering = end === 'deadline';
  }
  // A timeout at the process limit is the limit's doing (e.g. a spawn loop).
  if (end === 'deadline' && countTasks() >= NPROC - 1) run.stop('process_limit');
  return { startup, end, lingering, runMs: Math.round(performance.now() - started) };
}

/** `received`: when the request reached the handler (performance.now()). */
async function evaluate(req, run, received = performance.now()) {
  writeFiles(req.files);
  if (!runner.codeInControl) fs.writeFileSync(codeFile, req.code);
  run.send(runner.control(req));
  run.child.stdin.end(req.stdin ?? '');
  const { startup, end, lingering, runMs } = await supervise(run, req.timeoutMs);
  if (!run.clean) {
    run.kill();
    // What is still in the pipes; a process that escaped the group may hold them forever.
    await run.waitFor(['exit'], 1000);
    await run.waitFor(['drained'], 100);
  }
  const ended = performance.now();
  const result = run.message('result');
  const error = classify({
    language, req, startup, timedOut: end === 'deadline' && !run.limit, lingering, limit: run.limit, exit: run.exit, result,
    resultTooLarge: run.resultTooLarge, stderrTail: run.stderr.tail(), resultCapBytes: RESULT_CAP_BYTES, outputCapBytes: OUTPUT_CAP_BYTES, fileSizeBytes: FILE_SIZE_BYTES,
  });
  return {
    result: result?.ok && !error ? JSON.parse(result.json) : null,
    stdout: run.stdout.text(),
    stderr: run.stderr.text(),
    stdoutTruncated: run.stdout.truncated,
    stderrTruncated: run.stderr.truncated,
    exitCode: run.exit?.code ?? null,
    runMs,
    // Where the time went in here: up to the runtime's `started` (the request, the control line, the
    // runner's refresh and compile) and from its last word (result, or started) to the run's end.
    startMs: tenths((run.at.started ?? ended) - received),
    exitMs: tenths(ended - (run.at.result ?? run.at.started ?? ended)),
    ...(error ? { error } : {}),
  };
}

// ---- template build time: everything below is in the snapshot ---------------
// This module runs inside envd, which is PID 1, and gVisor (unlike Linux)
// lets the code deliver default-action signals to PID 1: without handlers a
// `kill 1` would end the sandbox, and SIGUSR1 would open node's inspector.
// SIGKILL cannot be caught; it ends the sandbox like an out-of-memory kill.
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2']) process.on(signal, () => {});
fs.mkdirSync(EVAL_DIR, { recursive: true });
fs.mkdirSync(WORK_DIR, { recursive: true });
fs.writeFileSync(runnerFile, runnerSource);
// One throwaway evaluation runs this handler's whole path, so the snapshot
// holds it compiled (as envd's own warm-up does for envd's path).
const WARM = { javascript: '[1, 2].map((x) => x * 2).length', python: 'len([1, 2])', bash: 'echo $((1 + 1)) >/dev/null' }[language];
const warmRun = await startRunner({ memoryMb: 256 });
await evaluate({ code: WARM, timeoutMs: 5000, memoryMb: 256, stdin: '' }, warmRun);
// Gone before the checkpoint: nothing of it may be in the snapshot.
warmRun.kill();
await warmRun.gone;
fs.rmSync(codeFile, { force: true });
let prestarted = await startRunner({ memoryMb: 256 });
/** Stops what a clean run left behind, if the backstop has not yet. */
let leftover;

/**
 * In every restored sandbox, before it serves (a warm-pool sandbox: long
 * before its request): the pre-started runner wakes once, refreshes its
 * random state and runs its evaluation path, so the request does not pay
 * the first touch of its pages after the restore. The bash and python
 * runners read their control line only once; they stay as they are.
 */
export async function afterRestore() {
  if (language !== 'javascript' || !prestarted || prestarted.exit) return;
  prestarted.send(JSON.stringify({ warm: true }));
  await prestarted.waitFor(['warmed', 'exit'], STARTUP_TIMEOUT_MS);
}

export default async function handler(request) {
  const received = performance.now();
  // Not in an eval sandbox (one request each), but should a second request come, the first one's leftovers go first.
  leftover?.();
  leftover = undefined;
  const req = await request.json();
  if (req.language !== language) throw new Error(`this is the ${language} eval template, not ${req.language}`);
  let run = prestarted && !prestarted.exit ? prestarted : undefined;
  prestarted = undefined;
  try {
    run ??= await startRunner(req);
    return await evaluate(req, run, received);
  } finally {
    // After a clean run, what is left (the runner waiting to be let go,
    // background processes that closed their output) cannot change the
    // answer: it goes with the sandbox, which the host destroys right after;
    // the delayed kill is a backstop. Anything else is stopped first.
    if (run?.clean) {
      const timer = setTimeout(() => ((leftover = undefined), killEverything(run)), 200).unref();
      leftover = () => (clearTimeout(timer), killEverything(run));
    } else if (run) killEverything(run);
  }
}
