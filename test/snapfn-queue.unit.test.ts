// startSnapfn() wires the queue layer: its own Redis under SNAPFN_HOME or
// REDIS_URL, re-activation serving queues and schedules again after a
// restart, deployments published (shared Redis only) and worker-node results
// read back into the log. The engine is the in-process fake.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { DeploymentRegistry, deploymentKey } from '../src/queue/deployment-registry.ts';
import { resolveSecretsKey } from '../src/secrets/key-source.ts';
import { connectRedis, startLocalRedis } from '../src/queue/redis-server.ts';
import { ResultStream } from '../src/queue/result-stream.ts';
import type { InvocationLogEntry } from '../src/schemas/api.ts';
import { startSnapfn, type RunningSnapfn } from '../src/snapfn.ts';
import { HELLO, textFiles } from './helpers/gateway-fixture.ts';
import { FakeEngine } from './helpers/fake-engine.ts';
import { startTestRedis, waitFor, type TestRedis } from './support/redis.ts';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function redisPid(home: string): Promise<number> {
  return Number((await fs.readFile(path.join(home, 'redis', 'redis.pid'), 'utf8')).trim());
}

describe('startSnapfn with the queue', () => {
  let home: string;
  let snapfn: RunningSnapfn | undefined;
  let shared: TestRedis | undefined;
  let firstId = '';

  const start = async (env: Record<string, string> = {}) => {
    const config = loadConfig({ SNAPFN_HOME: home, PORT: '0', SNAPFN_EXAMPLES: '0', ...env });
    snapfn = await startSnapfn({ config, engine: await FakeEngine.create(), hostname: '127.0.0.1', log: () => {} });
    return snapfn;
  };
  const api = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(`${snapfn!.url}${route}`, { method, ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }) });
    const text = await res.text();
    return { status: res.status, headers: res.headers, json: text ? JSON.parse(text.trim().split('\n').at(-1)!) : undefined };
  };
  const logs = async (name: string): Promise<InvocationLogEntry[]> => (await api('GET', `/v1/functions/${name}/logs?limit=1000`)).json.entries;

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-queue-home-'));
  });

  after(async () => {
    await snapfn?.close();
    await shared?.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  it('without REDIS_URL it runs its own Redis under SNAPFN_HOME, and stops it last on close', async () => {
    await start();
    assert.match(snapfn!.redisUrl ?? '', /^redis:\/\/127\.0\.0\.1:\d+$/);
    const pid = await redisPid(home);
    assert.ok(isAlive(pid));
    const deployed = await api('POST', '/v1/functions', { name: 'ticker', files: textFiles({ 'index.js': HELLO }), config: { schedule: '0 0 1 1 *' } });
    assert.equal(deployed.json.type, 'result', JSON.stringify(deployed.json));
    assert.equal(deployed.json.function.schedule.cron, '0 0 1 1 *');
    const accepted = await fetch(`${snapfn!.url}/fn/ticker?name=async`, { headers: { 'x-fn-async': '1' } });
    assert.equal(accepted.status, 202);
    const { id } = (await accepted.json()) as { id: string };
    firstId = id;
    await waitFor('the async invocation', async () => (await api('GET', `/v1/invocations/${id}`)).json?.status === 'completed', 10_000, 50);
    // Only a shared Redis gets deployments (they carry secrets): nobody else can reach this one.
    const probe = connectRedis(snapfn!.redisUrl!);
    try {
      assert.deepEqual(await new DeploymentRegistry(probe).active(), new Map());
    } finally {
      probe.disconnect();
    }
    await snapfn!.close();
    snapfn = undefined;
    assert.ok(!isAlive(pid), 'its Redis stopped with it');
  });

  it('after a restart on the same home, queued work, schedules and statuses are still there', async () => {
    await start();
    assert.equal((await snapfn!.queue!.schedules.get('ticker'))?.cron, '0 0 1 1 *', 'the schedule survived in the AOF');
    assert.ok(snapfn!.queue!.workers.functions().includes('ticker'), 're-activation serves the queue again');
    assert.equal((await api('GET', `/v1/invocations/${firstId}`)).json.status, 'completed');
    const res = await fetch(`${snapfn!.url}/fn/ticker?name=again`, { headers: { 'x-fn-async': '1' } });
    const { id } = (await res.json()) as { id: string };
    await waitFor('an async invocation after the restart', async () => (await api('GET', `/v1/invocations/${id}`)).json?.status === 'completed', 10_000, 50);
    assert.ok((await logs('ticker')).some((e) => e.id === id && e.queue?.state === 'completed'));
  });

  it('a Redis left running by a killed node is stopped before a new one starts on its directory', async () => {
    const dir = path.join(home, 'orphan-redis');
    const orphan = await startLocalRedis({ dir });
    // The "killed parent" never closes it; the next start on the same dir must not run beside it.
    const next = await startLocalRedis({ dir });
    try {
      assert.notEqual(next.pid, orphan.pid);
      await orphan.exited;
      assert.ok(!isAlive(orphan.pid));
    } finally {
      await next.close();
    }
  });

  it('with REDIS_URL it publishes deployments for worker nodes, reads their results into the log, unpublishes on delete', async () => {
    await snapfn?.close();
    shared = await startTestRedis('snapfn-shared');
    await start({ REDIS_URL: shared.redis.url });
    assert.equal(snapfn!.redisUrl, shared.redis.url);
    const deployed = await api('POST', '/v1/functions', { name: 'published', files: textFiles({ 'index.js': HELLO }), secrets: { TOKEN: 'sekrit-token-77' } });
    assert.equal(deployed.json.type, 'result');
    const redis = connectRedis(shared.redis.url);
    try {
      // The record holds the secret sealed; a node with the gateway's key opens it in memory.
      const raw = (await redis.get(deploymentKey('published', 1)))!;
      assert.ok(!raw.includes('sekrit-token-77') && JSON.parse(raw).sealedSecrets.startsWith('snapfn-sealed.v1.'), raw);
      const registry = new DeploymentRegistry(redis, (await resolveSecretsKey(home, undefined)).key);
      const record = await registry.get('published', 'active');
      assert.equal(record.version, 1);
      assert.equal(record.env.TOKEN, 'sekrit-token-77');
      await assert.rejects(new DeploymentRegistry(redis).get('published', 'active'), /no secrets key/);
      // Re-activation (the earlier functions of this home) published those too.
      assert.equal((await registry.active()).get('ticker'), 1);

      // What a worker-only node sends home for a run: it lands in the log, redacted.
      await new ResultStream(redis).publish({
        invocationId: 'from-a-worker-node',
        functionName: 'published',
        version: 1,
        mode: 'async',
        willRetry: false,
        maxAttempts: 3,
        request: { method: 'POST', path: '/fn/published' },
        result: {
          outcome: { ok: true, response: { status: 201, headers: [], bodyBase64: '' }, logs: [{ stream: 'stdout', text: 'sekrit-token-77\n', t: 1 }], logsTruncated: false },
          timings: { acquireMs: 1, restoreMs: 2, handlerMs: 3, source: 'restore', queueWaitMs: 4 },
          attempt: 1,
          worker: 'node-b:1',
        },
      });
      let entry: InvocationLogEntry | undefined;
      await waitFor('the worker node result in the log', async () => (entry = (await logs('published')).find((e) => e.id === 'from-a-worker-node')) !== undefined, 10_000, 100);
      assert.equal(entry!.status, 201);
      assert.deepEqual(entry!.queue, { mode: 'async', attempt: 1, maxAttempts: 3, waitMs: 4, state: 'completed' });
      assert.deepEqual(entry!.logs.map((l) => l.text), ['[redacted]\n']);

      assert.equal((await api('DELETE', '/v1/functions/published')).status, 200);
      assert.equal((await registry.active()).has('published'), false);
    } finally {
      redis.disconnect();
    }
  });
});
