// The process that starts every long-running runsc on snapfn's behalf (see
// runsc-launcher.ts for why). Plain JavaScript with no dependencies: it has
// to start fast and stay small, since fork() cost grows with the RSS of the
// process that forks.
//
// It is started inside a private mount namespace (slave propagation, so new
// `ip netns` mounts still show up) with a tmpfs over /proc/sys/net: runsc
// refuses `--network=sandbox` on this kernel while /proc/sys/net/core is
// visible, and doing the mount once here saves three execs per sandbox.
//
// Messages (Node IPC, JSON):
//   in:  { op: 'spawn', id, file, args, logFile } | { op: 'kill', id, signal }
//   out: { op: 'ready' } | { op: 'spawned', id, pid } | { op: 'exit', id, code, signal?, error? }

import { spawn } from 'node:child_process';
import fs from 'node:fs';

const children = new Map();

function send(msg) {
  if (process.connected) process.send(msg);
}

function start(msg) {
  let fd;
  try {
    // stdout/stderr go to a file, never to a pipe (runsc -detach and its
    // children hang on a pipe kept open) and never to /dev/null (runsc chowns
    // its stdio). stdin is an idle pipe.
    fd = fs.openSync(msg.logFile, 'a');
    const child = spawn(msg.file, msg.args, { stdio: ['pipe', fd, fd] });
    children.set(msg.id, child);
    child.once('error', (err) => {
      children.delete(msg.id);
      send({ op: 'exit', id: msg.id, code: -1, error: String(err.message) });
    });
    child.once('exit', (code, signal) => {
      children.delete(msg.id);
      send({ op: 'exit', id: msg.id, code: code ?? -1, signal: signal ?? undefined });
    });
    if (child.pid !== undefined) send({ op: 'spawned', id: msg.id, pid: child.pid });
  } catch (err) {
    send({ op: 'exit', id: msg.id, code: -1, error: String(err?.message ?? err) });
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

process.on('message', (msg) => {
  if (msg?.op === 'spawn') start(msg);
  else if (msg?.op === 'kill') {
    try {
      children.get(msg.id)?.kill(msg.signal ?? 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

// snapfn went away: its sandboxes are reaped by the next start (reapOrphans),
// and the foreground runsc processes keep cleaning up after their sandboxes.
process.on('disconnect', () => process.exit(0));

send({ op: 'ready' });
