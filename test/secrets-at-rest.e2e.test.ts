// Secrets never at rest in clear outside secrets.json (issue 20, item 2).
// A real gateway (src/main.ts in a child process, real gVisor engine) on a
// shared Redis whose data directory (AOF) is inside SNAPFN_HOME, exporting
// its traces to a local OTLP sink. A handler echoes its secret into its
// logs, its response (body and a header), its error and its thrown stack;
// it is invoked directly, asynchronously (success, and failing until dead)
// and queued synchronously. Then every key of Redis, every file under
// SNAPFN_HOME but secrets.json, every exported trace and the gateway's own
// output are searched for the secret (plain, base64 at each alignment,
// hex): none may hold it. The callers still get it back where the handler
// returned it. Deployment records hold ciphertext; file modes are checked.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { deploymentKey } from '../src/queue/deployment-registry.ts';
import { connectRedis, startLocalRedis, type LocalRedis } from '../src/queue/redis-server.ts';
import type { InvocationView } from '../src/schemas/api.ts';
import { SECRETS_KEY_ID_KEY } from '../src/secrets/key-check.ts';
import { textFiles } from './helpers/gateway-fixture.ts';
import { tempHome } from './support/engine.ts';
import { freePort, spawnGateway, type GatewayProcess } from './support/gateway-process.ts';
import { leftovers } from './support/leaks.ts';
import { waitFor } from './support/redis.ts';

const HANDLER = `
export default async function (request) {
  const url = new URL(request.url);
  const token = process.env.TOKEN;
  console.log('stdout has ' + token);
  console.error('stderr has ' + token);
  if (url.searchParams.get('fail') === '1') throw new Error('failing with ' + token);
  return new Response(JSON.stringify({ token, plain: process.env.PLAIN }), { headers: { 'content-type': 'application/json', 'x-token': token } });
}
`;

/** Every form the secret could be stored in: plain, hex, and base64 at each of the three byte alignments (edge characters dropped). */
function needles(secret: string): string[] {
  const forms = [secret, Buffer.from(secret).toString('hex'), Buffer.from(secret).toString('hex').toUpperCase()];
  for (let pad = 0; pad < 3; pad++) {
    const b64 = Buffer.concat([Buffer.alloc(pad, 0x20), Buffer.from(secret)]).toString('base64');
    forms.push(b64.slice(pad === 0 ? 0 : 4, -4));
  }
  return forms;
}

function findIn(haystack: Buffer | string, forms: string[]): string | undefined {
  const buffer = typeof haystack === 'string' ? Buffer.from(haystack) : haystack;
  return forms.find((form) => buffer.includes(form));
}

/** Every value of every key, read as its type requires (DUMP as well: whatever the type, its serialized form). */
async function redisContents(redis: Redis): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 500);
    cursor = next;
    for (const key of keys) {
      const type = await redis.type(key);
      const parts: Array<string | Buffer> = [];
      const dumped = await redis.dumpBuffer(key);
      if (dumped) parts.push(dumped);
      if (type === 'string') parts.push((await redis.getBuffer(key)) ?? '');
      else if (type === 'hash') parts.push(...Object.entries(await redis.hgetall(key)).flat());
      else if (type === 'list') parts.push(...(await redis.lrangeBuffer(key, 0, -1)));
      else if (type === 'set') parts.push(...(await redis.smembersBuffer(key)));
      else if (type === 'zset') parts.push(...(await redis.zrangeBuffer(key, 0, -1)));
      else if (type === 'stream') parts.push(JSON.stringify(await redis.xrange(key, '-', '+')));
      out.set(`${type} ${key}`, Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p))));
    }
  } while (cursor !== '0');
  return out;
}

async function walk(dir: string, onFile: (file: string, mode: number) => Promise<void>, onDir: (dir: string, mode: number) => void): Promise<void> {
  for (const entry of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const full = path.join(dir, entry.name);
    const stat = await fs.lstat(full).catch(() => undefined);
    if (!stat) continue;
    if (stat.isDirectory()) {
      onDir(full, stat.mode & 0o777);
      await walk(full, onFile, onDir);
    } else if (stat.isFile()) await onFile(full, stat.mode & 0o777);
  }
}

