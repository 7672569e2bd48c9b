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
// Plain JavaScript with no dependencies: it is copied verbatim into the base
// root filesystem and its hash is part of every template id.

import net from 'node:net';
import fs from 'node:fs';
import { Buffer } from 'node:buffer';
import { randomUUID } from 'node:crypto';

const SOCKET_PATH = process.env.SNAPFN_ENVD_SOCKET ?? '/run/snapfn/envd.sock';
const MAX_LOG_BYTES = Number(process.env.SNAPFN_MAX_LOG_BYTES ?? 64 * 1024);
// Poll interval while waiting for the host's socket to appear (after boot and
// after every restore). A stat is cheap; a pending connect() at checkpoint
// time is not (it makes the checkpoint fail), so envd only dials once the
// socket file exists.
const DIAL_POLL_MS = 1;

const bootId = randomUUID();
const baseEnv = { ...process.env };
let connectCount = 0;
let invocations = 0;

// ---- stdout/stderr capture, per invocation --------------------------------

/** @type {{logs: {stream: string, text: string, t: number}[], bytes: number, truncated: boolean, start: number} | null} */
let capture = null;
const realWrite = {
  stdout: process.stdout.write.bind(process.stdout),
  stderr: process.stderr.write.bind(process.stderr),
};

function captureWrite(stream) {
  return (chunk, encoding, callback) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    if (capture) {
      if (capture.bytes + text.length > MAX_LOG_BYTES) {
        const room = Math.max(0, MAX_LOG_BYTES - capture.bytes);
        if (room > 0) capture.logs.push({ stream, text: text.slice(0, room), t: performance.now() - capture.start });
        capture.bytes = MAX_LOG_BYTES;
        capture.truncated = true;
      } else {
        capture.bytes += text.length;
        capture.logs.push({ stream, text, t: performance.now() - capture.start });
      }
    } else {
      realWrite[stream](chunk, encoding);
    }
    const cb = typeof encoding === 'function' ? encoding : callback;
    if (typeof cb === 'function') cb();
    return true;
  };
}
process.stdout.write = captureWrite('stdout');
process.stderr.write = captureWrite('stderr');

// A handler's stray background failure must not take envd down: it is
// reported as stderr of whatever invocation is running (or the boot log).
process.on('uncaughtException', (err) => {
  process.stderr.write(`uncaught exception: ${err?.stack ?? err}\n`);
});
process.on('unhandledRejection', (err) => {
  process.stderr.write(`unhandled rejection: ${err?.stack ?? err}\n`);
});

import { installFreshRandomness, refreshRandomness } from './randomness.mjs';
import { loadFunction } from './function-module.mjs';
import { startVirtioSerial } from './virtio-serial.mjs';

// Before the handler is imported, so modules that keep a reference to the
// random functions get the fresh ones too.
installFreshRandomness();

// ---- loading the function ------------------------------------------------

const fn = await loadFunction();
const { loadError } = fn;
const handlerConfig = fn.config ?? null;
let restored = null;

// ---- invocations ----------------------------------------------------------

function errorOf(err, code = 'handler_error') {
  if (err instanceof Error) return { code, message: err.message, name: err.name, stack: err.stack };
  return { code, message: String(err) };
}

function toRequest(wire) {
  const hasBody = wire.bodyBase64 !== undefined && wire.method !== 'GET' && wire.method !== 'HEAD';
  return new Request(wire.url, {
    method: wire.method,
    headers: wire.headers,
    body: hasBody ? Buffer.from(wire.bodyBase64, 'base64') : undefined,
  });
}

const FRAMING_HEADERS = new Set(['content-encoding', 'content-length', 'transfer-encoding', 'connection']);

async function toWireResponse(value) {
  if (value instanceof Response) {
    const body = Buffer.from(await value.arrayBuffer());
    // The body is sent whole and already decoded (a fetch() Response passed
    // through decompresses it): its framing headers no longer apply.
    const headers = [...value.headers].filter(([name]) => !FRAMING_HEADERS.has(name.toLowerCase()));
    return { status: value.status, headers, bodyBase64: body.toString('base64') };
  }
  if (value === undefined) return { status: 204, headers: [], bodyBase64: '' };
  const json = JSON.stringify(value);
  if (json === undefined) throw Object.assign(new Error(`handler returned a ${typeof value}, which is not JSON-serializable`), { code: 'invalid_response' });
  return {
    status: 200,
    headers: [['content-type', 'application/json; charset=utf-8']],
    bodyBase64: Buffer.from(json).toString('base64'),
  };
}

