// The secrets envelope (AES-256-GCM under SNAPFN_SECRETS_KEY or the home's
// key file), the key's sources, and what a queued result looks like in Redis.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';
import type { InvocationJobResult } from '../src/queue/job-data.ts';
import { openResult, redactOutcome, sealResult } from '../src/secrets/at-rest.ts';
import { isSealed, parseSecretsKey, SealedDataError, SecretsKey } from '../src/secrets/envelope.ts';
import { checkSecretsKey } from '../src/secrets/key-check.ts';
import { KEY_FILE, resolveSecretsKey } from '../src/secrets/key-source.ts';
import { connectRedis } from '../src/queue/redis-connection.ts';
import { startTestRedis } from './support/redis.ts';

const SECRET = 'hunter2-but-longer';

describe('secrets envelope', () => {
  const key = SecretsKey.generate();

  it('round-trips, and holds neither the plaintext nor its base64 or hex', () => {
    const sealed = key.seal(SECRET, 'ctx');
    assert.ok(isSealed(sealed));
    for (const form of [SECRET, Buffer.from(SECRET).toString('base64'), Buffer.from(SECRET).toString('hex')]) assert.ok(!sealed.includes(form));
    assert.equal(key.open(sealed, 'ctx').toString(), SECRET);
    assert.notEqual(key.seal(SECRET, 'ctx'), sealed, 'a fresh iv every time');
  });

  it('refuses a tampered ciphertext, tag or iv', () => {
    const sealed = key.seal(SECRET, 'ctx');
    const parts = sealed.split('.');
    for (const i of [3, 4, 5]) {
      const bytes = Buffer.from(parts[i]!, 'base64url');
      bytes[0] = bytes[0]! ^ 1;
      const tampered = [...parts.slice(0, i), bytes.toString('base64url'), ...parts.slice(i + 1)].join('.');
      assert.throws(() => key.open(tampered, 'ctx'), SealedDataError);
    }
    assert.throws(() => key.open('not sealed at all', 'ctx'), /not a sealed value/);
  });

  it('refuses another record (context) and says which key when it is the wrong one', () => {
    const sealed = key.seal(SECRET, 'snapfn deployment a v1');
    assert.throws(() => key.open(sealed, 'snapfn deployment b v1'), /does not authenticate/);
    const other = SecretsKey.generate();
    assert.throws(() => other.open(sealed, 'snapfn deployment a v1'), (err: Error) => err instanceof SealedDataError && err.message.includes(key.id) && err.message.includes(other.id));
    // A forged key id does not help: the tag still fails.
    const forged = sealed.replace(key.id, other.id);
    assert.throws(() => other.open(forged, 'snapfn deployment a v1'), /does not authenticate/);
  });

  it('SNAPFN_SECRETS_KEY: 32 bytes as base64 or hex; anything else is a ConfigError that does not echo it', () => {
    const raw = crypto.randomBytes(32);
    assert.equal(parseSecretsKey(raw.toString('base64'))!.id, new SecretsKey(raw).id);
    assert.equal(parseSecretsKey(raw.toString('hex'))!.id, new SecretsKey(raw).id);
    assert.equal(loadConfig({ SNAPFN_SECRETS_KEY: raw.toString('base64') }).secretsKey!.id, new SecretsKey(raw).id);
    for (const bad of ['short', crypto.randomBytes(16).toString('base64'), crypto.randomBytes(33).toString('hex')]) {
      assert.throws(() => loadConfig({ SNAPFN_SECRETS_KEY: bad }), (err: Error) => err instanceof ConfigError && /SNAPFN_SECRETS_KEY must be 32 bytes/.test(err.message) && !err.message.includes(bad));
    }
  });
});