describe('secrets at rest (real gateway, real engine, real Redis)', { timeout: 8 * 60_000 }, () => {
  const secret = `tok-${crypto.randomBytes(18).toString('base64url')}`;
  const forms = needles(secret);
  let home: string;
  let redis: LocalRedis;
  let probe: Redis;
  let gateway: GatewayProcess;
  let sink: http.Server;
  const traces: Buffer[] = [];
  let gatewayPid = 0;

  const url = (route: string) => `${gateway.url}${route}`;
  const json = async (method: string, route: string, init: { body?: unknown; headers?: Record<string, string> } = {}) => {
    const res = await fetch(url(route), {
      method,
      signal: AbortSignal.timeout(120_000),
      headers: { ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, text };
  };

  before(async () => {
    home = await tempHome('secrets-at-rest');
    // The shared Redis keeps its AOF inside the home: the file scan covers it.
    redis = await startLocalRedis({ dir: path.join(home, 'shared-redis') });
    probe = connectRedis(redis.url);
    probe.on('error', () => {});
    sink = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        traces.push(Buffer.concat(chunks));
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
    const sinkPort = (sink.address() as { port: number }).port;
    gateway = await spawnGateway(
      {
        SNAPFN_HOME: home,
        REDIS_URL: redis.url,
        SNAPFN_SECRETS_KEY: '',
        SNAPFN_MAX_SANDBOXES: '2',
        SNAPFN_POOL_SIZE: '0',
        SNAPFN_EXAMPLES: '0',
        SNAPFN_EVAL: '0',
        SNAPFN_API_KEY: '',
        SNAPFN_MAX_QUEUE_WAIT_MS: '90000',
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sinkPort}`,
      },
      await freePort(),
      120_000,
    );
    gatewayPid = gateway.pid;
  });

  after(async () => {
    await gateway?.stop();
    probe?.disconnect();
    await redis?.close();
    await new Promise((resolve) => sink?.close(resolve));
    const left = await leftovers(home, gatewayPid);
    await fs.rm(home, { recursive: true, force: true });
    assert.deepEqual(left, [], 'sandboxes, namespaces, veths or mounts left behind');
  });

  test('the secret is in no Redis key, no file but secrets.json, no trace; callers still get what the handler returned', async (t) => {
    const deployed = await json('POST', '/v1/functions', { body: { name: 'sec', files: textFiles({ 'index.mjs': HANDLER }), env: { PLAIN: 'plain-env-value' }, secrets: { TOKEN: secret } } });
    assert.equal(deployed.status, 200, deployed.text);
    assert.equal(JSON.parse(deployed.text.trim().split('\n').at(-1)!).type, 'result', deployed.text);

    // Direct: the response is the handler's, whole; the failure's message is redacted.
    const direct = await json('GET', '/fn/sec');
    assert.equal(direct.status, 200, direct.text);
    assert.equal(JSON.parse(direct.text).token, secret);
    assert.equal(direct.headers.get('x-token'), secret);
    const directFail = await json('GET', '/fn/sec?fail=1');
    assert.equal(directFail.status, 502, directFail.text);
    assert.ok(!directFail.text.includes(secret), directFail.text);

    // Queued sync (an Idempotency-Key always goes through the queue): the caller gets the body the handler returned.
    const queued = await json('POST', '/fn/sec', { headers: { 'idempotency-key': 'sync-1' } });
    assert.equal(queued.status, 200, queued.text);
    assert.ok(queued.headers.has('x-fn-queue-wait-ms'), 'went through the queue');
    assert.equal(JSON.parse(queued.text).token, secret);
    assert.equal(queued.headers.get('x-token'), secret);
    const queuedFail = await json('POST', '/fn/sec?fail=1', { headers: { 'idempotency-key': 'sync-2' } });
    assert.equal(queuedFail.status, 502, queuedFail.text);

    // Async: a success (its result carries the body) and a failure retried until dead.
    const ok = JSON.parse((await json('POST', '/fn/sec', { headers: { 'x-fn-async': '1' } })).text) as { id: string };
    const dead = JSON.parse((await json('POST', '/fn/sec?fail=1', { headers: { 'x-fn-async': '1' } })).text) as { id: string };
    const view = async (id: string) => JSON.parse((await json('GET', `/v1/invocations/${id}`)).text) as InvocationView;
    await waitFor('the async ones to finish', async () => (await view(ok.id)).status === 'completed' && (await view(dead.id)).status === 'dead', 120_000, 500);
    const okView = await view(ok.id);
    assert.equal((okView.result!.body as { token: string }).token, secret, 'the async result is the handler\'s');
    const deadView = await view(dead.id);
    assert.match(deadView.error!.message, /failing with \[redacted\]/);
    // Each invocation's log entry exists (the log is written, redacted) before we read the files.
    await waitFor('every attempt in the log', async () => JSON.parse((await json('GET', '/v1/functions/sec/logs?limit=100')).text).entries.length >= 8, 30_000, 300);
    // Spans are exported every 500 ms; Redis writes the AOF every second.
    await new Promise((r) => setTimeout(r, 2500));

    // Redis: every key, every value.
    const contents = await redisContents(probe);
    const leaks: string[] = [];
    for (const [key, value] of contents) {
      const form = findIn(value, forms);
      if (form) leaks.push(`redis ${key} holds ${form === secret ? 'the secret' : `an encoding of it (${form})`}`);
    }
    assert.ok(contents.size > 10, `Redis has the queue's keys (${[...contents.keys()].join(', ')})`);
    assert.ok([...contents.keys()].some((k) => k.includes(':events')) && [...contents.keys()].some((k) => /^hash snapfn:fn-sec:/.test(k)), 'job hashes and event streams were searched');

    // Deployment record: env in clear, the secret sealed.
    const record = JSON.parse((await probe.get(deploymentKey('sec', 1)))!) as { env: Record<string, string>; secretNames: string[]; sealedSecrets: string };
    assert.deepEqual(record.env, { PLAIN: 'plain-env-value' });
    assert.deepEqual(record.secretNames, ['TOKEN']);
    assert.match(record.sealedSecrets, /^snapfn-sealed\.v1\.[0-9a-f]{16}\./);
    assert.match((await probe.get(SECRETS_KEY_ID_KEY)) ?? '', /^[0-9a-f]{16}$/);

    // Files: all of the home but secrets.json; modes of what holds invocation data.
    const modes: string[] = [];
    let files = 0;
    let aof = 0;
    await walk(
      home,
      async (file, mode) => {
        const rel = path.relative(home, file);
        const privateFile = /^functions\//.test(rel) || /(^|\/)(shared-redis|redis)\//.test(rel) || rel === 'secrets.key';
        if (privateFile && (mode & 0o077) !== 0) modes.push(`${rel} is ${mode.toString(8)}`);
        if (path.basename(file) === 'secrets.json') return;
        if (/appendonly/.test(rel)) aof++;
        files++;
        const form = findIn(await fs.readFile(file), forms);
        if (form) leaks.push(`file ${rel} holds ${form === secret ? 'the secret' : `an encoding of it (${form})`}`);
      },
      (dir, mode) => {
        const rel = path.relative(home, dir);
        if ((/^functions(\/|$)/.test(rel) || /^(shared-redis|redis)(\/|$)/.test(rel)) && (mode & 0o077) !== 0) modes.push(`${rel}/ is ${mode.toString(8)}`);
      },
    );
    assert.ok(aof > 0, 'the AOF was searched');
    const logFile = path.join(home, 'functions/sec/logs/invocations.jsonl');
    assert.equal((await fs.stat(logFile)).mode & 0o777, 0o600);
    assert.match(await fs.readFile(logFile, 'utf8'), /stdout has \[redacted\]/);
    assert.equal((await fs.stat(path.join(home, 'secrets.key'))).mode & 0o777, 0o600);

    // Traces and the gateway's own output.
    assert.ok(traces.length > 0, 'spans were exported');
    for (const [i, body] of traces.entries()) if (findIn(body, forms)) leaks.push(`exported trace batch ${i}`);
    if (findIn(gateway.output(), forms)) leaks.push('the gateway\'s output');

    t.diagnostic(`searched ${contents.size} Redis keys, ${files} files (${aof} AOF), ${traces.length} trace batches; secret forms: ${forms.length}`);
    assert.deepEqual(leaks, [], 'the secret at rest in clear');
    assert.deepEqual(modes, [], 'invocation data readable by others');
  });
});
