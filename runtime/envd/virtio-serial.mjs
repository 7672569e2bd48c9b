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

import fs from 'node:fs';
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

/** Just enough of net.Socket for serve() and handle(): data in, write, end. */
class PortConnection {
  constructor(fd) {
    this.fd = fd;
    this.ended = false;
    this.listeners = { data: [], close: [], error: [] };
    this.writes = Promise.resolve();
    this.pending = [];
  }
  setEncoding() {}
  on(event, fn) {
    this.listeners[event]?.push(fn);
    if (event === 'data') for (const text of this.pending.splice(0)) fn(text);
    return this;
  }
  emitData(text) {
    // Bytes that come before envd has said hello wait for serve() to listen.
    if (this.listeners.data.length === 0) this.pending.push(text);
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

/** Calls `onHost(connection)` for each new host on the port (after boot and after every restore). */
export function startVirtioSerial(onHost) {
  const name = process.env.SNAPFN_ENVD_PORT_NAME ?? 'org.snapfn.envd';
  const device = findVirtioPort(name);
  if (!device) {
    setTimeout(() => startVirtioSerial(onHost), 50);
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
        setTimeout(readLoop, POLL_MS);
        return;
      }
      if (!portState.connection) {
        const conn = new PortConnection(fd);
        portState.connection = conn;
        onHost(conn);
      }
      portState.connection.emitData(decoder.decode(buf.subarray(0, n), { stream: true }));
      readLoop();
    });
  };
  readLoop();
}

