// envd: the agent inside every snapfn sandbox.
//
// It runs as the sandbox's only process (PID 1 of the container), loads the
// function bundle once, and serves invocations one at a time over a Unix
// socket that the HOST listens on and envd dials out to. Why dial out: a host
// socket bind-mounted into the sandbox is the one channel that survives a
// gVisor checkpoint/restore with no extra call (stdio only re-attaches
// partially, and a listener inside the sandbox cannot be open at checkpoint).
// The restored sandbox sees a different host directory at the same mount
// point, so every sandbox has its own socket without envd knowing about it.
//
// JavaScript checked by tsc against the protocol module
// (src/sandbox/envd/protocol.ts, tsconfig.envd.json); bundled with it into one
// file of the base root filesystem, whose hash is part of every template id.

// @ts-check
import net from 'node:net';
import fs from 'node:fs';
import { Buffer } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { CANCEL, Channel, END } from './channel.mjs';
import { loadFunction } from './function-module.mjs';
import { cancellation, discardingSink, errorOf, runInvocation, toRequest } from './invocation.mjs';
import { installEnvironment } from './invocation-context.mjs';
import { installLogCapture, realWrite, startCapture } from './log-capture.mjs';
import { installFreshRandomness, refreshRandomness } from './randomness.mjs';
import { startVirtioSerial } from './virtio-serial.mjs';

/** @typedef {import('../../src/sandbox/envd/protocol.ts').HostMessage} HostMessage */
/** @typedef {import('../../src/sandbox/envd/protocol.ts').HookRun} HookRun */

const SOCKET_PATH = process.env.SNAPFN_ENVD_SOCKET ?? '/run/snapfn/envd.sock';
// Poll interval while waiting for the host's socket to appear (after boot and
// after every restore). A stat is cheap; a pending connect() at checkpoint
// time is not (it makes the checkpoint fail), so envd only dials once the
// socket file exists.
const DIAL_POLL_MS = 1;

const bootId = randomUUID();
const baseEnv = { ...process.env };
installEnvironment(baseEnv);
let connectCount = 0;
let invocations = 0;

installLogCapture();
// A handler's stray background failure must not take envd down: it is
// reported as stderr of whatever invocation is running (or the boot log).
process.on('uncaughtException', (err) => {
  process.stderr.write(`uncaught exception: ${err?.stack ?? err}\n`);
});
process.on('unhandledRejection', (err) => {
  process.stderr.write(`unhandled rejection: ${/** @type {any} */ (err)?.stack ?? err}\n`);
});

// Before the handler is imported, so modules that keep a reference to the
// random functions get the fresh ones too.
installFreshRandomness();

const fn = /** @type {any} */ (await loadFunction());
const loadError = fn.loadError ?? null;
const handlerConfig = fn.config ?? null;
/** @type {HookRun | null} */
let restored = null;

// ---- invocations ----------------------------------------------------------

/** A cron tick (the scheduler's own headers; the gateway strips them from HTTP requests). */
function scheduleOf(/** @type {Array<[string, string]>} */ headers) {
  const header = (/** @type {string} */ name) => headers.find(([k]) => k.toLowerCase() === name)?.[1];
  if (header('x-fn-trigger') !== 'schedule') return undefined;
  return { cron: (header('x-fn-schedule') ?? '').replace(/\s*\(.*\)$/, '') };
}

/**
 * @param {Extract<HostMessage, { type: 'invoke' }>} msg
 * @param {Channel} channel
 */
