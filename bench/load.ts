// Closed-loop load the way a user's load generator applies it (autocannon),
// against the same hello handler everywhere, in one run: a plain Node
// server (the floor), workerd (Cloudflare's runtime, the isolate peer) and
// snapfn's paths. Standalone: `npx tsx bench/load.ts [--quick]`.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { build } from 'esbuild';
import { freePort } from '../src/queue/free-port.ts';
import { withCpuSplit } from './cpu-split.ts';
import { progress } from './stats.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const HELLO = path.join(ROOT, 'functions/hello/index.ts');

export interface LoadRow {
  rps: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  non2xx: number;
  requests: number;
  /** CPU per request in this process (the gateway where it is in-process, and autocannon) and in all sandboxes. */
  cpu_ms_per_request: { process: number; sandboxes: number | null };
}

export type LoadTable = Record<string, Record<string, LoadRow>>;

/** One autocannon run; latencies are autocannon's own (ms, integer resolution below 1 ms shows as 0 or 1). */
export async function cannon(url: string, connections: number, seconds: number): Promise<LoadRow> {
  const { value: result, cpu } = await withCpuSplit(() => autocannon({ url, connections, duration: seconds, pipelining: 1 }));
  const requests = Math.max(1, result.requests.total);
  const perRequest = (ms: number) => Math.round((ms / requests) * 1000) / 1000;
  return {
    rps: Math.round(result.requests.average * 10) / 10,
    p50_ms: result.latency.p50,
    p99_ms: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    requests: result.requests.total,
    cpu_ms_per_request: { process: perRequest(cpu.process_ms), sandboxes: cpu.sandboxes_ms === null ? null : perRequest(cpu.sandboxes_ms) },
  };
}

/** The hello handler as an ES module with a `handle(request)` export (no TypeScript, no bundling of anything else). */
async function helloModule(dir: string): Promise<string> {
  const out = await build({ entryPoints: [HELLO], bundle: true, format: 'esm', platform: 'neutral', write: false, logLevel: 'silent' });
  const file = path.join(dir, 'hello.mjs');
  await fs.writeFile(file, out.outputFiles[0]!.text);
  return file;
}

/** The floor: a plain node:http server calling the handler in-process. */
export async function plainNodeServer(dir: string): Promise<{ url: string; close: () => Promise<void> }> {
  const mod = (await import(pathToFileURL(await helloModule(dir)).href)) as { default: (r: Request) => Promise<unknown> };
  const server = http.createServer(async (req, res) => {
    const value = await mod.default(new Request(`http://localhost${req.url}`, { method: req.method }));
    const body = JSON.stringify(value);
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}/fn/hello?name=bench`, close: () => new Promise((r) => server.close(() => r())) };
}

/** workerd from npm serving the same handler as a Workers module. */
export async function workerdServer(dir: string): Promise<{ url: string; close: () => Promise<void> }> {
  const hello = await helloModule(dir);
  await fs.writeFile(
    path.join(dir, 'worker.mjs'),
    `import handler from './hello.mjs';\nexport default { async fetch(request) { return Response.json(await handler(request)); } };\n`,
  );
  await fs.copyFile(hello, path.join(dir, 'hello.mjs')).catch(() => {});
  const port = await freePort();
  await fs.writeFile(
    path.join(dir, 'config.capnp'),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .hello) ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],
);
const hello :Workerd.Worker = (
  modules = [ (name = "worker.mjs", esModule = embed "worker.mjs"), (name = "hello.mjs", esModule = embed "hello.mjs") ],
  compatibilityDate = "2024-09-23",
);
`,
  );
  const bin = path.join(ROOT, 'node_modules/.bin/workerd');
  const child: ChildProcess = spawn(bin, ['serve', path.join(dir, 'config.capnp')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const url = `http://127.0.0.1:${port}/fn/hello?name=bench`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`workerd exited: ${stderr}`);
    const ok = await fetch(url).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`workerd did not answer: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    close: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** The peers' rows (floor and workerd), at each concurrency, `seconds` per row. */
export async function benchPeers(seconds: number, concurrencies: number[]): Promise<LoadTable> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-bench-load-'));
  const table: LoadTable = {};
  try {
    for (const [label, start] of [
      ['plain node http, no sandbox', plainNodeServer],
      ['workerd (same handler as a Workers module)', workerdServer],
    ] as const) {
      const server = await start(dir);
      try {
        table[label] = {};
        for (const c of concurrencies) {
          progress(`load: ${label}, c=${c}, ${seconds} s`);
          table[label]![`c${c}`] = await cannon(server.url, c, seconds);
        }
      } finally {
        await server.close();
      }
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
  return table;
}

export function loadTableLines(table: LoadTable): string[] {
  const concurrencies = [...new Set(Object.values(table).flatMap((rows) => Object.keys(rows)))];
  const lines = [`| target | ${concurrencies.map((c) => `${c.replace('c', 'c=')} rps | p50 / p99 ms`).join(' | ')} |`, `|---|${concurrencies.map(() => '---|---').join('|')}|`];
  for (const [label, rows] of Object.entries(table)) {
    lines.push(`| ${label} | ${concurrencies.map((c) => (rows[c] ? `${rows[c]!.rps} | ${rows[c]!.p50_ms} / ${rows[c]!.p99_ms}${rows[c]!.errors + rows[c]!.non2xx > 0 ? ` (${rows[c]!.errors} errors, ${rows[c]!.non2xx} non-2xx)` : ''}` : '- | -')).join(' | ')} |`);
  }
  return lines;
}

/**
 * CPU per request at each concurrency: where a request's cost is spent,
 * independent of how busy the machine was. The peers' rows are the floor of
 * this process's share (autocannon and an HTTP server, or autocannon alone
 * for workerd, a separate process).
 */
export function cpuTableLines(table: LoadTable): string[] {
  const concurrencies = [...new Set(Object.values(table).flatMap((rows) => Object.keys(rows)))];
  const lines = [`| target | ${concurrencies.map((c) => `${c.replace('c', 'c=')} this process / sandboxes`).join(' | ')} |`, `|---|${concurrencies.map(() => '---').join('|')}|`];
  for (const [label, rows] of Object.entries(table)) {
    lines.push(`| ${label} | ${concurrencies.map((c) => {
      const cpu = rows[c]?.cpu_ms_per_request;
      return cpu ? `${cpu.process} / ${cpu.sandboxes ?? '-'}` : '-';
    }).join(' | ')} |`);
  }
  return lines;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, url: { type: 'string' } } });
  const seconds = values.quick ? 3 : 8;
  const table = await benchPeers(seconds, [1, 8]);
  if (values.url) {
    table['given url'] = { c1: await cannon(values.url, 1, seconds), c8: await cannon(values.url, 8, seconds) };
  }
  process.stderr.write(loadTableLines(table).join('\n') + '\n');
}
