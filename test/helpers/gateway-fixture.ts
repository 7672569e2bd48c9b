import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Hono } from 'hono';
import { createGateway, type GatewayDeps, type GatewayEnv } from '../../src/gateway/app.ts';
import type { FunctionQueues } from '../../src/queue/function-queues.ts';
import { openQueueLayer, type QueueLayer, type QueueLayerOptions } from '../../src/queue-layer.ts';
import { FunctionStore } from '../../src/registry/function-store.ts';
import { DeployEvent, type DeployRequest } from '../../src/schemas/api.ts';
import { SnapfnMetrics } from '../../src/telemetry/snapfn-metrics.ts';
import { FakeEngine } from './fake-engine.ts';

export interface FixtureOptions {
  apiKey?: string;
  maxBodyBytes?: number;
  maxDeployBytes?: number;
  maxLogBytes?: number;
  /** With the queue layer on this Redis (the fixture's fake engine runs its jobs). */
  queue?: { redisUrl: string; shared?: boolean; maxQueuedPerFunction?: number; maxQueueWaitMs?: number; tuning?: QueueLayerOptions['tuning'] };
  /** Serve /metrics (fed by the fake engine and, with `queue`, the queue layer). */
  metrics?: boolean;
}

/** What @hono/node-server passes as `env`: enough of it for getConnInfo. */
export function connEnv(remoteAddress: string): GatewayEnv['Bindings'] {
  return { incoming: { socket: { remoteAddress, remotePort: 40000, remoteFamily: remoteAddress.includes(':') ? 'IPv6' : 'IPv4' } } } as unknown as GatewayEnv['Bindings'];
}

export const LOCAL = connEnv('127.0.0.1');

export function textFiles(files: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(files).map(([p, text]) => [p, Buffer.from(text).toString('base64')]));
}

export interface DeployReply {
  status: number;
  contentType: string;
  /** For streamed replies: every event; for plain JSON errors: empty. */
  events: DeployEvent[];
  json?: unknown;
}

export class GatewayFixture {
  private constructor(
    readonly home: string,
    readonly engine: FakeEngine,
    readonly store: FunctionStore,
    readonly app: Hono<GatewayEnv>,
    /** What the gateway reported as unexpected errors. */
    readonly logged: string[],
    /** The gateway's config: tests may change it between requests (it is read per request). */
    readonly config: GatewayDeps['config'],
    readonly queueLayer: QueueLayer | undefined,
    readonly metrics: SnapfnMetrics | undefined,
  ) {}

  /** The queue layer's functions (only with the `queue` option). */
  get queue(): FunctionQueues {
    if (!this.queueLayer) throw new Error('this fixture has no queue');
    return this.queueLayer.functions;
  }

  static async create(options: FixtureOptions = {}): Promise<GatewayFixture> {
    const home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-home-'));
    const engine = await FakeEngine.create();
    const store = await FunctionStore.open(home, options.maxLogBytes ? { maxLogBytes: options.maxLogBytes } : {});
    const logged: string[] = [];
    const q = options.queue;
    const metrics = options.metrics ? new SnapfnMetrics({ engineStats: () => engine.stats(), driver: { name: 'fake', platform: 'none' } }) : undefined;
    const queueLayer = q
      ? openQueueLayer({
          redisUrl: q.redisUrl,
          shared: q.shared ?? false,
          engine,
          store,
          maxQueuedPerFunction: q.maxQueuedPerFunction ?? 1000,
          metrics,
          log: (m) => logged.push(m),
          ...(q.tuning ? { tuning: q.tuning } : {}),
        })
      : undefined;
    const config: GatewayDeps['config'] = {
      apiKey: options.apiKey,
      maxBodyBytes: options.maxBodyBytes ?? 6 * 1024 * 1024,
      maxDeployBytes: options.maxDeployBytes ?? 20 * 1024 * 1024,
      ...(q?.maxQueueWaitMs ? { maxQueueWaitMs: q.maxQueueWaitMs } : {}),
    };
    const app = createGateway({ engine, store, config, queue: queueLayer?.functions, log: (m) => logged.push(m), ...(metrics ? { metrics } : {}) });
    return new GatewayFixture(home, engine, store, app, logged, config, queueLayer, metrics);
  }

  request(url: string, init: RequestInit = {}, env: GatewayEnv['Bindings'] = LOCAL): Promise<Response> {
    return Promise.resolve(this.app.request(url, init, env));
  }

  /** A JSON call to the management API as a local client (or with `key`). */
  async api(method: string, url: string, body?: unknown, options: { key?: string; env?: GatewayEnv['Bindings'] } = {}): Promise<{ status: number; json: any; headers: Headers }> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (options.key) headers.authorization = `Bearer ${options.key}`;
    const res = await this.request(url, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) }, options.env ?? LOCAL);
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined, headers: res.headers };
  }

  /** `files` are given as text (the fixture encodes them); `manifest` entries name blobs put with `putBlob`. */
  async deploy(request: Omit<DeployRequest, 'files'> & { files?: Record<string, string> }, options: { key?: string } = {}): Promise<DeployReply> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (options.key) headers.authorization = `Bearer ${options.key}`;
    const body = { ...request, ...(request.files ? { files: textFiles(request.files) } : {}) };
    const res = await this.request('/v1/functions', { method: 'POST', headers, body: JSON.stringify(body) });
    const contentType = res.headers.get('content-type') ?? '';
    const text = await res.text();
    if (!contentType.includes('ndjson')) return { status: res.status, contentType, events: [], json: JSON.parse(text) };
    const events = text.split('\n').filter(Boolean).map((line) => DeployEvent.parse(JSON.parse(line)));
    return { status: res.status, contentType, events };
  }

  /** `PUT /v1/blobs/<sha256 of bytes>` (or `as`, to lie about it) as a local client. */
  async putBlob(bytes: Buffer | string, options: { as?: string; key?: string; env?: GatewayEnv['Bindings'] } = {}): Promise<{ status: number; json: any; sha256: string }> {
    const data = Buffer.from(bytes);
    const sha256 = options.as ?? crypto.createHash('sha256').update(data).digest('hex');
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (options.key) headers.authorization = `Bearer ${options.key}`;
    const res = await this.request(`/v1/blobs/${sha256}`, { method: 'PUT', headers, body: data }, options.env ?? LOCAL);
    return { status: res.status, json: await res.json(), sha256 };
  }

  /** Deploys and insists it worked; returns the result event's function. */
  async deployOk(request: Parameters<GatewayFixture['deploy']>[0]) {
    const reply = await this.deploy(request);
    const last = reply.events.at(-1);
    if (last?.type !== 'result') throw new Error(`deploy failed: ${JSON.stringify(reply.json ?? last)}`);
    return last.function;
  }

  async close(): Promise<void> {
    await this.queueLayer?.close();
    await this.store.close();
    await this.engine.close();
    await fs.rm(this.home, { recursive: true, force: true });
  }
}

export const HELLO = `export default async function (request) {
  const name = new URL(request.url).searchParams.get('name') ?? 'world';
  return { greeting: 'hello ' + name };
}
`;
