// The driver conformance cases: what every sandbox driver must do the same,
// through the whole product (a real gateway, `fn deploy`, HTTP). Each case
// builds on the context of test/conformance/suite.ts; which cases run on
// which driver is decided there (docs/engine.md, "Driver conformance").
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIXTURES = path.join(ROOT, 'test/fixtures');
const OWN = path.join(ROOT, 'test/conformance/fixtures');

export interface ConformanceContext {
  driver: string;
  url: string;
  /** `fn deploy` of one module file (copied into a directory of its own) or of a function directory. */
  deploy(name: string, from: string, flags?: string[]): Promise<void>;
}

export interface ConformanceCase {
  name: CaseName;
  title: string;
  run(ctx: ConformanceContext): Promise<void>;
}

export type CaseName = 'fresh-state' | 'keep-warm' | 'timeout' | 'memory-and-exit' | 'no-host-access' | 'handler-shapes' | 'native-addon' | 'streaming' | 'eval';

async function call(ctx: ConformanceContext, pathAndQuery: string, init?: RequestInit): Promise<{ status: number; body: any; text: string }> {
  const res = await fetch(`${ctx.url}${pathAndQuery}`, init);
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, body, text };
}

/** A TCP server on every host address; what a sandbox must never reach. */
async function hostService(): Promise<{ port: number; close: () => void }> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.end('host');
  });
  await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

/** A global IPv4 address of the host (a service on 0.0.0.0 answers there). */
async function hostAddress(): Promise<string> {
  const { stdout } = await execa('ip', ['-4', '-o', 'route', 'get', '1.1.1.1']);
  const m = /\bsrc ([\d.]+)/.exec(stdout);
  assert.ok(m, `no host source address in: ${stdout}`);
  return m[1]!;
}

