// Traces through the real engine, exported over OTLP/HTTP to a collector the test runs.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import { test } from 'node:test';
import { trace } from '@opentelemetry/api';
import { createEngine } from '../src/orchestrator/index.ts';
import { startTracing } from '../src/telemetry/tracing.ts';
import { bodyJson, deployFixture, get, tempHome } from './support/engine.ts';
import { leftovers } from './support/leaks.ts';

interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
}

test('every invocation is one trace with a span per phase, exported over OTLP', async () => {
  const spans: ExportedSpan[] = [];
  const collector = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const doc = JSON.parse(body) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: ExportedSpan[] }> }> };
      for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
  const port = (collector.address() as { port: number }).port;
  const tracing = await startTracing({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` });
  const home = await tempHome('tracing');
  const engine = await createEngine({ home, maxSandboxes: 2, poolSize: 0 });
  try {
    const fn = await deployFixture(engine, 'traced', 'hello.mjs');
    const result = await trace.getTracer('snapfn').startActiveSpan('gateway', async (span) => {
      try {
        return await engine.invoke(fn, get('http://localhost/fn/traced'), { invocationId: 'traced-1' });
      } finally {
        span.end();
      }
    });
    assert.equal(bodyJson(result.outcome).hello, 'world');
    await engine.close();
    await tracing.close();
    const root = spans.find((s) => s.name === 'gateway');
    assert.ok(root, `no gateway span among ${spans.map((s) => s.name).join(', ')}`);
    const inTrace = spans.filter((s) => s.traceId === root.traceId).map((s) => s.name);
    for (const phase of ['invoke', 'queue wait', 'restore', 'envd connect', 'handler', 'teardown']) {
      assert.ok(inTrace.includes(phase), `phase "${phase}" missing from the trace: ${inTrace.join(', ')}`);
    }
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const handler = spans.find((s) => s.name === 'handler' && s.traceId === root.traceId)!;
    assert.equal(byId.get(handler.parentSpanId!)?.name, 'invoke');
  } finally {
    await engine.close();
    await tracing.close();
    collector.close();
    const left = await leftovers(home);
    await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, []);
  }
});