/** A cron tick (the scheduler's own headers; the gateway strips them from HTTP requests). */
function scheduleOf(wire) {
  const header = (name) => wire.headers.find(([k]) => k.toLowerCase() === name)?.[1];
  if (header('x-fn-trigger') !== 'schedule') return undefined;
  return { cron: (header('x-fn-schedule') ?? '').replace(/\s*\(.*\)$/, '') };
}

/** What one invocation runs: the shape's fetch/handler, or its scheduled handler on a cron tick. */
function runnerFor(wire, invocation) {
  if (!fn.call) return undefined;
  if (invocation.schedule && fn.scheduled) return () => fn.scheduled(invocation);
  if (invocation.schedule && fn.shape === 'workers') {
    return () => {
      throw new Error('this Workers module has no scheduled() handler, but the function has a schedule');
    };
  }
  return () => fn.call(toRequest(wire), invocation);
}

async function invoke(msg, run) {
  invocations++;
  process.env = { ...baseEnv, ...msg.env };
  capture = { logs: [], bytes: 0, truncated: false, start: performance.now() };
  const background = [];
  const info = msg.invocation ?? {};
  const invocation = {
    id: info.id ?? msg.invocationId ?? randomUUID(),
    functionName: info.functionName ?? 'function',
    version: info.version,
    memoryMb: info.memoryMb ?? 256,
    deadline: Date.now() + msg.timeoutMs,
    env: msg.env ?? {},
    schedule: scheduleOf(msg.request),
    waitUntil: (promise) => {
      background.push(Promise.resolve(promise));
    },
  };
  const call = run ?? runnerFor(msg.request, invocation);
  let timer;
  try {
    if (!call) return { outcome: { ok: false, error: loadError } };
    // The host kills the whole sandbox at the hard deadline; this softer one
    // turns a handler stuck on a promise into a clean error first.
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error(`handler did not finish within ${msg.timeoutMs} ms`), { code: 'timeout' })), msg.timeoutMs);
    });
    const value = await Promise.race([Promise.resolve().then(call), timeout]);
    const response = await Promise.race([toWireResponse(value), timeout]);
    return { outcome: { ok: true, response }, background: backgroundOf(background, invocation.deadline) };
  } catch (err) {
    const code = err?.code === 'timeout' || err?.code === 'invalid_response' ? err.code : 'handler_error';
    return { outcome: { ok: false, error: errorOf(err, code) }, background: backgroundOf(background, invocation.deadline) };
  } finally {
    clearTimeout(timer);
    const c = capture;
    capture = null;
    lastCapture = c;
  }
}
let lastCapture = null;

/**
 * ctx.waitUntil work, settled after the response was sent (rejections are
 * logged, not raised) and bounded by the invocation's deadline. Promises
 * added later, from inside the first ones, count too.
 */
