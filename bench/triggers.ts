// Triggers' own cost, with the in-process fake engine (handlers run in this
// process, no sandbox) on a private Redis, so only the queue, the fan-out and
// the callback path are measured: publish latency by number of subscribers,
// and how long after the handler's answer a callback arrives.
// node --import tsx bench/triggers.ts (BENCH_N=40 per row)
import http from 'node:http';
import { test } from 'node:test';
import type { AddressInfo } from 'node:net';
import { GatewayFixture, HELLO } from '../test/helpers/gateway-fixture.ts';
import { percentile, startTestRedis, waitFor } from '../test/support/redis.ts';

const N = Number(process.env.BENCH_N ?? 40);

async function main(): Promise<void> {
  // The local Redis's start waits on unref'd handles: hold the process until the end.
  const alive = setInterval(() => {}, 1000);
  process.env.SNAPFN_CALLBACK_SECRET = 'bench-callback-secret-0123456';
  const redis = await startTestRedis('bench-triggers');
  const arrived = new Map<string, number>();
  const receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      arrived.set(JSON.parse(body).id, performance.now());
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const f = await GatewayFixture.create({ queue: { redisUrl: redis.redis.url } });
  try {
    await f.deployOk({ name: 'hello', files: { 'index.js': HELLO } });
    for (let i = 0; i < 10; i++) await f.deployOk({ name: `sub-${i}`, files: { 'index.js': HELLO }, config: { topics: i < 1 ? ['one', 'three', 'ten'] : i < 3 ? ['three', 'ten'] : ['ten'] } });
    const status = async (id: string) => (await f.api('GET', `/v1/invocations/${id}`)).json as { status: string; finishedAt?: string };

    const rows: string[] = [];
    // Async without and with a callback: 202 -> completed (polled), 202 -> callback received.
    for (const withCallback of [false, true]) {
      const total: number[] = [];
      for (let i = 0; i < N; i++) {
        const t0 = performance.now();
        const res = await f.request('/fn/hello', { headers: { 'x-fn-async': '1', ...(withCallback ? { 'x-callback-url': hook } : {}) } });
        const { id } = (await res.json()) as { id: string };
        if (withCallback) await waitFor('callback', () => arrived.has(id), 30_000, 1);
        else await waitFor('completion', async () => (await status(id)).status === 'completed', 30_000, 1);
        total.push((withCallback ? arrived.get(id)! : performance.now()) - t0);
      }
      rows.push(`| async, ${withCallback ? '202 -> callback received' : '202 -> status completed (polled every ms)'} | ${percentile(total, 50).toFixed(1)} | ${percentile(total, 95).toFixed(1)} |`);
    }
    for (const [topic, subscribers] of [['one', 1], ['three', 3], ['ten', 10]] as const) {
      const accept: number[] = [];
      const all: number[] = [];
      for (let i = 0; i < N; i++) {
        const t0 = performance.now();
        const res = await f.request(`/v1/topics/${topic}`, { method: 'POST', body: '{"x":1}' });
        const accepted = (await res.json()) as { invocations: Array<{ id: string }> };
        accept.push(performance.now() - t0);
        if (accepted.invocations.length !== subscribers) throw new Error(`${topic}: ${accepted.invocations.length} subscribers`);
        await waitFor('all subscribers', async () => (await Promise.all(accepted.invocations.map((x) => status(x.id)))).every((s) => s.status === 'completed'), 30_000, 1);
        all.push(performance.now() - t0);
      }
      rows.push(`| publish to ${subscribers} subscriber(s): 202 | ${percentile(accept, 50).toFixed(1)} | ${percentile(accept, 95).toFixed(1)} |`);
      rows.push(`| publish to ${subscribers} subscriber(s): every one completed | ${percentile(all, 50).toFixed(1)} | ${percentile(all, 95).toFixed(1)} |`);
    }
    process.stdout.write(`fake engine, ${N} each, load ${(await import('node:os')).loadavg()[0]!.toFixed(1)}\n\n| path | p50 ms | p95 ms |\n|---|---|---|\n${rows.join("\n")}\n`);
  } finally {
    await f.close();
    await new Promise((r) => receiver.close(r));
    await redis.close();
    clearInterval(alive);
  }
}

// Under node:test, which holds the process for it (run bare, something in the fake stack lets it end early). stdout.write: the fake engine takes console.log for the handlers' logs.
test('triggers bench', { timeout: 10 * 60_000 }, main);
