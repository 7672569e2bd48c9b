// envd's second transport: a virtio-serial port (QEMU microVM driver).
//
// envd.mjs starts it when SNAPFN_ENVD_TRANSPORT=virtio-serial (runtime/guest/init
// sets it). The port is a character device whose
// host end is a QEMU chardev socket that a *new* QEMU process owns after every
// restore, so envd cannot dial anything: it learns about the host from the
// port itself. The guest kernel makes read() return 0 while no host is
// connected and block while one is; the host speaks first (a bare newline,
// which the line parser skips), and the first bytes after a hang-up mean "a
// new host": envd answers with hello exactly as after a socket dial.

// @ts-check
import fs from 'node:fs';
import { EventEmitter } from 'node:events';
import { Buffer } from 'node:buffer';

// Poll interval while no host holds the port.
const POLL_MS = 2;

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

/** Queued writes above this make write() return false, as a socket's buffer does. */
const HIGH_WATER_BYTES = 256 * 1024;

/** The port as a byte stream, enough of net.Socket for the Channel: data in, write with backpressure, end. */
class PortConnection extends EventEmitter {
  /** @param {number} fd */
  constructor(fd) {
    super();
    this.fd = fd;
    this.ended = false;
    this.queued = 0;
    /** @type {Promise<void>} */
    this.writes = Promise.resolve();
    /** @type {Buffer[]} */
    this.pending = [];
  }
  /** @param {string} event @param {(...args: any[]) => void} listener */
  on(event, listener) {
    super.on(event, listener);
    // Bytes that come before envd has said hello wait for the channel to listen.
    if (event === 'data') for (const bytes of this.pending.splice(0)) listener(bytes);
    return this;
  }
  /** @param {Buffer} bytes */
  receive(bytes) {
    if (this.listenerCount('data') === 0) this.pending.push(bytes);
    else this.emit('data', bytes);
  }
  /** @param {Uint8Array} bytes */
  write(bytes) {
    if (this.ended) return false;
    const buf = Buffer.from(bytes);
    this.queued += buf.length;
    // Serialised: concurrent fs.write calls on one fd may interleave.
    this.writes = this.writes.then(
      () =>
        new Promise((resolve) =>
          writeAll(this.fd, buf, () => {
            this.queued -= buf.length;
            if (this.queued === 0) this.emit('drain');
            resolve();
          }),
        ),
    );
    return this.queued < HIGH_WATER_BYTES;
  }
  /** @param {() => void} [callback] */
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

/** @param {number} fd @param {Buffer} buf @param {() => void} done */
function writeAll(fd, buf, done) {
  fs.write(fd, buf, 0, buf.length, null, (err, n) => {
    if (err || n >= buf.length) return done();
    writeAll(fd, buf.subarray(n), done);
  });
}

/** @type {{ connection: PortConnection | null }} */
const portState = { connection: null };

/**
 * Calls `onHost(connection)` for each new host on the port (after boot and after every restore).
 * @param {(connection: PortConnection) => void} onHost
 */
export function startVirtioSerial(onHost) {
  const name = process.env.SNAPFN_ENVD_PORT_NAME ?? 'org.snapfn.envd';
  const device = findVirtioPort(name);
  if (!device) {
    setTimeout(() => startVirtioSerial(onHost), 50);
    return;
  }
  const fd = fs.openSync(device, 'r+');
  const buf = Buffer.alloc(64 * 1024);
  const readLoop = () => {
    fs.read(fd, buf, 0, buf.length, null, (err, n) => {
      if (err || n === 0) {
        // No host (or it just left): the next bytes belong to a new one.
        if (portState.connection) {
          portState.connection.ended = true;
          portState.connection.emit('close');
        }
        portState.connection = null;
        setTimeout(readLoop, POLL_MS);
        return;
      }
      if (!portState.connection) {
        const conn = new PortConnection(fd);
        portState.connection = conn;
        onHost(conn);
      }
      portState.connection.receive(Buffer.from(buf.subarray(0, n)));
      readLoop();
    });
  };
  readLoop();
}
