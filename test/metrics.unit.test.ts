import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SnapfnMetrics } from '../src/telemetry/snapfn-metrics.ts';

test('metrics render invocations, phase histograms, pools and driver info in Prometheus text format', async () => {
  const metrics = new SnapfnMetrics({
    engineStats: () => ({ liveSandboxes: 3, maxSandboxes: 8, busySandboxes: 1, pooled: { hello: 2 }, poolTargets: { hello: 4 }, poolHits: 5, poolMisses: 1, restores: 1, keepWarmReuses: 0, handoffs: 0, templateBuilds: 4 }),
    driver: { name: 'gvisor', platform: 'ptrace' },
    queueDepth: async () => ({ hello: { queued: 7, active: 2 } }),
  });
  metrics.recordInvocation('hello', { ok: true, response: { status: 200, headers: [], bodyBase64: '' }, logs: [], logsTruncated: false }, { acquireMs: 0.5, restoreMs: 0, handlerMs: 3, source: 'pool' }, 4.2);
  metrics.recordInvocation('hello', { ok: false, error: { code: 'timeout', message: 'x' }, logs: [], logsTruncated: false }, { acquireMs: 1, restoreMs: 300, handlerMs: 1000, source: 'restore' }, 1301);
  metrics.recordRejected('hello', 'over_capacity', 2);
  const text = await metrics.render();
  assert.match(text, /^snapfn_invocations_total\{function="hello",outcome="ok"\} 1$/m);
  assert.match(text, /^snapfn_invocations_total\{function="hello",outcome="timeout"\} 1$/m);
  assert.match(text, /^snapfn_invocations_total\{function="hello",outcome="over_capacity"\} 1$/m);
  assert.match(text, /^snapfn_invocation_phase_seconds_bucket\{phase="handler",le="0.005"\} 1$/m);
  assert.match(text, /^snapfn_invocation_phase_seconds_count\{phase="restore"\} 1$/m);
  assert.match(text, /^snapfn_invocation_phase_seconds_count\{phase="total"\} 3$/m);
  assert.match(text, /^snapfn_pool_sandboxes\{function="hello"\} 2$/m);
  assert.match(text, /^snapfn_pool_target_sandboxes\{function="hello"\} 4$/m);
  assert.match(text, /^snapfn_live_sandboxes 3$/m);
  assert.match(text, /^snapfn_queue_depth\{function="hello"\} 7$/m);
  assert.match(text, /^snapfn_queue_active\{function="hello"\} 2$/m);
  assert.match(text, /^snapfn_restores_total 1$/m);
  assert.match(text, /^snapfn_driver_info\{driver="gvisor",platform="ptrace"\} 1$/m);
  assert.match(text, /^# TYPE snapfn_invocation_phase_seconds histogram$/m);
});

test('a queue source that fails or hangs leaves the queue gauges out; the scrape still answers', async () => {
  const stats = { liveSandboxes: 0, maxSandboxes: 1, busySandboxes: 0, pooled: {}, poolHits: 0, poolMisses: 0, restores: 0, keepWarmReuses: 0, handoffs: 0, templateBuilds: 0 };
  let read: () => Promise<Record<string, { queued: number; active: number }>> = async () => ({ a: { queued: 3, active: 0 } });
  const metrics = new SnapfnMetrics({ engineStats: () => stats, driver: { name: 'fake', platform: 'none' } });
  assert.doesNotMatch(await metrics.render(), /^snapfn_queue_depth\{/m, 'no queue attached');
  metrics.attachQueue(() => read());
  assert.match(await metrics.render(), /^snapfn_queue_depth\{function="a"\} 3$/m);
  read = async () => {
    throw new Error('Redis is down');
  };
  let text = await metrics.render();
  assert.doesNotMatch(text, /^snapfn_queue_depth\{/m, 'a stale depth is not shown');
  assert.match(text, /^snapfn_metrics_collect_errors_total\{source="queue"\} 1$/m);
  read = () => new Promise(() => {});
  const started = performance.now();
  text = await metrics.render();
  assert.ok(performance.now() - started < 3000);
  assert.match(text, /^snapfn_metrics_collect_errors_total\{source="queue"\} 2$/m);
  assert.match(text, /^snapfn_live_sandboxes 0$/m);
});