async function invoke(msg, channel) {
  invocations++;
  const { cancelled, cancel } = cancellation();
  /** @type {{ push(chunk: any): void } | undefined} */
  let body;
  // Body chunks wait here until the handler's Request exists (toRequest attaches it).
  /** @type {any[]} */
  const waiting = [];
  let bodyEnded = !msg.request.hasBody;
  let draining = false;
  const detach = channel.attach(msg.id, {
    push(chunk) {
      if (chunk === END || chunk === CANCEL) bodyEnded = true;
      if (chunk === CANCEL) cancel();
      if (draining) {
        if (bodyEnded) detach();
      } else if (body) body.push(chunk);
      else waiting.push(chunk);
    },
  });
  const schedule = scheduleOf(msg.request.headers);
  const request = () =>
    toRequest(msg.request, (sink) => {
      body = sink;
      for (const chunk of waiting.splice(0)) sink.push(chunk);
      return () => (body = undefined);
    });
  /** @type {(invocation: any) => unknown} */
  const call = !fn.call
    ? () => {
        throw Object.assign(new Error(loadError?.message ?? 'the function did not load'), { code: loadError?.code });
      }
    : schedule && fn.scheduled
      ? (invocation) => fn.scheduled(invocation)
      : schedule && fn.shape === 'workers'
        ? () => {
            throw new Error('this Workers module has no scheduled() handler, but the function has a schedule');
          }
        : (invocation) => fn.call(request(), invocation);
  const sink = {
    head: (/** @type {number} */ status, /** @type {Array<[string, string]>} */ headers) => channel.send({ type: 'response', id: msg.id, status, headers }),
    data: (/** @type {Uint8Array} */ chunk) => channel.sendData(msg.id, chunk),
    cancelled,
  };
  const end = await runInvocation({ timeoutMs: msg.timeoutMs, maxResponseBytes: msg.maxResponseBytes, env: msg.env, baseEnv }, call, { ...msg.invocation, schedule }, sink);
  // A body the handler left unread keeps arriving after it returned. Detached,
  // its frames would wait in the channel for a sink that never comes (a
  // keepWarm sandbox grew by the body's size on every such request until its
  // cgroup killed it): they are dropped as they come instead. Background
  // work (waitUntil) may still read it, so that waits for it to settle.
  const stopBody = () => {
    if (bodyEnded) return detach();
    draining = true;
    body = undefined;
    waiting.length = 0;
  };
  if (end.background) void end.background.then(stopBody, stopBody);
  else stopBody();
  const error = !fn.call && loadError ? loadError : end.error;
  channel.send({ type: 'result', id: msg.id, ok: end.ok, ...(error ? { error } : {}), logs: end.logs, logsTruncated: end.logsTruncated, bodyBytes: end.bodyBytes, ...(end.background ? { waitUntil: true } : {}) });
  // Not awaited: the next message may run while this one's waitUntil work finishes.
  end.background?.then((state) => channel.send({ type: 'settled', id: msg.id, state }));
}

// Stands in for the user's handler in a rehearsal: it touches what most
// handlers touch (URL and query parsing, the body, JSON, a Response, logs).
async function rehearsalHandler(/** @type {Request} */ request) {
  const url = new URL(request.url);
  const text = await request.text();
  console.log('rehearsal', url.pathname);
  if (url.searchParams.get('as') === 'response') return new Response(text, { headers: { 'content-type': 'text/plain' } });
  return { path: url.pathname, q: url.searchParams.get('q'), length: text.length };
}

/**
 * One pass through the real invocation path with rehearsalHandler, never the
 * user's: right after a restore every page envd touches is a fault the
 * sandbox serves for the first time (~15 ms on the first request). The warm
 * pool rehearses off the request path; it leaves no trace in the counters.
 */
async function rehearse(timeoutMs = 5000) {
  const failures = [];
  for (const as of ['json', 'response']) {
    const request = new Request(`http://localhost/__snapfn/rehearsal?q=1&as=${as}`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: Buffer.from('rehearsal') });
    const end = await runInvocation({ timeoutMs, maxResponseBytes: 1 << 20, env: {}, baseEnv }, () => rehearsalHandler(request), {}, discardingSink());
    if (!end.ok && end.error) failures.push(end.error);
  }
  return failures;
}

/** The function's own hook, timed; a throw becomes { ok: false, error }. */
async function runHook(/** @type {string} */ name, /** @type {() => unknown} */ hook) {
  const started = performance.now();
  const stop = startCapture();
  try {
    await hook();
    return { ok: true, ms: Math.round(performance.now() - started) };
  } catch (err) {
    return { ok: false, ms: Math.round(performance.now() - started), error: errorOf(err, `${name}_failed`) };
  } finally {
    for (const line of stop().logs) realWrite[line.stream](line.text);
  }
}

// ---- the host channel -----------------------------------------------------

/**
 * @param {HostMessage} msg
 * @param {Channel} channel
 */
