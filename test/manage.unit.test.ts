import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GatewayFixture, HELLO } from './helpers/gateway-fixture.ts';

const SECRET = 'sk_live_7f3a9c2e51d04b8aa6';

const versionSource = (label: string) => `export default () => ${JSON.stringify(label)};\n`;

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(full)));
    else out.push(full);
  }
  return out;
}

describe('rollback', () => {
  let f: GatewayFixture;
  before(async () => {
    f = await GatewayFixture.create();
    for (const label of ['one', 'two', 'three']) await f.deployOk({ name: 'app', files: { 'index.js': versionSource(label) } });
  });
  after(() => f.close());

  it('goes back to the previous version by default, and serves it', async () => {
    const res = await f.api('POST', '/v1/functions/app/rollback');
    assert.equal(res.status, 200);
    assert.equal(res.json.activeVersion, 2);
    const served = await f.request('/fn/app');
    assert.equal(await served.json(), 'two');
    assert.equal(served.headers.get('x-fn-version'), '2');
  });

  it('steps back again from there', async () => {
    const res = await f.api('POST', '/v1/functions/app/rollback', {});
    assert.equal(res.json.activeVersion, 1);
    assert.equal(await (await f.request('/fn/app')).json(), 'one');
  });

  it('409s when there is nothing older', async () => {
    const res = await f.api('POST', '/v1/functions/app/rollback', {});
    assert.equal(res.status, 409);
    assert.equal(res.json.error.code, 'conflict');
  });

  it('switches to an explicit version, forward too', async () => {
    const res = await f.api('POST', '/v1/functions/app/rollback', { version: 3 });
    assert.equal(res.json.activeVersion, 3);
    assert.equal(await (await f.request('/fn/app')).json(), 'three');
    assert.equal(f.engine.active.get('app')?.version, 3);
  });

  it('404s a version that does not exist and 400s one that cannot', async () => {
    assert.equal((await f.api('POST', '/v1/functions/app/rollback', { version: 9 })).status, 404);
    assert.equal((await f.api('POST', '/v1/functions/app/rollback', { version: 'two' })).status, 400);
    assert.equal((await f.api('POST', '/v1/functions/nope/rollback', {})).status, 404);
  });

  it('records the switch atomically in function.json', async () => {
    const record = JSON.parse(await fs.readFile(path.join(f.home, 'functions', 'app', 'function.json'), 'utf8'));
    assert.equal(record.active, 3);
    const leftovers = (await fs.readdir(path.join(f.home, 'functions', 'app'))).filter((n) => n.includes('.tmp-'));
    assert.deepEqual(leftovers, []);
  });
});

describe('env vars and secrets', () => {
  let f: GatewayFixture;
  const responses: string[] = [];
  const keep = async (res: Response) => {
    const text = await res.text();
    responses.push(text);
    return text;
  };

  before(async () => {
    f = await GatewayFixture.create();
    const reply = await f.deploy({
      name: 'envy',
      files: {
        'index.js': `export default async () => {
          console.log('using token ' + process.env.API_TOKEN);
          return { region: process.env.REGION ?? null, mode: process.env.MODE ?? null, token: process.env.API_TOKEN ? 'present' : 'absent', tokenLength: (process.env.API_TOKEN ?? '').length };
        };`,
      },
      env: { REGION: 'eu-west', MODE: 'test' },
      secrets: { API_TOKEN: SECRET },
    });
    responses.push(JSON.stringify(reply.events));
  });
  after(() => f.close());

  it('delivers env vars and secrets to the handler', async () => {
    const body = JSON.parse(await keep(await f.request('/fn/envy')));
    assert.deepEqual(body, { region: 'eu-west', mode: 'test', token: 'present', tokenLength: SECRET.length });
  });

  it('shows secret names, never values', async () => {
    const fn = JSON.parse(await keep(await f.request('/v1/functions/envy')));
    assert.deepEqual(fn.active.secretNames, ['API_TOKEN']);
    assert.deepEqual(fn.active.env, { REGION: 'eu-west', MODE: 'test' });
  });

  it('PUT env: merges, deletes with null, keeps the template, creates a version', async () => {
    const builds = f.engine.builds;
    const res = await f.request('/v1/functions/envy/env', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ env: { MODE: null, EXTRA: '1' } }) });
    assert.equal(res.status, 200);
    const fn = JSON.parse(await keep(res));
    assert.equal(fn.activeVersion, 2);
    assert.deepEqual(fn.active.env, { REGION: 'eu-west', EXTRA: '1' });
    assert.deepEqual(fn.active.secretNames, ['API_TOKEN']);
    assert.equal(f.engine.builds, builds, 'an env change must not rebuild the template');
    const { json: versions } = await f.api('GET', '/v1/functions/envy/versions');
    assert.equal(versions.versions[0].templateId, versions.versions[1].templateId);
    assert.equal(versions.versions[1].source, 'env');
    const body = JSON.parse(await keep(await f.request('/fn/envy')));
    assert.deepEqual(body, { region: 'eu-west', mode: null, token: 'present', tokenLength: SECRET.length });
  });

  it('PUT env: a secret can be removed and rollback brings it back', async () => {
    await keep(await f.request('/v1/functions/envy/env', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ secrets: { API_TOKEN: null } }) }));
    assert.equal(JSON.parse(await keep(await f.request('/fn/envy'))).token, 'absent');
    await keep(await f.request('/v1/functions/envy/rollback', { method: 'POST' }));
    assert.equal(JSON.parse(await keep(await f.request('/fn/envy'))).token, 'present');
  });

  it('PUT env: 400s a clash between env and secret names, and an empty update', async () => {
    assert.equal((await f.api('PUT', '/v1/functions/envy/env', { env: { API_TOKEN: 'x' } })).status, 400);
    assert.equal((await f.api('PUT', '/v1/functions/envy/env', {})).status, 400);
    assert.equal((await f.api('PUT', '/v1/functions/envy/env', { env: { 'BAD-NAME': 'x' } })).status, 400);
  });

  it('redacts secret values a handler prints from the invocation log', async () => {
    const text = await keep(await f.request('/v1/functions/envy/logs?limit=100'));
    const { entries } = JSON.parse(text);
    const lines = entries.flatMap((e: { logs: Array<{ text: string }> }) => e.logs.map((l) => l.text));
    assert.ok(lines.includes('using token [redacted]\n'), JSON.stringify(lines));
  });

  it('never returns a secret value from any API response', async () => {
    for (const url of ['/v1/functions', '/v1/functions/envy', '/v1/functions/envy/versions', '/v1/functions/envy/logs']) await keep(await f.request(url));
    for (const text of responses) assert.ok(!text.includes(SECRET), `secret leaked in ${text.slice(0, 200)}`);
  });

  it('stores the secret only in the 0600 secrets file', async () => {
    const files = await filesUnder(f.home);
    const holders: string[] = [];
    for (const file of files) if ((await fs.readFile(file)).includes(SECRET)) holders.push(path.relative(f.home, file));
    assert.deepEqual(holders, ['functions/envy/secrets.json']);
    const mode = (await fs.stat(path.join(f.home, 'functions/envy/secrets.json'))).mode & 0o777;
    assert.equal(mode, 0o600);
  });

  it('does not write secrets to the gateway log either', () => {
    assert.ok(!f.logged.join('\n').includes(SECRET));
  });
});

