import http from 'node:http';
import type { z } from 'zod';
import {
  BootSource,
  Drive,
  FaultBody,
  InstanceActionInfo,
  InstanceInfo,
  MachineConfiguration,
  NetworkInterface,
  SnapshotCreateParams,
  SnapshotLoadParams,
  VmState,
  Vsock,
} from './api-schemas.ts';

/** Firecracker answered with an error status; `fault` is its own explanation. */
export class FirecrackerApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly fault: string,
  ) {
    super(`Firecracker ${method} ${path} -> ${status}: ${fault}`);
    this.name = 'FirecrackerApiError';
  }
}

export interface FirecrackerApiOptions {
  /** Per request; snapshot create/load get `snapshotTimeoutMs`. Default 10 s. */
  timeoutMs?: number;
  /** Writing or mapping a multi-GiB memory file takes a while. Default 120 s. */
  snapshotTimeoutMs?: number;
}

/**
 * Firecracker's REST API over its Unix socket (`--api-sock`). Every body is
 * validated against our own schemas before it is sent (see api-schemas.ts),
 * so a bad request fails here with a zod error naming the field instead of
 * a 400 from the VMM.
 */
export class FirecrackerApi {
  readonly socketPath: string;
  readonly #timeoutMs: number;
  readonly #snapshotTimeoutMs: number;

  constructor(socketPath: string, options: FirecrackerApiOptions = {}) {
    this.socketPath = socketPath;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#snapshotTimeoutMs = options.snapshotTimeoutMs ?? 120_000;
  }

  putBootSource(body: BootSource): Promise<void> {
    return this.#send('PUT', '/boot-source', BootSource, body);
  }

  putDrive(body: Drive): Promise<void> {
    return this.#send('PUT', `/drives/${encodeURIComponent(body.drive_id)}`, Drive, body);
  }

  putNetworkInterface(body: NetworkInterface): Promise<void> {
    return this.#send('PUT', `/network-interfaces/${encodeURIComponent(body.iface_id)}`, NetworkInterface, body);
  }

  putMachineConfig(body: MachineConfiguration): Promise<void> {
    return this.#send('PUT', '/machine-config', MachineConfiguration, body);
  }

  putVsock(body: Vsock): Promise<void> {
    return this.#send('PUT', '/vsock', Vsock, body);
  }

  startInstance(): Promise<void> {
    return this.#send('PUT', '/actions', InstanceActionInfo, { action_type: 'InstanceStart' });
  }

  pause(): Promise<void> {
    return this.#send('PATCH', '/vm', VmState, { state: 'Paused' });
  }

  resume(): Promise<void> {
    return this.#send('PATCH', '/vm', VmState, { state: 'Resumed' });
  }

  createSnapshot(body: SnapshotCreateParams): Promise<void> {
    return this.#send('PUT', '/snapshot/create', SnapshotCreateParams, body, this.#snapshotTimeoutMs);
  }

  loadSnapshot(body: SnapshotLoadParams): Promise<void> {
    return this.#send('PUT', '/snapshot/load', SnapshotLoadParams, body, this.#snapshotTimeoutMs);
  }

  async describeInstance(): Promise<InstanceInfo> {
    const { status, text } = await this.#request('GET', '/', undefined, this.#timeoutMs);
    if (status !== 200) throw new FirecrackerApiError('GET', '/', status, faultOf(text));
    return InstanceInfo.parse(JSON.parse(text));
  }

  /**
   * Polls until the API socket answers. Firecracker creates the socket a few
   * milliseconds after exec; `abort` (the process exiting) ends the wait early.
   */
  async waitUntilReady(timeoutMs: number, abort?: Promise<never>): Promise<InstanceInfo> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    let aborted: unknown;
    abort?.catch((err: unknown) => (aborted = err ?? new Error('aborted')));
    while (Date.now() < deadline) {
      if (aborted) throw aborted;
      try {
        return await this.describeInstance();
      } catch (err) {
        last = err;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    throw new Error(`the Firecracker API at ${this.socketPath} did not answer within ${timeoutMs} ms: ${(last as Error)?.message}`);
  }

  async #send<S extends z.ZodType>(method: string, path: string, schema: S, body: z.input<S>, timeoutMs = this.#timeoutMs): Promise<void> {
    const valid = schema.parse(body);
    const { status, text } = await this.#request(method, path, valid, timeoutMs);
    if (status !== 204 && status !== 200) throw new FirecrackerApiError(method, path, status, faultOf(text));
  }

  #request(method: string, path: string, body: unknown, timeoutMs: number): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request(
        {
          socketPath: this.socketPath,
          method,
          path,
          agent: false,
          headers: { Accept: 'application/json', ...(payload ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } : {}) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
          });
          res.on('error', reject);
        },
      );
      const timer = setTimeout(() => req.destroy(new Error(`Firecracker ${method} ${path} timed out after ${timeoutMs} ms`)), timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.end(payload);
    });
  }
}

function faultOf(text: string): string {
  try {
    const parsed = FaultBody.safeParse(JSON.parse(text));
    if (parsed.success) return parsed.data.fault_message;
  } catch {
    // not JSON
  }
  return text.slice(0, 300) || '(empty body)';
}
