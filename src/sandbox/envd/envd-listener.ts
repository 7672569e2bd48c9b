import net from 'node:net';
import fs from 'node:fs/promises';
import { EnvdConnection, type EnvdHello } from './envd-connection.ts';

/**
 * The host end of one sandbox's envd channel: a Unix socket in a directory
 * that is bind-mounted into the sandbox. envd dials it after boot and after
 * every restore (see runtime/envd/envd.mjs for why it is this way round).
 */
export class EnvdListener {
  readonly socketPath: string;
  readonly #server: net.Server;
  #pending: net.Socket[] = [];
  #waiter: ((socket: net.Socket) => void) | undefined;
  #closed = false;

  private constructor(socketPath: string, server: net.Server) {
    this.socketPath = socketPath;
    this.#server = server;
    server.on('connection', (socket) => {
      if (this.#waiter) {
        const waiter = this.#waiter;
        this.#waiter = undefined;
        waiter(socket);
      } else {
        this.#pending.push(socket);
      }
    });
  }

  static async listen(socketPath: string): Promise<EnvdListener> {
    await fs.rm(socketPath, { force: true });
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new EnvdListener(socketPath, server);
  }

  /**
   * Waits for envd to dial in and say hello. `abort` rejects early, e.g. when
   * the runsc process exits before envd ever connects.
   */
  async accept(timeoutMs: number, abort?: Promise<never>): Promise<{ connection: EnvdConnection; hello: EnvdHello }> {
    const socket = await Promise.race([
      new Promise<net.Socket>((resolve, reject) => {
        const early = this.#pending.shift();
        if (early) return resolve(early);
        const timer = setTimeout(() => {
          this.#waiter = undefined;
          reject(new Error(`envd did not connect within ${timeoutMs} ms`));
        }, timeoutMs);
        this.#waiter = (s) => {
          clearTimeout(timer);
          resolve(s);
        };
      }),
      ...(abort ? [abort] : []),
    ]);
    const connection = new EnvdConnection(socket);
    const hello = await Promise.race([connection.hello(timeoutMs), ...(abort ? [abort] : [])]);
    return { connection, hello };
  }

  /** Stop accepting and remove the socket file, so envd goes back to polling. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#pending) s.destroy();
    this.#pending = [];
    // Not awaited: 'close' only fires once the live envd connection ends,
    // and that connection is exactly what the caller still wants to use.
    this.#server.close();
    await fs.rm(this.socketPath, { force: true });
  }
}
