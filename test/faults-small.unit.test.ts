// Issue 20, "the small ones", and the pure parts of the egress and memory
// rules: capped echoes, a JSON 431, URLs from SNAPFN_PUBLIC_URL (never the
// Host header), CIDR settings, the egress deny list, the memory budget.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfig, loadEgressPolicy } from '../src/config.ts';
import { echo } from '../src/errors.ts';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';
import { FunctionStore } from '../src/registry/function-store.ts';
import { sandboxMemoryLimitBytes } from '../src/sandbox/gvisor/oci-spec.ts';
import { parseCidr } from '../src/sandbox/network/cidr.ts';
import { ALWAYS_DENIED, egressChainRestore, egressDenyList } from '../src/sandbox/network/isolation.ts';
import { FakeEngine } from './helpers/fake-engine.ts';
import { GatewayFixture, HELLO, textFiles } from './helpers/gateway-fixture.ts';

const MiB = 1024 * 1024;

/** One raw HTTP/1.1 exchange: what node's parser refuses never reaches fetch-level clients intact. */
async function rawHttp(port: number, request: string): Promise<{ status: number; headers: string; body: string }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(request);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  const [head = '', body = ''] = text.split('\r\n\r\n');
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0), headers: head, body };
}

describe('echoed names are capped', () => {
  let f: GatewayFixture;
  before(async () => {
    f = await GatewayFixture.create();
    await f.deployOk({ name: 'hello', files: { 'index.js': HELLO } });
  });
  after(() => f.close());

  it('echo keeps short values and cuts long ones at 64 characters plus an ellipsis', () => {
    assert.equal(echo('hello'), 'hello');
    assert.equal(echo('x'.repeat(64)), 'x'.repeat(64));
    assert.equal(echo('x'.repeat(10_000)), `${'x'.repeat(64)}…`);
    // Characters, not UTF-16 halves: a cut never splits an emoji.
    assert.equal(echo('😀'.repeat(70)), `${'😀'.repeat(64)}…`);
  });

  it('a 10 KB function name does not come back whole (invoke, management API, unknown route, invocation id)', async () => {
    const long = 'a'.repeat(10_000);
    for (const [url, status] of [
      [`/fn/${long}`, 404],
      [`/fn/${long}/deeper`, 404],
      [`/v1/functions/${long}`, 400],
      [`/v1/functions/${long}/versions`, 400],
      [`/nowhere/${long}`, 404],
    ] as const) {
      const res = await f.request(url);
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(res.status, status, url.slice(0, 40));
      assert.ok(body.error.message.length < 300, `${url.slice(0, 40)}: a ${body.error.message.length}-character message`);
      assert.match(body.error.message, /a{64}…/);
    }
    // A valid name still reads back in full.
    const res = await f.request('/fn/no-such-function');
    assert.equal(((await res.json()) as { error: { message: string } }).error.message, 'no function named no-such-function');
  });
});

describe('the HTTP server: JSON errors from the parser, URLs from the listen address or SNAPFN_PUBLIC_URL', () => {
  let home: string;
  let engine: FakeEngine;
  let store: FunctionStore;
  const started: RunningGateway[] = [];
  const start = async (publicUrl?: string) => {
    const gateway = await startGateway({
      engine,
      store,
      config: { apiKey: undefined, maxBodyBytes: 4096, maxDeployBytes: 4 * MiB, ...(publicUrl ? { publicUrl } : {}) },
      port: 0,
      hostname: '127.0.0.1',
      log: () => {},
    });
    started.push(gateway);
    return gateway;
  };

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-small-'));
    engine = await FakeEngine.create();
    store = await FunctionStore.open(home);
  });
  after(async () => {
    for (const g of started) await g.close({ graceMs: 100 });
    await store.close();
    await engine.close();
    await fs.rm(home, { recursive: true, force: true });
  });

  it('request headers over the limit get a JSON 431, a malformed request a JSON 400', async () => {
    const gateway = await start();
    const big = await rawHttp(gateway.port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20 * 1024)}\r\n\r\n`);
    assert.equal(big.status, 431);
    assert.match(big.headers, /content-type: application\/json/i);
    assert.deepEqual(JSON.parse(big.body).error.code, 'headers_too_large');
    const bad = await rawHttp(gateway.port, 'NOT HTTP AT ALL\r\n\r\n');
    assert.equal(bad.status, 400);
    assert.equal(JSON.parse(bad.body).error.code, 'bad_request');
    // The server is unharmed.
    assert.equal((await fetch(`${gateway.url}/healthz`)).status, 200);
  });

  it('URLs in API views come from the listen address, whatever Host says', async () => {
    const gateway = await start();
    const deploy = await fetch(`${gateway.url}/v1/functions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', host: 'evil.example:666' },
      body: JSON.stringify({ name: 'urls', files: textFiles({ 'index.js': HELLO }) }),
    });
    const result = (await deploy.text()).trim().split('\n').map((l) => JSON.parse(l)).at(-1);
    assert.equal(result.function.url, `${gateway.url}/fn/urls`);
    const raw = await rawHttp(gateway.port, 'GET /v1/functions/urls HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n');
    assert.equal(JSON.parse(raw.body).url, `${gateway.url}/fn/urls`);
    const list = await rawHttp(gateway.port, 'GET /v1/functions HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-Host: evil.example\r\nConnection: close\r\n\r\n');
    assert.deepEqual(JSON.parse(list.body).functions.map((fn: { url: string }) => fn.url), [`${gateway.url}/fn/urls`]);
  });

  it('with SNAPFN_PUBLIC_URL, from it (path prefix kept)', async () => {
    const gateway = await start(loadConfig({ SNAPFN_PUBLIC_URL: 'https://fn.example.com/snapfn/' }).publicUrl);
    const raw = await rawHttp(gateway.port, 'GET /v1/functions/urls HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n');
    assert.equal(JSON.parse(raw.body).url, 'https://fn.example.com/snapfn/fn/urls');
  });
});

