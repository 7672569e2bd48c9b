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
import crypto, { randomUUID } from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';

const SOCKET_PATH = process.env.SNAPFN_ENVD_SOCKET ?? '/run/snapfn/envd.sock';
const HANDLER_PATH = process.env.SNAPFN_HANDLER ?? '/fn/handler.mjs';
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

// ---- fresh randomness after every restore ---------------------------------
//
// Every sandbox restored from one template starts with the same V8 and
// OpenSSL random state: it is part of the snapshot. Left alone, Math.random,
// crypto.randomUUID and crypto.randomBytes return the same values in every
// sandbox. gVisor's /dev/urandom draws from the host on every read, so the
// random APIs are re-pointed at it, and bytes buffered before a (re)connect
// are thrown away. This runs before the handler is imported, so modules that
// keep a reference to these functions get the fresh ones too.
const urandomFd = fs.openSync('/dev/urandom', 'r');
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let poolOffset = 0;

function readUrandom(target) {
  for (let off = 0; off < target.length; ) off += fs.readSync(urandomFd, target, off, target.length - off, null);
}

function freshBytes(n) {
  if (n > POOL_BYTES / 4) {
    const out = Buffer.allocUnsafe(n);
    readUrandom(out);
    return out;
  }
  if (poolOffset + n > pool.length) {
    pool = Buffer.allocUnsafe(POOL_BYTES);
    readUrandom(pool);
    poolOffset = 0;
  }
  const out = Buffer.from(pool.subarray(poolOffset, poolOffset + n));
  poolOffset += n;
  return out;
}

/** Called on every connect: after a restore, nothing buffered in the snapshot may be handed out. */
function forgetEntropy() {
  pool = Buffer.alloc(0);
  poolOffset = 0;
}

function fillView(view, offset = 0, size) {
  const bytes = ArrayBuffer.isView(view) ? new Uint8Array(view.buffer, view.byteOffset, view.byteLength) : new Uint8Array(view);
  const length = size ?? bytes.length - offset;
  bytes.set(freshBytes(length), offset);
  return view;
}

function uuidV4() {
  const b = freshBytes(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function randomInt(min, max, callback) {
  if (max === undefined || typeof max === 'function') [min, max, callback] = [0, min, max];
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || max <= min) throw new RangeError('randomInt needs safe integers with min < max');
  const range = max - min;
  // Rejection sampling over 48 bits keeps the result unbiased.
  const limit = 2 ** 48 - (2 ** 48 % range);
  let x;
  do x = freshBytes(6).readUIntBE(0, 6);
  while (x >= limit);
  const value = min + (x % range);
  if (typeof callback === 'function') process.nextTick(callback, null, value);
  else return value;
}

Math.random = () => {
  const b = freshBytes(8);
  return (b.readUInt32BE(0) * 2 ** 21 + (b.readUInt32BE(4) >>> 11)) / 2 ** 53;
};
crypto.randomBytes = (size, callback) => {
  const out = freshBytes(size);
  if (typeof callback === 'function') process.nextTick(callback, null, out);
  else return out;
};
crypto.pseudoRandomBytes = crypto.randomBytes;
crypto.randomFillSync = (view, offset, size) => fillView(view, offset, size);
crypto.randomFill = (view, offset, size, callback) => {
  const cb = [offset, size, callback].find((a) => typeof a === 'function');
  fillView(view, typeof offset === 'number' ? offset : 0, typeof size === 'number' ? size : undefined);
  process.nextTick(cb, null, view);
};
crypto.randomUUID = () => uuidV4();
crypto.randomInt = randomInt;
// crypto.getRandomValues is a getter for webcrypto's; patching webcrypto below covers it.
for (const target of [globalThis.crypto, crypto.webcrypto]) {
  if (!target) continue;
  Object.defineProperty(target, 'getRandomValues', { value: (view) => fillView(view), configurable: true, writable: true });
  Object.defineProperty(target, 'randomUUID', { value: () => uuidV4(), configurable: true, writable: true });
}
syncBuiltinESMExports();

// ---- loading the handler --------------------------------------------------

let handler = null;
let handlerConfig = null;
let loadError = null;
try {
  const mod = await import(HANDLER_PATH);
  handler = mod.default;
  handlerConfig = mod.config === undefined ? null : JSON.parse(JSON.stringify(mod.config));
  if (typeof handler !== 'function') loadError = { code: 'invalid_handler', message: `the default export is ${handler === undefined ? 'missing' : `a ${typeof handler}`}, not a function` };
} catch (err) {
  loadError = { code: 'load_failed', message: String(err?.message ?? err), stack: err?.stack };
}

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

async function invoke(msg, run = handler) {
  invocations++;
  process.env = { ...baseEnv, ...msg.env };
  capture = { logs: [], bytes: 0, truncated: false, start: performance.now() };
  let timer;
  try {
    if (!run) return { ok: false, error: loadError };
    // The host kills the whole sandbox at the hard deadline; this softer one
    // turns a handler stuck on a promise into a clean error first.
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error(`handler did not finish within ${msg.timeoutMs} ms`), { code: 'timeout' })), msg.timeoutMs);
    });
    const value = await Promise.race([Promise.resolve().then(() => run(toRequest(msg.request))), timeout]);
    const response = await Promise.race([toWireResponse(value), timeout]);
    return { ok: true, response };
  } catch (err) {
    const code = err?.code === 'timeout' || err?.code === 'invalid_response' ? err.code : 'handler_error';
    return { ok: false, error: errorOf(err, code) };
  } finally {
    clearTimeout(timer);
    const c = capture;
    capture = null;
    lastCapture = c;
  }
}
let lastCapture = null;

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
    const outcome = await invoke({ request, env: {}, timeoutMs: msg.timeoutMs ?? 5000 }, rehearsalHandler);
    invocations--;
    outcomes.push({ ...outcome, logs: lastCapture.logs, logsTruncated: lastCapture.truncated });
  }
  lastCapture = null;
  return outcomes;
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
      const outcome = await invoke(msg);
      send(socket, { type: 'result', id: msg.id, outcome: { ...outcome, logs: lastCapture.logs, logsTruncated: lastCapture.truncated } });
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