async function handle(msg, channel) {
  switch (msg.type) {
    case 'ping':
      channel.send({ type: 'pong', id: msg.id, invocations, rssBytes: process.memoryUsage.rss() });
      return;
    case 'invoke':
      await invoke(msg, channel);
      return;
    case 'rehearse': {
      const failures = await rehearse(msg.timeoutMs);
      channel.send({ type: 'rehearsed', id: msg.id, ok: failures.length === 0, failures });
      return;
    }
    case 'warmup': {
      // Exercise envd's own request/response path so the snapshot holds it
      // compiled. The user's handler is deliberately NOT called: whatever a
      // warm-up invocation left behind (globals, /tmp files) would be in
      // every sandbox restored from this template.
      for (let i = 0; i < 20; i++) await rehearse();
      // The function's own warm-up runs once, here, right before the checkpoint.
      if (fn.beforeSnapshot) {
        const hook = await runHook('before_snapshot', fn.beforeSnapshot);
        if (!hook.ok && hook.error) {
          channel.send({ type: 'error', id: msg.id, error: hook.error });
          return;
        }
      }
      channel.send({ type: 'warmed', id: msg.id });
      return;
    }
    case 'limits': {
      // QEMU guest only (SNAPFN_ENVD_CGROUP is set by runtime/guest/init):
      // the handler runs in this process, so the function's memory limit is
      // this cgroup's memory.max, sent by the host on every restore.
      const dir = process.env.SNAPFN_ENVD_CGROUP;
      try {
        if (!dir) throw new Error('SNAPFN_ENVD_CGROUP is not set');
        fs.writeFileSync(`${dir}/memory.max`, msg.memoryMb ? String(msg.memoryMb * 1024 * 1024) : 'max');
        channel.send({ type: 'limits-set', id: msg.id });
      } catch (err) {
        realWrite.stderr(`envd: cannot apply limits: ${/** @type {any} */ (err)?.message ?? err}\n`);
        channel.send({ type: 'error', id: msg.id, error: { code: 'limits_failed', message: String(/** @type {any} */ (err)?.message ?? err) } });
      }
      return;
    }
    case 'prepare-checkpoint':
      // Close our side and go back to polling for the socket file: the next
      // connect happens in whichever sandbox is restored from this image.
      channel.send({ type: 'checkpoint-ready', id: msg.id });
      channel.close();
      return;
    case 'attach':
      return;
    default:
      channel.send({ type: 'error', id: /** @type {any} */ (msg).id, error: { code: 'unknown_message', message: `unknown message type ${/** @type {any} */ (msg).type}` } });
  }
}

/**
 * A new host: after boot, and after every restore (the snapshot was taken
 * while envd waited for one). From the second on this is a restored sandbox:
 * fresh randomness first, then the function's afterRestore hook, both
 * before hello, so no invocation can run before them.
 * @param {import('./channel.mjs').ByteStream} stream
 * @param {() => void} onClose
 */
async function greet(stream, onClose) {
  connectCount++;
  refreshRandomness();
  if (connectCount > 1 && fn.afterRestore) restored = await runHook('after_restore', fn.afterRestore);
  const channel = new Channel(stream, { onMessage: handle, onError: (err) => realWrite.stderr(`envd: ${/** @type {any} */ (err)?.stack ?? err}\n`) });
  stream.on('close', onClose);
  channel.send({
    type: 'hello',
    bootId,
    connectCount,
    invocations,
    handlerType: fn.call ? 'function' : 'undefined',
    handlerShape: fn.shape ?? null,
    handlerConfig,
    loadError,
    afterRestore: restored,
    nodeVersion: process.version,
  });
}

function waitForHost() {
  if (!fs.existsSync(SOCKET_PATH)) {
    setTimeout(waitForHost, DIAL_POLL_MS);
    return;
  }
  const socket = net.connect(SOCKET_PATH);
  socket.once('connect', () => {
    // Paused until the channel listens: nothing the host sends early is lost.
    socket.pause();
    greet(socket, () => waitForHost())
      .then(() => socket.resume())
      .catch((err) => realWrite.stderr(`envd: ${err?.stack ?? err}\n`));
  });
  socket.once('error', () => {
    socket.destroy();
    setTimeout(waitForHost, DIAL_POLL_MS);
  });
}

if (process.env.SNAPFN_ENVD_TRANSPORT === 'virtio-serial') {
  // The port is read by a blocking read() in libuv's threadpool, and Node's
  // exit joins the threadpool: a handler calling process.exit() would hang
  // envd forever (and the host until the timeout). Dying by SIGKILL skips the
  // join; init then ends the VM and the host sees a crashed sandbox.
  process.on('exit', () => process.kill(process.pid, 'SIGKILL'));
  startVirtioSerial((port) => greet(port, () => {}).catch((err) => realWrite.stderr(`envd: ${err?.stack ?? err}\n`)));
} else waitForHost();
