// Bytes through the gateway: a 30 MB streamed response next to a plain node
// server sending the same bytes in the same run (MB/s), and the time to the
// first byte of a streamed response whose handler is still producing it.
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { Scenario } from './report.ts';
import { summarize } from './stats.ts';
import type { GatewayClient } from './gateway-client.ts';

const MiB = 1024 * 1024;

/** The handler: /bytes?mib=N streams N MiB in 1 MiB chunks; /drip sends one event now and one 500 ms later. */
const HANDLER = `
const chunk = Buffer.alloc(1024 * 1024, 120);
export default async function (request) {
  const url = new URL(request.url);
  if (url.pathname.endsWith('/drip')) {
    let n = 0;
    return new Response(new ReadableStream({
      async pull(controller) {
        if (n > 0) await new Promise((r) => setTimeout(r, 500));
        controller.enqueue(new TextEncoder().encode('data: ' + n + '\\n\\n'));
        if (++n === 2) controller.close();
      },
    }), { headers: { 'content-type': 'text/event-stream' } });
  }
  const mib = Number(url.searchParams.get('mib') ?? 30);
  let i = 0;
  return new Response(new ReadableStream({ pull(c) { if (i++ === mib) return c.close(); c.enqueue(chunk); } }));
}
`;

async function download(url: string): Promise<{ ms: number; bytes: number; ttfbMs: number }> {
  const started = performance.now();
  const res = await fetch(url);
  let ttfbMs = NaN;
  let bytes = 0;
  for await (const chunk of res.body!) {
    if (Number.isNaN(ttfbMs)) ttfbMs = performance.now() - started;
    bytes += chunk.length;
  }
  return { ms: performance.now() - started, bytes, ttfbMs };
}

/** A plain node:http server writing the same bytes (the floor for MB/s). */
async function plainBytesServer(): Promise<{ url: string; close: () => Promise<void> }> {
  const chunk = Buffer.alloc(MiB, 120);
  const server = http.createServer((req, res) => {
    const mib = Number(new URL(req.url!, 'http://x').searchParams.get('mib') ?? 30);
    let i = 0;
    const more = () => {
      while (i < mib) {
        i++;
        if (!res.write(chunk)) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/bytes?mib=30`, close: () => new Promise((r) => server.close(() => r())) };
}

export async function benchStreaming(client: GatewayClient, gatewayUrl: string, n: number, progress: (m: string) => void): Promise<Record<string, Scenario>> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-bench-stream-'));
  try {
    await fs.writeFile(path.join(dir, 'index.mjs'), HANDLER);
    await client.deploy(dir, 'bench-stream', { keepWarm: true, poolSize: 0, memoryMb: 256, timeoutMs: 60_000 });
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
  const plain = await plainBytesServer();
  const mbps = (r: { ms: number; bytes: number }) => r.bytes / MiB / (r.ms / 1000);
  const snapfnRates: number[] = [];
  const plainRates: number[] = [];
  try {
    await download(`${gatewayUrl}/fn/bench-stream/bytes?mib=1`);
    for (let i = 0; i < n; i++) {
      snapfnRates.push(mbps(await download(`${gatewayUrl}/fn/bench-stream/bytes?mib=30`)));
      plainRates.push(mbps(await download(plain.url)));
    }
    progress(`streaming: 30 MiB x ${n}, gateway and plain node in turn`);
  } finally {
    await plain.close();
  }
  const ttfb: number[] = [];
  const total: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await download(`${gatewayUrl}/fn/bench-stream/drip`);
    ttfb.push(r.ttfbMs);
    total.push(r.ms);
  }
  await client.remove('bench-stream');
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return {
    stream_30mb: { n, snapfn_mb_per_s: Math.round(median(snapfnRates)), plain_node_mb_per_s: Math.round(median(plainRates)) },
    stream_ttfb: { ...summarize(ttfb), last_event_p50_ms: summarize(total).p50_ms },
  };
}
