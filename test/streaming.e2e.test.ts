// Streaming both ways through the real gateway and real gVisor sandboxes:
// server-sent events arrive as the handler produces them, large bodies go
// both ways with their bytes intact, a client that leaves frees the
// sandbox, and the limits answer with their documented codes.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { loadConfig } from '../src/config.ts';
import type { InvocationLogEntry } from '../src/schemas/api.ts';
import type { RunningSnapfn } from '../src/snapfn.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FN_BIN = path.join(ROOT, 'wrangler-free-deploy/bin/fn.js');
const MiB = 1024 * 1024;

const HANDLER = `
import crypto from 'node:crypto';

/** Deterministic bytes (the test recomputes them): chunk i of 1 MiB filled from a sha256 chain. */
function chunkOf(i) {
  const seed = crypto.createHash('sha256').update('chunk-' + i).digest();
  const out = Buffer.alloc(1024 * 1024);
  for (let o = 0; o < out.length; o += seed.length) seed.copy(out, o);
  return out;
}

export default async function (request) {
  const url = new URL(request.url);
  const route = url.pathname.replace(/^\\/fn\\/[^/]+/, '');
  if (route === '/sse') {
    let n = 0;
    return new Response(new ReadableStream({
      async pull(controller) {
        await new Promise((r) => setTimeout(r, 300));
        controller.enqueue(new TextEncoder().encode('data: event ' + n + ' at ' + Date.now() + '\\n\\n'));
        if (++n === 5) controller.close();
      },
    }), { headers: { 'content-type': 'text/event-stream' } });
  }
  if (route === '/forever') {
    return new Response(new ReadableStream({
      async pull(controller) {
        await new Promise((r) => setTimeout(r, 100));
        controller.enqueue(new TextEncoder().encode('tick\\n'));
      },
    }));
  }
  if (route === '/echo-hash') {
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    for await (const chunk of request.body) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    return { bytes, sha256: hash.digest('hex') };
  }
  if (route === '/big') {
    const mib = Number(url.searchParams.get('mib'));
    let i = 0;
    return new Response(new ReadableStream({
      pull(controller) {
        if (i === mib) return controller.close();
        controller.enqueue(chunkOf(i++));
      },
    }), { headers: { 'content-type': 'application/octet-stream' } });
  }
  if (route === '/big-json') return { filler: 'x'.repeat(Number(url.searchParams.get('mib')) * 1024 * 1024) };
  return { route };
}
`;

function expectedBigSha(mib: number): string {
  const hash = crypto.createHash('sha256');
  for (let i = 0; i < mib; i++) {
    const seed = crypto.createHash('sha256').update('chunk-' + i).digest();
    const out = Buffer.alloc(MiB);
    for (let o = 0; o < out.length; o += seed.length) seed.copy(out, o);
    hash.update(out);
  }
  return hash.digest('hex');
}

