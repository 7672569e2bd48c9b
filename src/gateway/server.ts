import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import { createGateway, type GatewayDeps } from './app.ts';

export interface StartGatewayOptions extends GatewayDeps {
  port: number;
  /** Interface to listen on; all of them by default. */
  hostname?: string;
}

export interface RunningGateway {
  readonly port: number;
  /** Base URL for clients on this host. */
  readonly url: string;
  readonly server: Server;
  /** Stops accepting, gives in-flight requests `graceMs` to finish, then cuts the rest (e.g. `logs -f` streams). */
  close(options?: { graceMs?: number }): Promise<void>;
}

export async function startGateway(options: StartGatewayOptions): Promise<RunningGateway> {
  const app = createGateway(options);
  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: options.port, ...(options.hostname ? { hostname: options.hostname } : {}) }) as Server;
    s.once('listening', () => resolve(s));
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  const host = !options.hostname || options.hostname === '0.0.0.0' || options.hostname === '::' ? '127.0.0.1' : options.hostname;
  let closing: Promise<void> | undefined;
  return {
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    server,
    close({ graceMs = 5000 } = {}) {
      closing ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), graceMs);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
