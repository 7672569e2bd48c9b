// Runs one JavaScript snippet inside an eval sandbox, in a child process of
// envd (so a crash, an OOM abort or process.exit only ends this process).
//
// Started while the eval template is built, it waits in the snapshot with
// node up and this file loaded (see py-runner.py), so a request pays no node
// startup. What is per request comes after the control line, never before
// the checkpoint: fresh randomness (the same module envd uses, from
// /opt/snapfn) and the heap limit (raised from the 64 MiB node was started
// with to the request's, through reseed.node: a running V8 takes no new
// --max-old-space-size).
//
// Protocol on fd 3 (a socket to the eval handler), one JSON object a line:
//   out: {"type":"ready"} once waiting for work
//   in:  {"warm": true}, any number of times: after a restore, off the
//        request path (the handler's afterRestore hook)
//   out: {"type":"warmed"}
//   in:  {"code": "...", "cwd": "...", "memoryMb": N}
//   out: {"type":"started"} right before the user's code runs (the handler
//        arms the user's timeout then),
//        {"type":"result","ok":true,"json":"<JSON text>"} or
//        {"type":"result","ok":false,"error":{"name","message"}},
//        {"type":"exit","code":N} last, once stdout and stderr are closed
//        (the handler need not wait for the process to be torn down).
//
// The value of the last expression statement becomes the result, as in a
// REPL: the code runs as a classic script through vm, and top-level await is
// rewritten with node's own REPL transform (hence --expose-internals).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const util = require('node:util');
const { createRequire } = require('node:module');

const CONTROL_FD = 3;
const FILENAME = 'eval.js';
// envd's own modules in every sandbox's root filesystem (src/sandbox/rootfs/base-rootfs.ts).
const SNAPFN_DIR = '/opt/snapfn';

function readControl() {
  const chunks = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    const n = fs.readSync(CONTROL_FD, buf, 0, buf.length, null);
    if (n === 0) process.exit(0);
    chunks.push(Buffer.from(buf.subarray(0, n)));
    if (buf[n - 1] === 0x0a) return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  }
}

function send(message) {
  try {
    fs.writeSync(CONTROL_FD, JSON.stringify(message) + '\n');
  } catch {
    // the user's code closed fd 3; the handler falls back to the exit code
  }
}

function encode(value) {
  if (value === undefined) return 'null';
  try {
    const json = JSON.stringify(value);
    if (json !== undefined) return json;
  } catch {
    // circular, BigInt, ...: fall through to a readable string
  }
  return JSON.stringify(util.inspect(value, { depth: 4 }));
}

/** Script with the completion value of the last statement; async wrapper only if it needs await. */
function compile(code) {
  const options = { filename: FILENAME, importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER };
  try {
    return { script: new vm.Script(code, options), wrapped: false };
  } catch (err) {
    // As node's REPL does: any syntax error in code that mentions await may be top-level await.
    if (!(err instanceof SyntaxError) || !code.includes('await')) throw err;
    const { processTopLevelAwait } = require('internal/repl/await');
    let rewritten = null;
    try {
      rewritten = processTopLevelAwait(code);
    } catch {
      // not parseable that way either: report the original error
    }
    if (rewritten === null) throw err;
    return { script: new vm.Script(rewritten, options), wrapped: true };
  }
}

/** The stack down to the user's code: the runner's and node's loader frames below it are noise. */
function userStack(err) {
  const lines = String(err.stack).split('\n');
  const cut = lines.findIndex((l) => /^\s+at (Script\.runInThisContext|.*runner\.cjs)/.test(l));
  return (cut > 0 ? lines.slice(0, cut) : lines).join('\n');
}

/**
 * The path of one evaluation, compiled before the checkpoint (as envd's own
 * warm-up does for envd): after a restore, node's functions it calls would
 * otherwise be compiled on the request. It leaves nothing the snippet sees.
 */
