import type { AddressInfo, Socket } from 'node:net';
import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import { STATUS_CODES } from 'node:http';
import { PayloadTooLargeError } from '../deploy/deploy-errors.ts';
import type { SnapfnError } from '../errors.ts';
import { createGateway, type GatewayDeps } from './app.ts';
import { errorBody } from './error-response.ts';
import { HeadersTooLargeError, MalformedRequestError, RequestTimeoutError } from './http-errors.ts';

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
  let listenUrl = '';
  const app = createGateway({ ...options, listenUrl: () => listenUrl });
  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: options.port, ...(options.hostname ? { hostname: options.hostname } : {}) }) as Server;
    s.once('listening', () => resolve(s));
    s.once('error', reject);
  });
  server.on('clientError', answerClientError);
  const port = (server.address() as AddressInfo).port;
  const host = !options.hostname || options.hostname === '0.0.0.0' || options.hostname === '::' ? '127.0.0.1' : options.hostname;
  listenUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  let closing: Promise<void> | undefined;
  return {
    port,
    url: listenUrl,
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

/**
 * What node's HTTP parser rejects before a request exists (headers over
 * --max-http-header-size, a malformed request line, a header timeout) never
 * reaches the app: node would answer a bare status line. These get the
 * gateway's one error shape too, with node's own status for each.
 */
export function clientErrorResponse(err: NodeJS.ErrnoException): string {
  const error: SnapfnError =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new HeadersTooLargeError()
      : err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW'
        ? new PayloadTooLargeError('the chunk extensions of the request body are too large')
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? new RequestTimeoutError()
          : new MalformedRequestError();
  const body = JSON.stringify(errorBody(error));
  const head = [`HTTP/1.1 ${error.status} ${STATUS_CODES[error.status]}`, 'content-type: application/json; charset=utf-8', `content-length: ${Buffer.byteLength(body)}`, 'connection: close'];
  return `${head.join('\r\n')}\r\n\r\n${body}`;
}

function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  // As node's own handler: only on a socket nothing was written to yet (else a response is half out).
  if (err.code === 'ECONNRESET' || !socket.writable || socket.bytesWritten > 0) {
    socket.destroy();
    return;
  }
  socket.end(clientErrorResponse(err));
}
