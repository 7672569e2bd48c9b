import path from 'node:path';
import { packDirectory } from '../src/deploy/pack-directory.ts';
import type { FunctionConfigPatch } from '../src/schemas/api.ts';

/** The few HTTP calls the benchmark makes against a running gateway. */
export class GatewayClient {
  constructor(readonly baseUrl: string) {}

  /** Deploys a handler directory through POST /v1/functions and waits for the NDJSON result. */
  async deploy(dir: string, name: string, config: FunctionConfigPatch = {}): Promise<void> {
    const packed = await packDirectory(dir, { maxBytes: 50 * 1024 * 1024 });
    const res = await fetch(`${this.baseUrl}/v1/functions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name, files: packed.files, config }),
    });
    const text = await res.text();
    const last = text.trim().split('\n').pop() ?? '';
    if (!res.ok || !last.includes('"result"')) throw new Error(`deploy of ${name} (${path.basename(dir)}) failed: ${res.status} ${last.slice(0, 300)}`);
  }

  async remove(name: string): Promise<void> {
    await fetch(`${this.baseUrl}/v1/functions/${name}`, { method: 'DELETE' }).then((r) => r.arrayBuffer());
  }

  /** One synchronous invocation; throws unless the function answered 2xx. */
  async invoke(name: string, init: { method?: string; body?: string; query?: string } = {}): Promise<Response> {
    const res = await fetch(`${this.baseUrl}/fn/${name}${init.query ?? ''}`, { method: init.method ?? 'GET', ...(init.body === undefined ? {} : { body: init.body }) });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`invoke ${name}: HTTP ${res.status} ${res.headers.get('x-fn-error') ?? ''}`);
    return res;
  }

  async post(pathname: string, body: unknown): Promise<{ status: number; json: any }> {
    const res = await fetch(`${this.baseUrl}${pathname}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, json: await res.json().catch(() => undefined) };
  }
}
