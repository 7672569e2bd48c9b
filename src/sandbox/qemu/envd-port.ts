import net from 'node:net';
import { EnvdConnection, type EnvdHello } from '../envd/envd-connection.ts';

/**
 * The host end of envd's virtio-serial channel. QEMU owns the socket (a
 * chardev server); we dial it, then send a bare newline: a virtio-serial
 * guest cannot see a connect, only bytes, so the host speaks first and envd
 * answers the first bytes after a hang-up with hello (runtime/envd/envd.mjs).
 * Until the guest opens the port QEMU leaves the newline in the socket, so
 * this works both while the guest is still booting and right after a restore.
 */
export async function connectEnvd(
  socketPath: string,
  timeoutMs: number,
  abort: Promise<never>,
  /** Sent as the host's first bytes (instead of the bare newline): the sandbox's limits, applied before any invocation. */
  limits?: GuestLimits,
): Promise<{ connection: EnvdConnection; hello: EnvdHello }> {
  const socket = await Promise.race([dialWithRetry(socketPath, timeoutMs), abort]);
  const connection = new EnvdConnection(socket);
  const applied = limits ? limitsReply(socket, timeoutMs) : undefined;
  applied?.catch(() => {});
  socket.write(limits ? JSON.stringify({ type: 'limits', ...limits }) + '\n' : '\n');
  try {
    const hello = await Promise.race([connection.hello(timeoutMs), abort]);
    if (applied) await Promise.race([applied, abort]);
    return { connection, hello };
  } catch (err) {
    connection.close();
    throw err;
  }
}

export interface GuestLimits {
  /** memory.max of the guest cgroup that holds envd and the handler; null: the whole guest RAM. */
  memoryMb: number | null;
}

/**
 * envd's answer to `limits` carries no request id, so EnvdConnection drops
 * it; it is read here, beside it, so that a limit the guest could not apply
 * fails the restore instead of leaving the function unlimited.
 */
function limitsReply(socket: net.Socket, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let buffered = '';
    const done = (err?: Error) => {
      clearTimeout(timer);
      socket.off('data', onData);
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => done(new Error(`envd did not confirm the sandbox limits within ${timeoutMs} ms`)), timeoutMs);
    const onData = (data: string | Buffer) => {
      buffered += String(data);
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.includes('"limits-set"')) return done();
        if (line.includes('"limits_failed"')) return done(new Error(`envd could not apply the sandbox limits: ${line.slice(0, 300)}`));
      }
    };
    socket.on('data', onData);
  });
}

async function dialWithRetry(socketPath: string, timeoutMs: number): Promise<net.Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(socketPath);
        s.once('connect', () => {
          s.off('error', reject);
          resolve(s);
        });
        s.once('error', reject);
      });
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}