describe('e2e: streaming responses and large bodies', { timeout: 10 * 60_000 }, () => {
  let home: string;
  let work: string;
  let snapfn: RunningSnapfn;
  let url: string;

  const logs = async (): Promise<InvocationLogEntry[]> => ((await (await fetch(`${url}/v1/functions/stream/logs?limit=100`)).json()) as { entries: InvocationLogEntry[] }).entries;
  const until = async (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-stream-home-'));
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-stream-work-'));
    const { startSnapfn } = await import('../src/snapfn.ts');
    const config = loadConfig({
      ...process.env,
      SNAPFN_HOME: home,
      PORT: '0',
      SNAPFN_API_KEY: '',
      SNAPFN_POOL_SIZE: '0',
      SNAPFN_MAX_SANDBOXES: '3',
      SNAPFN_EXAMPLES: '0',
      SNAPFN_EVAL: '0',
      SNAPFN_MAX_BODY_BYTES: String(24 * MiB),
      SNAPFN_MAX_RESPONSE_BYTES: String(40 * MiB),
    });
    snapfn = await startSnapfn({ config, hostname: '127.0.0.1', log: () => {} });
    url = snapfn.url;
    const dir = path.join(work, 'stream');
    await fs.mkdir(dir);
    await fs.writeFile(path.join(dir, 'index.mjs'), HANDLER);
    const run = await execa('node', [FN_BIN, 'deploy', dir, '--name', 'stream', '--memory', '512', '--timeout', '30000'], { env: { ...process.env, FN_URL: url, FN_API_KEY: '' }, reject: false });
    assert.equal(run.exitCode, 0, run.stderr);
  });

  after(async () => {
    await snapfn?.close();
    await fs.rm(work, { recursive: true, force: true });
    await fs.rm(home, { recursive: true, force: true });
  });

  it('server-sent events reach the client as the handler sends them', async () => {
    const started = Date.now();
    const res = await fetch(`${url}/fn/stream/sse`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const arrivals: number[] = [];
    let text = '';
    for await (const chunk of res.body!) {
      text += Buffer.from(chunk).toString();
      const events = text.split('\n\n').filter(Boolean).length;
      while (arrivals.length < events) arrivals.push(Date.now() - started);
    }
    assert.equal(arrivals.length, 5, text);
    assert.ok(arrivals[4]! - arrivals[0]! > 1000, `all five events arrived within ${arrivals[4]! - arrivals[0]!} ms of each other: buffered (${arrivals.join(', ')})`);
    await until('the log entry of the stream', async () => (await logs()).some((e) => e.path.endsWith('/sse') && e.responseBytes !== undefined));
    const entry = (await logs()).find((e) => e.path.endsWith('/sse'))!;
    assert.equal(entry.ok, true);
    assert.ok(entry.ttfbMs! < entry.durationMs, `time to first byte ${entry.ttfbMs} ms, duration ${entry.durationMs} ms`);
  });

  it('a 20 MB request body streams into the handler and a 30 MB response back, bytes intact both ways', async () => {
    const body = crypto.randomBytes(20 * MiB);
    const up = await fetch(`${url}/fn/stream/echo-hash`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(up.status, 200);
    assert.deepEqual(await up.json(), { bytes: body.length, sha256: crypto.createHash('sha256').update(body).digest('hex') });

    const down = await fetch(`${url}/fn/stream/big?mib=30`);
    assert.equal(down.status, 200);
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    for await (const chunk of down.body!) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    assert.equal(bytes, 30 * MiB);
    assert.equal(hash.digest('hex'), expectedBigSha(30));
  });

  it('a client that disconnects mid-stream cancels the stream and frees the sandbox', async () => {
    const before = snapfn.engine.stats().restores;
    await new Promise<void>((resolve, reject) => {
      const req = http.get(`${url}/fn/stream/forever`, (res) => {
        let ticks = 0;
        res.on('data', (chunk: Buffer) => {
          ticks += chunk.toString().split('tick').length - 1;
          if (ticks >= 3) {
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', () => {});
      setTimeout(() => reject(new Error('no ticks')), 20_000);
    });
    assert.equal(snapfn.engine.stats().restores, before + 1);
    await until('no sandbox busy or alive after the client left', () => {
      const stats = snapfn.engine.stats();
      return stats.busySandboxes === 0 && stats.liveSandboxes === 0;
    });
    await until('the cancelled stream in the log', async () => (await logs()).some((e) => e.path.endsWith('/forever')));
    const entry = (await logs()).find((e) => e.path.endsWith('/forever'))!;
    assert.equal(entry.error?.code, 'cancelled');
  });

  it('over the limits: 413 for a request body, 502 response_too_large before anything is sent, a cut stream and a logged response_too_large after', async () => {
    const tooBig = await fetch(`${url}/fn/stream/echo-hash`, { method: 'POST', body: Buffer.alloc(25 * MiB) });
    assert.equal(tooBig.status, 413);
    assert.equal(((await tooBig.json()) as { error: { code: string } }).error.code, 'payload_too_large');

    const json = await fetch(`${url}/fn/stream/big-json?mib=41`);
    assert.equal(json.status, 502);
    assert.equal(((await json.json()) as { error: { code: string } }).error.code, 'response_too_large');

    const cut = await fetch(`${url}/fn/stream/big?mib=45`);
    assert.equal(cut.status, 200);
    let bytes = 0;
    await assert.rejects(async () => {
      for await (const chunk of cut.body!) bytes += chunk.length;
    });
    assert.ok(bytes <= 41 * MiB, `${bytes} bytes went out past the 40 MiB limit`);
    await until('the cut stream in the log', async () => (await logs()).some((e) => e.path.endsWith('/big') && e.error?.code === 'response_too_large'));
  });
});