export const CASES: ConformanceCase[] = [
  {
    name: 'fresh-state',
    title: 'every invocation starts from the snapshot: no global or file survives; env and secrets arrive',
    async run(ctx) {
      await ctx.deploy('state', path.join(OWN, 'state.mjs'), ['--env', 'GREETING=hi there', '--secret', 'TOKEN=shh-conformance']);
      for (let i = 0; i < 2; i++) {
        const r = await call(ctx, '/fn/state');
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.body, { count: 1, previous: null, greeting: 'hi there', token: 'present' });
      }
    },
  },
  {
    name: 'keep-warm',
    title: 'keepWarm reuses one paused sandbox: its state accumulates',
    async run(ctx) {
      await ctx.deploy('state-warm', path.join(OWN, 'state.mjs'), ['--keep-warm']);
      const counts: number[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await call(ctx, '/fn/state-warm');
        assert.equal(r.status, 200, r.text);
        counts.push(r.body.count);
        // Long enough for the sandbox to be paused (SNAPFN_PAUSE_AFTER_MS) and thawed again.
        await new Promise((resolve) => setTimeout(resolve, 1200));
      }
      assert.deepEqual(counts, [1, 2, 3]);
    },
  },
  {
    name: 'timeout',
    title: 'a handler past its timeout (a busy loop, a hang) is killed with 504, and the next invocation works',
    async run(ctx) {
      await ctx.deploy('misbehave', path.join(FIXTURES, 'misbehave.mjs'));
      for (const what of ['spin', 'hang']) {
        const started = performance.now();
        const r = await call(ctx, `/fn/misbehave?do=${what}`);
        assert.equal(r.status, 504, `${what}: ${r.text}`);
        assert.equal(r.body?.error?.code, 'timeout');
        assert.ok(performance.now() - started < 15_000, `${what} took ${Math.round(performance.now() - started)} ms to be cut off (timeoutMs 1500)`);
        const next = await call(ctx, '/fn/misbehave');
        assert.deepEqual([next.status, next.body], [200, { ok: true }]);
      }
    },
  },
  {
    name: 'memory-and-exit',
    title: 'over its memory limit, or at process.exit, only that invocation fails (502), at once',
    async run(ctx) {
      await ctx.deploy('misbehave-limits', path.join(FIXTURES, 'misbehave.mjs'), ['--timeout', '20000']);
      for (const what of ['oom', 'exit']) {
        const started = performance.now();
        const r = await call(ctx, `/fn/misbehave-limits?do=${what}`);
        assert.equal(r.status, 502, `${what}: ${r.text}`);
        assert.ok(['out_of_memory', 'sandbox_crashed'].includes(r.body?.error?.code), `${what}: ${r.text}`);
        assert.ok(performance.now() - started < 15_000, `${what}: the host waited ${Math.round(performance.now() - started)} ms (timeout 20 s)`);
        const next = await call(ctx, '/fn/misbehave-limits');
        assert.deepEqual([next.status, next.body], [200, { ok: true }]);
      }
    },
  },
  {
    name: 'no-host-access',
    title: "a handler reads no host file and reaches no host service, with network 'none' or 'egress'",
    async run(ctx) {
      const service = await hostService();
      try {
        const host = await hostAddress();
        const readme = encodeURIComponent(path.join(ROOT, 'README.md'));
        await ctx.deploy('probe', path.join(FIXTURES, 'probe.mjs'));
        await ctx.deploy('probe-egress', path.join(FIXTURES, 'probe.mjs'), ['--network', 'egress', '--timeout', '20000']);
        const none = await call(ctx, `/fn/probe?file=${readme}&port=${service.port}&other=${host}`);
        assert.equal(none.status, 200, none.text);
        assert.equal(none.body.file, 'ENOENT', 'the project README is visible inside the sandbox');
        assert.equal(none.body.guestIp, null, "network 'none' has no interface but loopback");
        assert.notEqual(none.body.loopback, 'connected');
        assert.notEqual(none.body.other, 'connected', `host address ${host} reachable`);
        const egress = await call(ctx, `/fn/probe-egress?file=${readme}&port=${service.port}&other=${host}`);
        assert.equal(egress.status, 200, egress.text);
        assert.equal(egress.body.file, 'ENOENT');
        assert.ok(egress.body.guestIp, "network 'egress' has an interface");
        for (const key of ['hostSide', 'loopback', 'other']) assert.notEqual(egress.body[key], 'connected', `${key} reachable with egress: ${egress.text}`);
      } finally {
        service.close();
      }
    },
  },
  {
    name: 'handler-shapes',
    title: "the examples answer in each handler shape: snapfn's own, a Workers module, a Lambda handler reading its asset",
    async run(ctx) {
      const hello = await call(ctx, '/fn/hello?name=Ada');
      assert.equal(hello.status, 200, hello.text);
      assert.equal(hello.body.message, 'Hello, Ada!');
      const workers = await call(ctx, '/fn/workers-greeter?name=Ada');
      assert.equal(workers.status, 200, workers.text);
      assert.match(workers.text, /Ada/);
      const lambda = await call(ctx, '/fn/lambda-page?name=Ada');
      assert.equal(lambda.status, 200, lambda.text);
      // templates/page.html, read with fs at load and rendered with mustache from node_modules.
      assert.match(lambda.text, /<h1>Hello, Ada!<\/h1>/);
      assert.match(lambda.text, /served by <code>lambda-page<\/code>/);
    },
  },
  {
    name: 'native-addon',
    title: 'a native addon (better-sqlite3) loads and runs',
    async run(ctx) {
      await ctx.deploy('sqlite', path.join(FIXTURES, 'functions/sqlite-query'));
      const rows = [
        { item: 'book', quantity: 2, cents: 1250 },
        { item: 'pen', quantity: 3, cents: 150 },
      ];
      const r = await call(ctx, '/fn/sqlite', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rows) });
      assert.equal(r.status, 200, r.text);
      assert.match(r.body.sqlite, /^3\./);
      assert.deepEqual(r.body.totals, [
        { item: 'book', quantity: 2, cents: 2500 },
        { item: 'pen', quantity: 3, cents: 450 },
      ]);
    },
  },
  {
    name: 'streaming',
    title: 'a streamed response reaches the client chunk by chunk',
    async run(ctx) {
      await ctx.deploy('stream', path.join(OWN, 'stream.mjs'));
      const res = await fetch(`${ctx.url}/fn/stream`);
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let text = '';
      let firstAt: number | undefined;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        firstAt ??= performance.now();
        text += decoder.decode(value, { stream: true });
      }
      const endAt = performance.now();
      assert.equal(text, 'first\nsecond\n');
      // The handler waits 1.5 s between its chunks.
      assert.ok(endAt - firstAt! > 1000, `the first chunk came only ${Math.round(endAt - firstAt!)} ms before the end: buffered, not streamed`);
    },
  },
  {
    name: 'eval',
    title: 'POST /v1/eval runs javascript, typescript, python and bash',
    async run(ctx) {
      const runs: Array<[string, string, string]> = [
        ['javascript', 'console.log(6 * 7)', '42\n'],
        ['typescript', 'const n: number = 6 * 7; console.log(n)', '42\n'],
        ['python', 'print(6 * 7)', '42\n'],
        ['bash', 'echo $((6 * 7))', '42\n'],
      ];
      for (const [language, code, stdout] of runs) {
        const r = await call(ctx, '/v1/eval', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ language, code }) });
        assert.equal(r.status, 200, `${language}: ${r.text}`);
        assert.deepEqual([r.body.exitCode, r.body.stdout], [0, stdout], `${language}: ${r.text}`);
      }
    },
  },
];
