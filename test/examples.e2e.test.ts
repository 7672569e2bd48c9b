import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { execa } from 'execa';
import { loadConfig } from '../src/config.ts';
import type { InvocationLogEntry } from '../src/schemas/api.ts';
import type { RunningSnapfn } from '../src/snapfn.ts';

/*
 * The Workers and Lambda examples of functions/, deployed with `fn deploy`
 * to a real gateway (gVisor sandboxes, its own Redis for schedules) and
 * invoked over HTTP. test/e2e-gateway.test.ts checks that `npm start`
 * deploys them too.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EXAMPLES = path.join(ROOT, 'functions');
const FN_BIN = path.join(ROOT, 'wrangler-free-deploy/bin/fn.js');

describe('e2e: the Workers and Lambda examples', { timeout: 15 * 60_000 }, () => {
  let home: string;
  let snapfn: RunningSnapfn;

  const fn = (argv: string[]) => execa('node', [FN_BIN, ...argv], { env: { ...process.env, FN_URL: snapfn.url, FN_API_KEY: '' }, reject: false, timeout: 5 * 60_000 });
  const ok = async (argv: string[]) => {
    const r = await fn(argv);
    assert.equal(r.exitCode, 0, `fn ${argv.join(' ')}: ${r.stderr}\n${r.stdout}`);
    return r;
  };
  const logs = async (name: string): Promise<InvocationLogEntry[]> => ((await (await fetch(`${snapfn.url}/v1/functions/${name}/logs?limit=200`)).json()) as { entries: InvocationLogEntry[] }).entries;
  const until = async <T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await check();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  };

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-examples-home-'));
    const { startSnapfn } = await import('../src/snapfn.ts');
    const config = loadConfig({ ...process.env, SNAPFN_HOME: home, PORT: '0', SNAPFN_API_KEY: '', SNAPFN_POOL_SIZE: '0', SNAPFN_MAX_SANDBOXES: '4', SNAPFN_EVAL: '0' });
    snapfn = await startSnapfn({ config, examplesDir: false, hostname: '127.0.0.1', log: () => {} });
  });

  after(async () => {
    await snapfn?.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  it('workers-greeter: fetch with an env binding; the visit recorded by ctx.waitUntil shows in the kept-warm sandbox', async () => {
    await ok(['deploy', path.join(EXAMPLES, 'workers-greeter'), '--env', 'GREETING=Howdy', '--keep-warm']);
    const res = await fetch(`${snapfn.url}/fn/workers-greeter?name=Ada`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { message: 'Howdy, Ada!', runtime: 'workers' });
    assert.equal((await fetch(`${snapfn.url}/fn/workers-greeter/nowhere`)).status, 404);
    // The visit is written after the response: once it settled, the paused sandbox serves the next request.
    const visits = await until('the visit in the warm sandbox', async () => {
      const { visits } = (await (await fetch(`${snapfn.url}/fn/workers-greeter/visits`)).json()) as { visits: Array<{ name: string }> };
      return visits.some((v) => v.name === 'Ada') ? visits : undefined;
    }, 20_000);
    assert.deepEqual(visits.map((v) => v.name), ['Ada']);
  });

  it('workers-greeter: a cron schedule calls scheduled()', async () => {
    const since = Date.now();
    await ok(['schedule', 'workers-greeter', '*/2 * * * * *']);
    try {
      const line = await until('a scheduled() run in the log', async () =>
        (await logs('workers-greeter'))
          .filter((e) => e.queue?.mode === 'schedule' && Date.parse(e.time) >= since - 1000)
          .flatMap((e) => e.logs.map((l) => l.text))
          .find((t) => t.startsWith('scheduled ')),
      );
      assert.match(line, /^scheduled \*\/2 \* \* \* \* \*: \d+ visits so far, greeting Howdy\n?$/);
    } finally {
      await ok(['schedule', 'workers-greeter', '--off']);
    }
  });

  it('lambda-page: a CommonJS handler renders templates/page.html (read through __dirname) with mustache', async () => {
    await ok(['deploy', path.join(EXAMPLES, 'lambda-page')]);
    const res = await fetch(`${snapfn.url}/fn/lambda-page/about?name=${encodeURIComponent('<Ada>')}`, { headers: { 'x-example': 'yes' } });
    const html = await res.text();
    assert.equal(res.status, 200, html);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.match(html, /<title>Hello, &lt;Ada&gt;<\/title>/);
    assert.match(html, /<h1>Hello, &lt;Ada&gt;!<\/h1>/);
    assert.match(html, /GET &#x2F;about, served by <code>lambda-page<\/code> \(\d+ MB\)/);
    assert.match(html, /<tr><td>x-example<\/td><td>yes<\/td><\/tr>/);
    assert.equal(/<code id="request-id">([^<]+)<\/code>/.exec(html)?.[1], res.headers.get('x-fn-invocation-id'));
    const plain = await (await fetch(`${snapfn.url}/fn/lambda-page`)).text();
    assert.match(plain, /<h1>Hello, visitor!<\/h1>/);
  });
});