describe('listing, logs and deletion', () => {
  let f: GatewayFixture;
  before(async () => {
    f = await GatewayFixture.create();
    await f.deployOk({ name: 'hello', files: { 'index.js': HELLO } });
    await f.deployOk({ name: 'other', files: { 'index.js': versionSource('other') } });
  });
  after(() => f.close());

  it('lists functions with their active version and URL', async () => {
    const { json } = await f.api('GET', '/v1/functions');
    assert.deepEqual(
      json.functions.map((fn: { name: string; activeVersion: number; url: string }) => [fn.name, fn.activeVersion, fn.url]),
      [
        ['hello', 1, 'http://localhost/fn/hello'],
        ['other', 1, 'http://localhost/fn/other'],
      ],
    );
  });

  it('returns the newest log entries, limited', async () => {
    for (let i = 0; i < 5; i++) await f.request(`/fn/hello?name=n${i}`);
    const { json } = await f.api('GET', '/v1/functions/hello/logs?limit=2');
    assert.equal(json.entries.length, 2);
    assert.ok(json.entries.every((e: { status: number }) => e.status === 200));
  });

  it('follows the log as an NDJSON stream', async () => {
    const res = await f.request('/v1/functions/hello/logs?follow=1&limit=1');
    assert.match(res.headers.get('content-type') ?? '', /application\/x-ndjson/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffered = '';
    const nextEntry = async () => {
      while (!buffered.includes('\n')) {
        const { value, done } = await reader.read();
        if (done) throw new Error('stream ended');
        buffered += decoder.decode(value, { stream: true });
      }
      const nl = buffered.indexOf('\n');
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      return JSON.parse(line);
    };
    const first = await nextEntry();
    assert.equal(first.status, 200);
    const live = await f.request('/fn/hello?name=live');
    const second = await nextEntry();
    assert.equal(second.id, live.headers.get('x-fn-invocation-id'));
    await reader.cancel();
  });

  it('deletes a function: engine deactivated, API and /fn 404, files gone', async () => {
    const res = await f.api('DELETE', '/v1/functions/other');
    assert.deepEqual(res.json, { deleted: true, name: 'other' });
    assert.deepEqual(f.engine.deactivated, ['other']);
    assert.equal((await f.api('GET', '/v1/functions/other')).status, 404);
    assert.equal((await f.request('/fn/other')).status, 404);
    assert.equal((await f.api('DELETE', '/v1/functions/other')).status, 404);
    await assert.rejects(fs.access(path.join(f.home, 'functions', 'other')));
  });

  it('ends a log follower when its function is deleted', async () => {
    const res = await f.request('/v1/functions/hello/logs?follow=1&limit=1');
    const text = res.text();
    await new Promise((r) => setTimeout(r, 20));
    await f.api('DELETE', '/v1/functions/hello');
    const lines = (await text).split('\n').filter(Boolean);
    assert.equal(lines.length, 1);
  });
});