function warmUp() {
  createRequire(path.join(process.cwd(), FILENAME));
  const { script } = compile('[1, 2].map((x) => x * 2).length');
  encode(script.runInThisContext({ displayErrors: true }));
  encode({ a: [1, 'b', null] });
  JSON.parse(JSON.stringify({ code: '1 + 1', cwd: '/', memoryMb: 1 }));
}

async function main() {
  // Blocking writes, as if stdout were a file: a tight loop that prints is
  // then paced by the reader (and stopped at the output cap) instead of
  // queueing output in memory until it dies, and process.exit() loses none.
  for (const stream of [process.stdout, process.stderr]) stream._handle?.setBlocking?.(true);
  // A load failure ends the runner before it says ready: the template build fails.
  const { installFreshRandomness, refreshRandomness } = await import(`${SNAPFN_DIR}/randomness.mjs`);
  const addon = require(`${SNAPFN_DIR}/reseed.node`);
  installFreshRandomness();
  warmUp();
  send({ type: 'ready' });
  // Whatever line comes first comes after the restore: the random state is
  // refreshed then, before anything else runs (the snapshot holds the one
  // drawn above). A warm line's work faults in, after the restore and off
  // the request path, the pages of this process the request will touch:
  // each first touch costs a trap to gVisor's Sentry on the ptrace platform.
  let control = readControl();
  refreshRandomness();
  while (control.warm) {
    warmUp();
    send({ type: 'warmed' });
    control = readControl();
  }
  addon.setHeapLimit(control.memoryMb);
  // node's own exit (V8 teardown, thread joins: ~10 ms here) is skipped: once
  // the event loop is empty, 'exit' listeners run as usual and the process
  // ends. A snippet with its own 'beforeExit' listener gets node's own path.
  // Its output is complete then: it closes it, says so and waits, without
  // exiting, until the handler hangs up. The handler answers first; this
  // process is torn down with the whole sandbox (one host-side kill), not
  // task by task inside gVisor while the answer is on its way out.
  const exit = process.exit;
  process.reallyExit = (exitCode) => {
    for (const fd of [1, 2]) {
      try {
        fs.closeSync(fd);
      } catch {
        // the snippet closed it itself
      }
    }
    send({ type: 'exit', code: Number(exitCode ?? 0) & 0xff });
    const buf = Buffer.alloc(64);
    try {
      while (fs.readSync(CONTROL_FD, buf, 0, buf.length, null) > 0);
    } catch {
      // fd 3 is gone: nobody is waiting any more
    }
    addon.exitNow(exitCode);
  };
  process.on('beforeExit', () => {
    if (process.listenerCount('beforeExit') === 1) exit.call(process);
  });
  const code = control.code;
  process.chdir(control.cwd);
  // What a CommonJS module would have: `require` resolves from the working directory.
  globalThis.require = createRequire(path.join(control.cwd, FILENAME));
  globalThis.module = { exports: {} };
  globalThis.exports = globalThis.module.exports;
  globalThis.__filename = path.join(control.cwd, FILENAME);
  globalThis.__dirname = control.cwd;
  // The dynamic-import loader is flagged experimental; its warning is ours, not the user's.
  const emitWarning = process.emitWarning;
  process.emitWarning = function (warning, ...rest) {
    if (String(warning?.message ?? warning).includes('USE_MAIN_CONTEXT_DEFAULT_LOADER')) return;
    return emitWarning.call(process, warning, ...rest);
  };
  try {
    const { script, wrapped } = compile(code);
    send({ type: 'started' });
    let value = script.runInThisContext({ displayErrors: true });
    if (wrapped) value = (await value)?.value;
    if (value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function') value = await value;
    send({ type: 'result', ok: true, json: encode(value) });
  } catch (err) {
    const error = err instanceof Error ? { name: err.name, message: err.message } : { name: 'Error', message: `uncaught ${encode(err)}` };
    process.stderr.write(`${err instanceof Error ? userStack(err) : `Uncaught ${util.inspect(err)}`}\n`);
    send({ type: 'result', ok: false, error });
    process.exitCode = 1;
  }
}

main();