function waitForHost() {
  if (!fs.existsSync(SOCKET_PATH)) {
    setTimeout(waitForHost, DIAL_POLL_MS);
    return;
  }
  const socket = net.connect(SOCKET_PATH);
  socket.once('connect', () => {
    connectCount++;
    forgetEntropy();
    send(socket, {
      type: 'hello',
      bootId,
      connectCount,
      invocations,
      handlerType: typeof handler,
      handlerConfig,
      loadError,
      nodeVersion: process.version,
    });
    serve(socket);
  });
  socket.once('error', () => {
    socket.destroy();
    setTimeout(waitForHost, DIAL_POLL_MS);
  });
}

// ---- second transport: a virtio-serial port (QEMU microVM driver) ---------
//
// Selected by SNAPFN_ENVD_TRANSPORT=virtio-serial (runtime/guest/init sets
// it); without it nothing below runs. The port is a character device whose
// host end is a QEMU chardev socket that a *new* QEMU process owns after every
// restore, so envd cannot dial anything: it learns about the host from the
// port itself. The guest kernel makes read() return 0 while no host is
// connected and block while one is; the host speaks first (a bare newline,
// which the line parser skips), and the first bytes after a hang-up mean "a
// new host": envd answers with hello exactly as after a socket dial.

function findVirtioPort(name) {
  let entries = [];
  try {
    entries = fs.readdirSync('/sys/class/virtio-ports');
  } catch {
    return null; // virtio_console not bound yet: the caller retries
  }
  for (const entry of entries) {
    try {
      if (fs.readFileSync(`/sys/class/virtio-ports/${entry}/name`, 'utf8').trim() === name) return `/dev/${entry}`;
    } catch {}
  }
  return null;
}

/** Just enough of net.Socket for serve() and handle(): data in, write, end. */
class PortConnection {
  constructor(fd) {
    this.fd = fd;
    this.ended = false;
    this.listeners = { data: [], close: [], error: [] };
    this.writes = Promise.resolve();
  }
  setEncoding() {}
  on(event, fn) {
    this.listeners[event]?.push(fn);
    return this;
  }
  emitData(text) {
    for (const fn of this.listeners.data) fn(text);
  }
  write(text) {
    if (this.ended) return false;
    const buf = Buffer.from(text);
    // Serialised: concurrent fs.write calls on one fd may interleave.
    this.writes = this.writes.then(() => new Promise((resolve) => writeAll(this.fd, buf, resolve)));
    return true;
  }
  end(callback) {
    // A port cannot hang up: stop answering and let the host close its end.
    this.writes.then(() => {
      this.ended = true;
      portState.connection = null;
      callback?.();
    });
  }
  destroy() {
    this.ended = true;
  }
}

function writeAll(fd, buf, done) {
  fs.write(fd, buf, 0, buf.length, null, (err, n) => {
    if (err || n >= buf.length) return done();
    writeAll(fd, buf.subarray(n), done);
  });
}

const portState = { connection: null };

function startVirtioSerial() {
  const name = process.env.SNAPFN_ENVD_PORT_NAME ?? 'org.snapfn.envd';
  const device = findVirtioPort(name);
  if (!device) {
    setTimeout(startVirtioSerial, 50);
    return;
  }
  const fd = fs.openSync(device, 'r+');
  const buf = Buffer.alloc(64 * 1024);
  let decoder = new TextDecoder();
  const readLoop = () => {
    fs.read(fd, buf, 0, buf.length, null, (err, n) => {
      if (err || n === 0) {
        // No host (or it just left): the next bytes belong to a new one.
        if (portState.connection) portState.connection.ended = true;
        portState.connection = null;
        decoder = new TextDecoder();
        setTimeout(readLoop, DIAL_POLL_MS * 2);
        return;
      }
      if (!portState.connection) {
        const conn = new PortConnection(fd);
        portState.connection = conn;
        connectCount++;
        forgetEntropy();
        send(conn, { type: 'hello', bootId, connectCount, invocations, handlerType: typeof handler, handlerConfig, loadError, nodeVersion: process.version });
        serve(conn);
      }
      portState.connection.emitData(decoder.decode(buf.subarray(0, n), { stream: true }));
      readLoop();
    });
  };
  readLoop();
}

if (process.env.SNAPFN_ENVD_TRANSPORT === 'virtio-serial') {
  // The port is read by a blocking read() in libuv's threadpool, and Node's
  // exit joins the threadpool: a handler calling process.exit() would hang
  // envd forever (and the host until the timeout). Dying by SIGKILL skips the
  // join; init then ends the VM and the host sees a crashed sandbox.
  process.on('exit', () => process.kill(process.pid, 'SIGKILL'));
  startVirtioSerial();
}
else waitForHost();