function backgroundOf(list, deadline) {
  if (list.length === 0) return undefined;
  const drain = async () => {
    for (let i = 0; i < list.length; i++) {
      await list[i].catch((err) => process.stderr.write(`waitUntil: ${err?.stack ?? err}\n`));
    }
  };
  let timer;
  const expired = new Promise((resolve) => {
    timer = setTimeout(() => resolve('timeout'), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([drain().then(() => 'settled'), expired]).finally(() => clearTimeout(timer));
}

// Stands in for the user's handler in a rehearsal: it touches what most
// handlers touch (URL and query parsing, the body, JSON, a Response, logs).
async function rehearsalHandler(request) {
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
async function rehearse(msg) {
  const outcomes = [];
  for (const as of ['json', 'response']) {
    const request = { method: 'POST', url: `http://localhost/__snapfn/rehearsal?q=1&as=${as}`, headers: [['content-type', 'text/plain']], bodyBase64: Buffer.from('rehearsal').toString('base64') };
    const wire = { request, env: {}, timeoutMs: msg.timeoutMs ?? 5000 };
    const { outcome } = await invoke(wire, () => rehearsalHandler(toRequest(request)));
    invocations--;
    outcomes.push({ ...outcome, logs: lastCapture.logs, logsTruncated: lastCapture.truncated });
  }
  lastCapture = null;
  return outcomes;
}

/** The function's own hook, timed; a throw becomes { ok: false, error }. */
async function runHook(name, hook) {
  const started = performance.now();
  capture = { logs: [], bytes: 0, truncated: false, start: started };
  try {
    await hook();
    return { ok: true, ms: Math.round(performance.now() - started) };
  } catch (err) {
    return { ok: false, ms: Math.round(performance.now() - started), error: errorOf(err, `${name}_failed`) };
  } finally {
    const c = capture;
    capture = null;
    for (const line of c.logs) realWrite[line.stream](line.text);
  }
}

// ---- the host channel -----------------------------------------------------

function send(socket, obj) {
  socket.write(JSON.stringify(obj) + '\n');
}

async function handle(socket, msg) {
  switch (msg.type) {
    case 'ping':
      send(socket, { type: 'pong', id: msg.id, invocations, rssBytes: process.memoryUsage.rss() });
      return;
    case 'invoke': {
      const { outcome, background } = await invoke(msg);
      send(socket, { type: 'result', id: msg.id, outcome: { ...outcome, logs: lastCapture.logs, logsTruncated: lastCapture.truncated }, ...(background ? { waitUntil: true } : {}) });
      // Not awaited: the next message may run while this one's waitUntil work finishes.
      background?.then((state) => send(socket, { type: 'settled', id: msg.id, state }));
      return;
    }
    case 'rehearse': {
      const outcomes = await rehearse(msg);
      send(socket, { type: 'rehearsed', id: msg.id, ok: outcomes.every((o) => o.ok), outcomes });
      return;
    }
    case 'warmup': {
      // Exercise envd's own request/response path so the snapshot holds it
      // compiled. The user's handler is deliberately NOT called: whatever a
      // warm-up invocation left behind (globals, /tmp files) would be in
      // every sandbox restored from this template.
      for (let i = 0; i < 20; i++) {
        const req = toRequest({ method: 'POST', url: 'http://localhost/__snapfn/warm?i=' + i, headers: [['content-type', 'application/json']], bodyBase64: Buffer.from('{"warm":true}').toString('base64') });
        await req.json();
        await toWireResponse({ warm: true, i });
        await toWireResponse(new Response('warm', { headers: { 'x-warm': '1' } }));
      }
      await rehearse(msg);
      // The function's own warm-up runs once, here, right before the checkpoint.
      if (fn.beforeSnapshot) {
        const hook = await runHook('before_snapshot', fn.beforeSnapshot);
        if (!hook.ok) {
          send(socket, { type: 'error', id: msg.id, error: hook.error });
          return;
        }
      }
      send(socket, { type: 'warmed', id: msg.id });
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
        send(socket, { type: 'limits-set', id: msg.id });
      } catch (err) {
        realWrite.stderr(`envd: cannot apply limits: ${err?.message ?? err}\n`);
        send(socket, { type: 'error', id: msg.id, error: { code: 'limits_failed', message: String(err?.message ?? err) } });
      }
      return;
    }
    case 'prepare-checkpoint':
      // Close our side and go back to polling for the socket file: the next
      // connect happens in whichever sandbox is restored from this image.
      send(socket, { type: 'checkpoint-ready', id: msg.id });
      socket.end(() => socket.destroy());
      return;
    default:
      send(socket, { type: 'error', id: msg.id, error: { code: 'unknown_message', message: `unknown message type ${msg.type}` } });
  }
}

function serve(socket) {
  let buffered = '';
  let chain = Promise.resolve();
  socket.setEncoding('utf8');
  socket.on('data', (data) => {
    buffered += data;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (!line) continue;
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      // One invocation at a time: messages are handled strictly in order.
      chain = chain.then(() => handle(socket, msg)).catch((err) => realWrite.stderr(`envd: ${err?.stack ?? err}\n`));
    }
  });
  socket.on('close', () => waitForHost());
  socket.on('error', () => {});
}

/**
 * A new host: after boot, and after every restore (the snapshot was taken
 * while envd waited for one). From the second on this is a restored sandbox:
 * fresh randomness first, then the function's afterRestore hook, both
 * before hello, so no invocation can run before them.
 */
async function greet(connection) {
  connectCount++;
  refreshRandomness();
  if (connectCount > 1 && fn.afterRestore) restored = await runHook('after_restore', fn.afterRestore);
  send(connection, {
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
  serve(connection);
}

function waitForHost() {
  if (!fs.existsSync(SOCKET_PATH)) {
    setTimeout(waitForHost, DIAL_POLL_MS);
    return;
  }
  const socket = net.connect(SOCKET_PATH);
  socket.once('connect', () => {
    greet(socket).catch((err) => realWrite.stderr(`envd: ${err?.stack ?? err}\n`));
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
  startVirtioSerial((connection) => greet(connection).catch((err) => realWrite.stderr(`envd: ${err?.stack ?? err}\n`)));
} else waitForHost();