describe('settings: SNAPFN_PUBLIC_URL, SNAPFN_EGRESS_DENY / SNAPFN_EGRESS_ALLOW', () => {
  it('SNAPFN_PUBLIC_URL is an http(s) URL, kept without its trailing slash', () => {
    assert.equal(loadConfig({}).publicUrl, undefined);
    assert.equal(loadConfig({ SNAPFN_PUBLIC_URL: 'https://fn.example.com/' }).publicUrl, 'https://fn.example.com');
    assert.equal(loadConfig({ SNAPFN_PUBLIC_URL: 'http://10.0.0.5:8080' }).publicUrl, 'http://10.0.0.5:8080');
    for (const bad of ['fn.example.com', 'ftp://x', 'https://x/?q=1', 'https://x/#f']) assert.throws(() => loadConfig({ SNAPFN_PUBLIC_URL: bad }), ConfigError, bad);
  });

  it('CIDR lists: comma or space separated, IPv4 and IPv6, normalized; a bad entry fails the start naming it', () => {
    assert.deepEqual(loadConfig({}).egress, { deny: [], allow: [] });
    const policy = loadEgressPolicy({ SNAPFN_EGRESS_DENY: '203.0.113.7/24, 198.51.100.9 2001:db8::1/32', SNAPFN_EGRESS_ALLOW: '10.1.2.3/32' });
    assert.deepEqual(policy, { deny: ['203.0.113.0/24', '198.51.100.9/32', '2001:db8::/32'], allow: ['10.1.2.3/32'] });
    assert.throws(() => loadConfig({ SNAPFN_EGRESS_DENY: '10.0.0.0/8,not-a-net' }), /SNAPFN_EGRESS_DENY: "not-a-net" is not a CIDR/);
    assert.throws(() => loadEgressPolicy({ SNAPFN_EGRESS_ALLOW: '10.0.0.0/33' }), /SNAPFN_EGRESS_ALLOW/);
  });

  it('parseCidr', () => {
    assert.deepEqual(parseCidr('192.0.2.77/24'), { family: 4, text: '192.0.2.0/24' });
    assert.deepEqual(parseCidr('192.0.2.77'), { family: 4, text: '192.0.2.77/32' });
    assert.deepEqual(parseCidr('fd00::2/64'), { family: 6, text: 'fd00::/64' });
    assert.deepEqual(parseCidr('fe80::fc:ff:fe00:1/10'), { family: 6, text: 'fe80::/10' });
    assert.deepEqual(parseCidr('2001:db8:0:0:1:0:0:1'), { family: 6, text: '2001:db8::1:0:0:1/128' });
    for (const bad of ['', '1.2.3', '1.2.3.4/', '1.2.3.4/x', '::/129', '1.2.3.4/8/9', 'example.com']) assert.equal(parseCidr(bad), undefined, bad);
  });
});

describe('egress deny list', () => {
  const host = [
    { family: 4 as const, subnet: '192.0.2.0/24', address: '192.0.2.2/32' },
    { family: 6 as const, subnet: 'fd00::/64', address: 'fd00::2/128' },
  ];

  it("drops the host's own subnets and addresses besides the fixed ranges and SNAPFN_EGRESS_DENY; SNAPFN_EGRESS_ALLOW goes first", () => {
    const list = egressDenyList({ deny: ['203.0.113.0/24', '2001:db8::/32'], allow: ['10.1.2.3/32'] }, host);
    assert.deepEqual(list.allow, ['10.1.2.3/32']);
    assert.deepEqual(list.deny, [...ALWAYS_DENIED, '192.0.2.0/24', '192.0.2.2/32', '203.0.113.0/24']);
    const text = egressChainRestore('SNAPFN-EG-1-1', list);
    const lines = text.split('\n');
    assert.equal(lines[0], '*filter');
    assert.equal(lines[1], ':SNAPFN-EG-1-1 - [0:0]', 'declared (so flushed) in the same transaction as its rules');
    assert.equal(lines[2], '-A SNAPFN-EG-1-1 -d 10.1.2.3/32 -j RETURN');
    assert.ok(lines.includes('-A SNAPFN-EG-1-1 -d 192.0.2.0/24 -j DROP'));
    assert.ok(lines.includes('-A SNAPFN-EG-1-1 -d 169.254.0.0/16 -j DROP'));
    assert.equal(lines.at(-2), 'COMMIT');
  });
});

describe('sandbox memory budget (gVisor)', () => {
  it("the cgroup limit is memoryMb plus the runtime's reserve plus two copies of the largest body", () => {
    assert.equal(sandboxMemoryLimitBytes(64), (64 + 96) * MiB + 2 * 6 * MiB);
    assert.equal(sandboxMemoryLimitBytes(256, 20 * MiB), (256 + 96) * MiB + 40 * MiB);
  });
});
