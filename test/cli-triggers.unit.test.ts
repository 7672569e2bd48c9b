// The fn CLI's trigger commands against a gateway with a queue (real Redis,
// fake engine): deploy --topic, fn topics (list, set, --none), fn publish
// (ids per subscriber, --message-id), invoke --async --callback-url refused
// outside the allow-list, and their usage errors.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';
import { openQueueLayer, type QueueLayer } from '../src/queue-layer.ts';
import { FunctionStore } from '../src/registry/function-store.ts';
import { InvocationView } from '../src/schemas/api.ts';
import { PublishAccepted } from '../src/schemas/invocation.ts';
import { runCli } from './helpers/cli-harness.ts';
import { FakeEngine } from './helpers/fake-engine.ts';
import { startTestRedis, waitFor, type TestRedis } from './support/redis.ts';

describe('fn CLI: topics and callbacks', () => {
  let redis: TestRedis;
  let home: string;
  let work: string;
  let engine: FakeEngine;
  let store: FunctionStore;
  let layer: QueueLayer;
  let gateway: RunningGateway;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    redis = await startTestRedis('cli-triggers');
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-cli-triggers-home-'));
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-cli-triggers-work-'));
    engine = await FakeEngine.create();
    store = await FunctionStore.open(home);
    layer = openQueueLayer({ redisUrl: redis.redis.url, shared: false, engine, store, maxQueuedPerFunction: 100, log: () => {} });
    gateway = await startGateway({ engine, store, queue: layer.functions, config: { apiKey: undefined, maxBodyBytes: 4096, maxDeployBytes: 1 << 20 }, port: 0, hostname: '127.0.0.1' });
    env = { FN_URL: gateway.url };
    await fs.mkdir(path.join(work, 'sub'), { recursive: true });
    await fs.writeFile(path.join(work, 'sub/index.js'), "export default async (req) => ({ topic: req.headers.get('x-fn-topic'), body: await req.text() });\n");
  });

  after(async () => {
    await gateway?.close({ graceMs: 100 });
    await layer?.close();
    await store?.close();
    await engine?.close();
    await redis?.close();
    await fs.rm(home, { recursive: true, force: true });
    await fs.rm(work, { recursive: true, force: true });
  });

  it('deploy --topic subscribes; fn topics lists; fn publish prints one id per subscriber and the handler gets the message', async () => {
    assert.equal((await runCli(['deploy', 'sub', '--topic', 'orders', '--topic', 'refunds'], { env, cwd: work })).code, 0);
    assert.equal((await runCli(['deploy', 'sub', '--name', 'sub-two', '--topic', 'orders'], { env, cwd: work })).code, 0);
    const listed = await runCli(['topics'], { env });
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /orders\s+sub, sub-two/);
    assert.match(listed.stdout, /refunds\s+sub\n/);
    const published = await runCli(['publish', 'orders', '--data', '{"n":1}', '--message-id', 'm-1', '--json'], { env });
    assert.equal(published.code, 0, published.stderr);
    const accepted = PublishAccepted.parse(JSON.parse(published.stdout));
    assert.deepEqual(accepted.invocations.map((i) => i.function), ['sub', 'sub-two']);
    for (const { id } of accepted.invocations) {
      await waitFor(`${id} done`, async () => InvocationView.parse(JSON.parse((await runCli(['invocation', id, '--json'], { env })).stdout)).status === 'completed', 10_000, 100);
      const view = InvocationView.parse(JSON.parse((await runCli(['invocation', id, '--json'], { env })).stdout));
      assert.deepEqual(view.result?.body, { topic: 'orders', body: '{"n":1}' });
    }
    const plain = await runCli(['publish', 'orders', '--message-id', 'm-1'], { env });
    assert.deepEqual(plain.stdout.trim().split('\n'), accepted.invocations.map((i) => `${i.function}\t${i.id}`), 'the same message id: the same invocations');
  });

  it('fn topics <name> sets exactly these, --none removes them; bad names are usage errors', async () => {
    assert.equal((await runCli(['topics', 'sub', 'invoices'], { env })).code, 0);
    assert.deepEqual((await store.serving('sub'))?.version.config.topics, ['invoices']);
    assert.equal((await runCli(['topics', 'sub', '--none'], { env })).code, 0);
    assert.equal((await store.serving('sub'))?.version.config.topics, undefined);
    const bad = await runCli(['publish', 'Not A Topic'], { env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^fn: topic names are/);
    assert.equal((await runCli(['topics', 'sub'], { env })).code, 2);
  });

  it('invoke --async --callback-url: a host outside the allow-list is one error line; without --async a usage error', async () => {
    const refused = await runCli(['invoke', 'sub-two', '--async', '--callback-url', 'http://10.1.2.3/hook'], { env });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^fn: invalid_input: callbacks to 10\.1\.2\.3 are not allowed/);
    assert.equal((await runCli(['invoke', 'sub-two', '--callback-url', 'http://127.0.0.1/hook'], { env })).code, 2);
    const accepted = await runCli(['invoke', 'sub-two', '--async', '--callback-url', 'http://127.0.0.1:9/hook'], { env });
    assert.equal(accepted.code, 0, accepted.stderr);
    assert.match(accepted.stdout.trim(), /^[0-9a-f-]{36}$/);
  });
});
