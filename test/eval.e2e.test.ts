// Per-request code evaluation end to end: EvalService on the real engine,
// real runsc sandboxes restored from the eval templates.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EvalService, evalRoutes } from '../src/eval/index.ts';
import { createEngine } from '../src/orchestrator/index.ts';
import type { EvalInput, EvalResult } from '../src/schemas/eval.ts';
import { tempHome, type TestEngine } from './support/engine.ts';
import { leftovers } from './support/leaks.ts';

const README = fileURLToPath(new URL('../README.md', import.meta.url));

describe('eval service (gVisor)', () => {
  let home: string;
  let engine: TestEngine;
  let service: EvalService;
  const durations: Record<string, number[]> = {};

  const run = async (input: EvalInput): Promise<EvalResult> => {
    const result = await service.evaluate(input);
    (durations[input.language] ??= []).push(result.durationMs);
    return result;
  };
  /** The sandbox that ran a failure is gone; the next evaluation must simply work. */
  const assertNextWorks = async (language: EvalInput['language'] = 'javascript') => {
    const next = await run({ language, code: language === 'bash' ? 'echo ok' : '"ok"' });
    assert.equal(next.error, undefined, JSON.stringify(next.error));
    if (language !== 'bash') assert.equal(next.result, 'ok');
  };

  before(async () => {
    home = await tempHome('eval');
    // Two cores: four sandboxes at a time, and a long queue is fine.
    engine = await createEngine({ home, maxSandboxes: 4, poolSize: 0, maxWaitMs: 300_000 });
    service = await EvalService.create({ engine, workDir: path.join(home, 'eval'), poolSize: 1 });
  });

  after(async () => {
    for (const [language, list] of Object.entries(durations)) {
      const sorted = [...list].sort((a, b) => a - b);
      console.log(`# eval ${language}: ${list.length} evaluations, p50 ${sorted[Math.floor(sorted.length / 2)]} ms (all of them: failures and queueing included)`);
    }
    await service?.close();
    await engine?.close();
    const left = await leftovers(home);
    await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, [], 'sandboxes, namespaces, veths or mounts left behind');
  });

  test('the last expression is the result, in every language', async () => {
    assert.equal((await run({ language: 'javascript', code: '1+1' })).result, 2);
    assert.equal((await run({ language: 'typescript', code: 'const n: number = 40;\nn + 2' })).result, 42);
    assert.deepEqual((await run({ language: 'python', code: 'x = {"a": [1, 2]}\nx' })).result, { a: [1, 2] });
    const bash = await run({ language: 'bash', code: 'echo "$((6 * 7))"; echo oops >&2' });
    assert.deepEqual([bash.stdout, bash.stderr, bash.exitCode, bash.error], ['42\n', 'oops\n', 0, undefined]);
    const tla = await run({ language: 'javascript', code: 'const os = require("node:os");\nconst { join } = await import("node:path");\n[typeof os.cpus, join("a", "b")]' });
    assert.deepEqual(tla.result, ['function', 'a/b']);
    const py = await run({ language: 'python', code: 'import asyncio\nawait asyncio.sleep(0.01)\nprint("hi")\n"done"' });
    assert.deepEqual([py.result, py.stdout], ['done', 'hi\n']);
  });

  test('files and stdin reach the code; errors are runtime_error with the traceback', async () => {
    const js = await run({ language: 'javascript', code: 'const fs = require("fs");\n[fs.readFileSync("data/in.txt", "utf8"), require("./lib.js").v, fs.readFileSync(0, "utf8")]', files: { 'data/in.txt': 'file!', 'lib.js': 'exports.v = 7' }, stdin: 'stdin!' });
    assert.deepEqual(js.result, ['file!', 7, 'stdin!']);
    const py = await run({ language: 'python', code: 'import sys, helper\nhelper.shout(sys.stdin.read())', files: { 'helper.py': 'def shout(s):\n    return s.upper()\n' }, stdin: 'hey' });
    assert.equal(py.result, 'HEY');
    const thrown = await run({ language: 'python', code: 'def f():\n    return 1 / 0\nf()' });
    assert.equal(thrown.error?.code, 'runtime_error');
    assert.equal(thrown.error?.message, 'ZeroDivisionError: division by zero');
    assert.match(thrown.stderr, /File "<eval>", line 2, in f/);
    const ts = await run({ language: 'typescript', code: 'const x: number = ' });
    assert.equal(ts.error?.code, 'runtime_error');
    assert.match(ts.error?.message ?? '', /^SyntaxError/);
    const exit = await run({ language: 'javascript', code: 'process.exit(3)' });
    assert.deepEqual([exit.exitCode, exit.error?.code], [3, 'runtime_error']);
  });

  test('nothing survives between requests: globals, files, random state', async () => {
    for (const language of ['javascript', 'python'] as const) {
      const write =
        language === 'javascript'
          ? 'globalThis.marker = 1; require("fs").writeFileSync("/tmp/marker", "x"); require("fs").writeFileSync("marker.txt", "x"); Math.random()'
          : 'import builtins, random\nbuiltins.marker = 1\nopen("/tmp/marker", "w").write("x")\nopen("marker.txt", "w").write("x")\nrandom.random()';
      const check =
        language === 'javascript'
          ? '[typeof globalThis.marker, require("fs").existsSync("/tmp/marker"), require("fs").existsSync("marker.txt"), Math.random()]'
          : 'import builtins, os, random\n[hasattr(builtins, "marker"), os.path.exists("/tmp/marker"), os.path.exists("marker.txt"), random.random()]';
      const first = await run({ language, code: write });
      const second = await run({ language, code: check });
      assert.equal(first.error, undefined, JSON.stringify(first.error));
      const [marker, tmpFile, cwdFile, random] = second.result as [unknown, boolean, boolean, number];
      assert.deepEqual([marker, tmpFile, cwdFile], [language === 'javascript' ? 'undefined' : false, false, false], language);
      // Both sandboxes come from one snapshot: their random state must still differ.
      assert.notEqual(random, first.result, `${language}: the same random number in two sandboxes`);
    }
  });

  test('an infinite loop is stopped at its timeout, and the next request works', async () => {
    for (const language of ['javascript', 'python'] as const) {
      const looped = await run({ language, code: language === 'javascript' ? 'for (;;) {}' : 'while True:\n    pass', timeoutMs: 1000 });
      assert.equal(looped.error?.code, 'timeout', JSON.stringify(looped));
      const { runMs, queueMs, restoreMs } = looped.timings!;
      assert.ok(runMs >= 1000 && runMs < 2500, `${language}: the code ran ${runMs} ms`);
      // Queueing and a restore (slow when other test runs share the two cores) are not the timeout's doing.
      const rest = looped.durationMs - queueMs - restoreMs;
      assert.ok(rest < 6000, `${language}: ${rest} ms besides queueing and restore`);
      await assertNextWorks(language);
    }
  });

  test('memory bombs end in memory_limit, and the next request works', async () => {
    const bombs: EvalInput[] = [
      { language: 'javascript', code: 'const a = []; for (;;) a.push(new Array(1e6).fill(1))', memoryMb: 128 },
      { language: 'javascript', code: 'const a = []; for (;;) a.push(Buffer.alloc(64 * 1024 * 1024, 1))', timeoutMs: 20_000 },
      { language: 'python', code: 'a = []\nwhile True:\n    a.append(" " * 10**7)' },
    ];
    for (const bomb of bombs) {
      const result = await run(bomb);
      assert.equal(result.error?.code, 'memory_limit', `${bomb.code}: ${JSON.stringify(result.error)}`);
      await assertNextWorks(bomb.language);
    }
  });

  test('fork bombs and spawn loops are contained, and the next request works', async () => {
    const bombs: EvalInput[] = [
      { language: 'bash', code: ':(){ :|:& };:', timeoutMs: 15_000 },
      { language: 'python', code: 'import os\nwhile True:\n    os.fork()', timeoutMs: 15_000 },
      { language: 'javascript', code: 'const cp = require("child_process");\nsetInterval(() => cp.spawn("sleep", ["60"]), 5)', timeoutMs: 15_000 },
    ];
    for (const bomb of bombs) {
      const result = await run(bomb);
      assert.ok(['process_limit', 'timeout'].includes(result.error?.code ?? ''), `${bomb.code}: ${JSON.stringify(result.error)}`);
      await assertNextWorks(bomb.language);
    }
  });

  test('floods of output are truncated with a flag and stopped at 1 MiB; files are capped', async () => {
    const big = await run({ language: 'python', code: 'print("x" * 100_000)\n"done"' });
    assert.deepEqual([big.result, big.stdout.length, big.stdoutTruncated, big.stderrTruncated, big.error], ['done', 64 * 1024, true, false, undefined]);
    const flood = await run({ language: 'javascript', code: 'const chunk = "y".repeat(65536); for (;;) process.stdout.write(chunk)', timeoutMs: 20_000 });
    assert.deepEqual([flood.error?.code, flood.stdoutTruncated, flood.stdout.length], ['output_limit', true, 64 * 1024]);
    const lines = await run({ language: 'python', code: 'while True:\n    print("x" * 100)', timeoutMs: 20_000 });
    assert.deepEqual([lines.error?.code, lines.stdoutTruncated], ['output_limit', true]);
    const yes = await run({ language: 'bash', code: 'yes flood' });
    assert.deepEqual([yes.error?.code, yes.stdoutTruncated, yes.stdout.slice(0, 12)], ['output_limit', true, 'flood\nflood\n']);
    await assertNextWorks('bash');
    // Generous timeouts: writing 32 MiB into the in-memory overlay takes seconds on a busy two-core machine.
    const pyFile = await run({ language: 'python', code: 'open("big.bin", "wb").write(b"0" * 40_000_000)', timeoutMs: 30_000 });
    assert.equal(pyFile.error?.code, 'file_size_limit', JSON.stringify(pyFile.error));
    const shFile = await run({ language: 'bash', code: 'dd if=/dev/zero of=big.bin bs=1M count=40 2>/dev/null', timeoutMs: 30_000 });
    assert.equal(shFile.error?.code, 'file_size_limit', JSON.stringify(shFile));
  });

  test('code cannot read host files or reach services on the host', async () => {
    const server = net.createServer((s) => s.end('hi'));
    await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const code = `
        const fs = require('fs'), net = require('net'), os = require('os');
        const tryConnect = (host) => new Promise((resolve) => {
          const s = net.connect({ host, port: ${port} });
          const done = (r) => { s.destroy(); clearTimeout(t); resolve(r); };
          const t = setTimeout(() => done('timeout'), 1500);
          s.once('connect', () => done('connected'));
          s.once('error', (e) => done(e.code));
        });
        let file; try { file = fs.readFileSync(${JSON.stringify(README)}, 'utf8').slice(0, 20); } catch (e) { file = e.code; }
        const eth0 = (os.networkInterfaces().eth0 ?? []).find((a) => a.family === 'IPv4');
        const hostSide = eth0 ? eth0.address.replace(/\\d+$/, (n) => String(Number(n) - 1)) : null;
        ({ file, hostSide: hostSide ? await tryConnect(hostSide) : 'no-eth0', loopback: await tryConnect('127.0.0.1') })`;
      const probe = await run({ language: 'javascript', code });
      const { file, hostSide, loopback } = probe.result as Record<string, string>;
      assert.equal(file, 'ENOENT', 'the project README is visible inside the sandbox');
      assert.notEqual(hostSide, 'connected', 'a host service is reachable');
      assert.notEqual(loopback, 'connected', 'host loopback is reachable');
      const py = await run({ language: 'python', code: `import os, signal\nos.kill(1, signal.SIGTERM)\nos.path.exists(${JSON.stringify(README)})` });
      assert.equal(py.result, false, 'README visible, or a SIGTERM to PID 1 (envd) ended the sandbox');
      const network = await run({ language: 'javascript', code: '1', network: true });
      assert.equal(network.error?.code, 'network_not_allowed');
    } finally {
      server.close();
    }
  });

  test('50 concurrent evaluations all complete', async () => {
    const languages = ['javascript', 'python', 'bash'] as const;
    const inputs = Array.from({ length: 50 }, (_, i): EvalInput => {
      const language = languages[i % 3]!;
      return { language, code: language === 'bash' ? `echo ${i}` : `${i} * 2`, timeoutMs: 10_000 };
    });
    const results = await Promise.all(inputs.map((input) => run(input)));
    results.forEach((r, i) => {
      assert.equal(r.error, undefined, `#${i}: ${JSON.stringify(r.error)}`);
      if (inputs[i]!.language === 'bash') assert.equal(r.stdout, `${i}\n`);
      else assert.equal(r.result, i * 2);
    });
  });

  test('javascript: output after the result is kept, a child holding the output is waited for, and the phases are reported', async () => {
    // The runner reports its own exit once its output is closed: what timers and exit listeners print still counts.
    const late = await run({ language: 'javascript', code: 'setTimeout(() => console.log("late"), 50);\nprocess.on("exit", (c) => console.log("bye", c));\n1 + 1' });
    assert.deepEqual([late.result, late.stdout, late.exitCode, late.error], [2, 'late\nbye 0\n', 0, undefined]);
    const exited = await run({ language: 'javascript', code: 'process.exitCode = 4;\n"x"' });
    assert.deepEqual([exited.exitCode, exited.error?.code], [4, 'runtime_error']);
    // A child that inherited stdout keeps the run going until it closes it.
    const child = await run({ language: 'javascript', code: 'require("node:child_process").spawn("sh", ["-c", "sleep 0.3; echo child"], { stdio: "inherit" });\n1' });
    assert.deepEqual([child.result, child.stdout, child.error], [1, 'child\n', undefined]);
    assert.ok((child.timings?.runMs ?? 0) >= 250, `runMs ${child.timings?.runMs}`);
    for (const r of [late, exited, child]) {
      const t = r.timings!;
      for (const k of ['handlerMs', 'startMs', 'exitMs'] as const) assert.equal(typeof t[k], 'number', `${k}: ${JSON.stringify(t)}`);
      assert.ok(t.startMs! + t.runMs <= t.handlerMs! + 1, JSON.stringify(t));
    }
  });

  test('warm-pool latency (sequential requests; reported, loosely bounded)', async (t) => {
    for (const language of ['javascript', 'python', 'bash'] as const) {
      const samples: number[] = [];
      for (let i = 0; i < 7; i++) {
        // Measure a pool hit, as on a server that is not saturated: wait for the refill first.
        for (let w = 0; w < 200 && (engine.stats().pooled[`__eval-${language}`] ?? 0) < 1; w++) await new Promise((r) => setTimeout(r, 100));
        await new Promise((r) => setTimeout(r, 300));
        const r = await run({ language, code: language === 'bash' ? 'echo 1' : '1 + 1' });
        assert.equal(r.error, undefined);
        assert.equal(r.timings?.sandbox, 'pool');
        samples.push(r.durationMs);
      }
      samples.sort((a, b) => a - b);
      const p50 = samples[Math.floor(samples.length / 2)]!;
      t.diagnostic(`${language}: pool hit p50 ${p50} ms, min ${samples[0]} ms, max ${samples.at(-1)} ms (end to end through EvalService)`);
      assert.ok(p50 < 3000, `${language} p50 ${p50} ms`);
    }
  });

  test('the HTTP route validates input and maps results to statuses', async () => {
    const app = evalRoutes(service);
    const post = (body: unknown) => app.request('/', { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    const ok = await post({ language: 'python', code: '2 ** 10' });
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as EvalResult).result, 1024);
    for (const bad of [{ language: 'cobol', code: '1' }, { language: 'python' }, { language: 'python', code: '1', timeoutMs: 600_000 }, { language: 'python', code: '1', files: { '../x': '' } }, 'not json']) {
      const res = await post(bad);
      assert.equal(res.status, 400, JSON.stringify(bad));
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'invalid_input');
      assert.ok(body.error.message.length > 0);
    }
    const forbidden = await post({ language: 'javascript', code: '1', network: true });
    assert.equal(forbidden.status, 403);
    assert.equal(((await forbidden.json()) as EvalResult).error?.code, 'network_not_allowed');
  });
});
