import net from 'node:net';
import { EnvdConnection, type EnvdHello } from '../envd/envd-connection.ts';

/**
 * The host end of envd's virtio-serial channel. QEMU owns the socket (a
 * chardev server) and dial it. A virtio-serial guest cannot see a connect,
 * only bytes, so the host speaks first (a frame: `attach`, or `limits`) and
 * envd answers the first bytes after a hang-up with hello
 * (runtime/envd/envd.mjs). Until the guest opens the port QEMU leaves those
 * bytes in the socket, so this works both while the guest is still booting
 * and right after a restore.
 */
export async function connectEnvd(
  socketPath: string,
  timeoutMs: number,
  abort: Promise<never>,
  /** Sent as the host's first frame (instead of `attach`): the sandbox's limits, applied before any invocation. */
  limits?: GuestLimits,
): Promise<{ connection: EnvdConnection; hello: EnvdHello }> {
  const socket = await Promise.race([dialWithRetry(socketPath, timeoutMs), abort]);
  const connection = new EnvdConnection(socket);
  // The guest answers the first frame after a hang-up with hello; a limit it cannot apply fails the restore.
  const applied = limits ? connection.applyLimits(limits.memoryMb, timeoutMs) : undefined;
  applied?.catch(() => {});
  if (!limits) connection.attach();
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
