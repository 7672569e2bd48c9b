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
export async function connectEnvd(socketPath: string, timeoutMs: number, abort: Promise<never>): Promise<{ connection: EnvdConnection; hello: EnvdHello }> {
  const socket = await Promise.race([dialWithRetry(socketPath, timeoutMs), abort]);
  const connection = new EnvdConnection(socket);
  socket.write('\n');
  try {
    const hello = await Promise.race([connection.hello(timeoutMs), abort]);
    return { connection, hello };
  } catch (err) {
    connection.close();
    throw err;
  }
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