describe('secrets key sources', () => {
  const homes: string[] = [];
  const home = async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-secrets-'));
    homes.push(dir);
    return dir;
  };
  after(async () => {
    for (const dir of homes) await fs.rm(dir, { recursive: true, force: true });
  });

  it('a single node generates its key once, 0600, and reads the same one on the next start', async () => {
    const dir = await home();
    const first = await resolveSecretsKey(dir, undefined);
    assert.equal(first.source, 'generated');
    assert.equal((await fs.stat(path.join(dir, KEY_FILE))).mode & 0o777, 0o600);
    const again = await resolveSecretsKey(dir, undefined);
    assert.equal(again.source, 'key file');
    assert.equal(again.key.id, first.key.id);
    const fromEnv = SecretsKey.generate();
    assert.equal((await resolveSecretsKey(dir, fromEnv)).key.id, fromEnv.id, 'SNAPFN_SECRETS_KEY wins');
  });

  it('a malformed or world-readable key file stops the start with a clear error', async () => {
    const dir = await home();
    await fs.writeFile(path.join(dir, KEY_FILE), 'garbage\n', { mode: 0o600 });
    await assert.rejects(resolveSecretsKey(dir, undefined), (err: Error) => err instanceof ConfigError && /is not 32 bytes/.test(err.message));
    await fs.writeFile(path.join(dir, KEY_FILE), `${SecretsKey.generate().toBase64()}\n`);
    await fs.chmod(path.join(dir, KEY_FILE), 0o644);
    await assert.rejects(resolveSecretsKey(dir, undefined), /readable by others \(mode 644\)/);
  });
});

describe('a queued result at rest', () => {
  const key = SecretsKey.generate();
  const deployment = { env: { TOKEN: SECRET, PLAIN: 'visible-value' }, secretNames: ['TOKEN'] };
  const body = Buffer.from(`{"echo":"${SECRET}"}`).toString('base64');
  const result = (outcome: InvocationJobResult['outcome']): InvocationJobResult => ({ outcome, timings: { acquireMs: 0, restoreMs: 0, handlerMs: 1, source: 'pool', queueWaitMs: 0 }, attempt: 1, worker: 'w' });

  it('logs and error text are redacted; the plain env var is not a secret', () => {
    const failed = redactOutcome(deployment, { ok: false, error: { code: 'handler_error', message: `bad ${SECRET}`, stack: `Error: bad ${SECRET}\n at x` }, logs: [{ stream: 'stdout', text: `${SECRET} visible-value`, t: 1 }], logsTruncated: false });
    assert.ok(!JSON.stringify(failed).includes(SECRET));
    assert.equal(failed.logs[0]!.text, '[redacted] visible-value');
  });

  it('the response is sealed for its invocation only, and opens back whole', () => {
    const stored = sealResult(key, 'inv-1', result({ ok: true, response: { status: 201, headers: [['x-token', SECRET]], bodyBase64: body }, logs: [], logsTruncated: false }));
    const text = JSON.stringify(stored);
    for (const form of [SECRET, body, Buffer.from(SECRET).toString('base64'), Buffer.from(SECRET).toString('hex')]) assert.ok(!text.includes(form));
    assert.ok(stored.outcome.ok && stored.outcome.response.status === 201, 'the status stays readable');
    const opened = openResult(key, 'inv-1', stored);
    assert.deepEqual(opened.outcome.ok && opened.outcome.response, { status: 201, headers: [['x-token', SECRET]], bodyBase64: body });
    assert.throws(() => openResult(key, 'inv-2', stored), SealedDataError);
    assert.throws(() => openResult(SecretsKey.generate(), 'inv-1', stored), /every node needs the same SNAPFN_SECRETS_KEY/);
    assert.throws(() => openResult(undefined, 'inv-1', stored), /no secrets key/);
  });
});

describe('the key against Redis (a real one)', () => {
  it('the first node records its key id; the same key passes, another is a ConfigError naming both', async () => {
    const redis = await startTestRedis('key-check');
    const client = connectRedis(redis.redis.url);
    try {
      const key = SecretsKey.generate();
      await checkSecretsKey(client, key);
      await checkSecretsKey(client, key);
      const other = SecretsKey.generate();
      await assert.rejects(checkSecretsKey(client, other), (err: Error) => err instanceof ConfigError && err.message.includes(key.id) && err.message.includes(other.id));
    } finally {
      client.disconnect();
      await redis.close();
    }
  });
});
