import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { execa } from 'execa';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { loadConfig } from '../src/config.ts';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';
import type { RunningSnapfn } from '../src/snapfn.ts';

/*
 * The console in a real browser (Debian's Chromium, driven by
 * playwright-core) against a real gateway with real sandboxes: one
 * startSnapfn() with an API key and the eval service, two functions
 * deployed with the fn CLI. Screenshots of every page go to
 * test-output/console/ (kept, not committed).
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FN_BIN = path.join(ROOT, 'wrangler-free-deploy/bin/fn.js');
const SHOTS = path.join(ROOT, 'test-output/console');
const CHROMIUM = '/usr/bin/chromium';
// Without the background-networking flags this closed network refuses Chromium's own connections at every start.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const KEY = 'console-e2e-key-7f3a91c2';
const SECRET = 'console-e2e-secret-4b8e0d6f';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: scripts/setup.sh installs it (npm test runs it first)`;

const greeter = `export const config = { keepWarm: true };
export default async function (request) {
  console.log('greeter saw ' + new URL(request.url).pathname);
  return { hello: new URL(request.url).searchParams.get('name') ?? 'world' };
}
`;
const flaky = (label: string) => `export const config = { poolSize: 1 };
export default async function (request) {
  console.log('flaky ${label} has token ' + process.env.TOKEN);
  if (new URL(request.url).searchParams.get('fail')) {
    console.error('about to fail');
    throw new Error('flaky failed on purpose');
  }
  return { version: ${JSON.stringify(label)} };
}
`;

describe('console e2e: a real browser on a real gateway', { skip, timeout: 10 * 60_000 }, () => {
  let home: string;
  let work: string;
  let snapfn: RunningSnapfn;
  let url: string;
  let context: BrowserContext;
  let page: Page;
  const bodies: Array<Promise<{ url: string; text: string }>> = [];
  const requestedUrls: string[] = [];
  let evalPoolSize: string | undefined;
  let profile: string;

  const fn = (argv: string[]) => execa('node', [FN_BIN, ...argv], { env: { ...process.env, FN_URL: url, FN_API_KEY: KEY }, reject: false, timeout: 5 * 60_000 });
  const writeFunction = async (name: string, source: string) => {
    const dir = path.join(work, name);
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'index.js'), source);
    return dir;
  };
  const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

  before(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-console-home-'));
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-console-work-'));
    await fs.mkdir(SHOTS, { recursive: true });
    // Evaluations restore on demand: three pooled eval sandboxes would crowd out the functions on two cores.
    evalPoolSize = process.env.SNAPFN_EVAL_POOL_SIZE;
    process.env.SNAPFN_EVAL_POOL_SIZE = '0';
    const { startSnapfn } = await import('../src/snapfn.ts');
    const config = loadConfig({ ...process.env, SNAPFN_HOME: home, PORT: '0', SNAPFN_API_KEY: KEY, SNAPFN_POOL_SIZE: '0', SNAPFN_MAX_SANDBOXES: '6', SNAPFN_EXAMPLES: '0' });
    profile = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-console-chromium-'));
    const [started, browser] = await Promise.all([
      startSnapfn({ config, hostname: '127.0.0.1', eval: true, examplesDir: false, log: () => {} }),
      chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_ARGS,
        viewport: { width: 1280, height: 900 },
      }),
    ]);
    snapfn = started;
    url = snapfn.url;
    context = browser;
    page = context.pages()[0] ?? (await context.newPage());
    page.on('request', (r) => requestedUrls.push(r.url()));
    page.on('response', (r) => {
      bodies.push(r.text().then((text) => ({ url: r.url(), text }), () => ({ url: r.url(), text: '' })));
    });
  });

  after(async () => {
    if (evalPoolSize === undefined) delete process.env.SNAPFN_EVAL_POOL_SIZE;
    else process.env.SNAPFN_EVAL_POOL_SIZE = evalPoolSize;
    await context?.close();
    await snapfn?.close();
    await fs.rm(work, { recursive: true, force: true });
    await fs.rm(home, { recursive: true, force: true });
    if (profile) await fs.rm(profile, { recursive: true, force: true });
  });

  it('deploys two functions with the fn CLI and invokes them, one failure and one async run included', async () => {
    for (const [name, dir, extra] of [
      ['greeter', await writeFunction('greeter', greeter), []],
      ['flaky', await writeFunction('flaky-1', flaky('one')), ['--secret', `TOKEN=${SECRET}`, '--env', 'REGION=eu']],
      ['flaky', await writeFunction('flaky-2', flaky('two')), ['--secret', `TOKEN=${SECRET}`, '--env', 'REGION=eu']],
    ] as const) {
      const deployed = await fn(['deploy', dir, '--name', name, ...extra]);
      assert.equal(deployed.exitCode, 0, deployed.stderr);
    }
    for (let i = 0; i < 3; i++) assert.equal((await fetch(`${url}/fn/greeter?name=n${i}`)).status, 200);
    const invoked = await fn(['invoke', 'flaky']);
    assert.equal(invoked.exitCode, 0, invoked.stderr);
    assert.deepEqual(JSON.parse(invoked.stdout), { version: 'two' });
    assert.equal((await fetch(`${url}/fn/flaky`)).status, 200);
    const failed = await fetch(`${url}/fn/flaky?fail=1`);
    assert.equal(failed.status, 502);
    const id = (await fn(['invoke', 'flaky', '--async'])).stdout.trim();
    const waited = await fn(['invocation', id, '--wait']);
    assert.equal(waited.exitCode, 0, waited.stderr);
  });

  it('refuses the console without the cookie, and signs in with a form that keeps the key out of every URL', async () => {
    const bare = await fetch(`${url}/console`, { redirect: 'manual' });
    assert.equal(bare.status, 303);
    assert.match(bare.headers.get('location') ?? '', /^\/console\/login\?next=/);
    assert.equal((await fetch(`${url}/console/live/panel`, { headers: { 'x-console-fragment': '1' } })).status, 401);
    const post = await fetch(`${url}/console/functions/flaky/rollback`, { method: 'POST', headers: { origin: url, 'content-type': 'application/x-www-form-urlencoded' }, body: 'version=1' });
    assert.equal(post.status, 401);

    await page.goto(`${url}/console/functions/flaky`);
    assert.match(page.url(), /\/console\/login\?next=%2Fconsole%2Ffunctions%2Fflaky$/);
    await shot('login');
    await page.fill('#login-key', 'not-the-key');
    await page.click('#login-submit');
    await page.waitForSelector('#login-error');
    await page.fill('#login-key', KEY);
    await page.click('#login-submit');
    await page.waitForURL(`${url}/console/functions/flaky`);
    const cookies = await context.cookies(`${url}/console`);
    const session = cookies.find((c) => c.name === 'snapfn_console');
    assert.ok(session, JSON.stringify(cookies));
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.ok(!session.value.includes(KEY));
  });

  it('lists both functions', async () => {
    await page.goto(`${url}/console`);
    const rows = await page.locator('#functions tbody tr').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-function')));
    assert.deepEqual(rows, ['flaky', 'greeter']);
    const flakyRow = page.locator('tr[data-function="flaky"]');
    assert.match(await flakyRow.innerText(), /v2/);
    assert.match(await flakyRow.innerText(), /snapfn/);
    assert.match(await flakyRow.innerText(), /of [4-9]/, 'an error rate over the invocations of the last hour');
    assert.match(await page.locator('tr[data-function="greeter"]').innerText(), /yes/, 'keepWarm');
    await shot('functions');
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'no sideways scrolling of the page on a phone');
    await shot('functions-phone');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('shows a function: versions, env and secret names, charts with data points', async () => {
    await page.goto(`${url}/console/functions/flaky`);
    assert.deepEqual(await page.locator('#versions tbody tr').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-version'))), ['2', '1']);
    const names = await page.locator('code.name').allInnerTexts();
    assert.deepEqual(names.sort(), ['REGION', 'TOKEN']);
    const points = await page.locator('#charts svg .point').count();
    assert.ok(points >= 4, `${points} data points`);
    const bars = await page.locator('#charts figure').first().locator('.point').evaluateAll((els) => els.map((e) => e.querySelector('title')?.textContent ?? ''));
    assert.ok(bars.some((t) => t.includes('handler_error')), JSON.stringify(bars));
    const legend = await page.locator('#charts').innerText();
    for (const path of ['pool hit', 'queued']) assert.ok(legend.includes(path), `latency by path shows ${path}: ${legend}`);
    await shot('function');
    await page.goto(`${url}/console/functions/greeter`);
    assert.match(await page.locator('#charts').innerText(), /keepWarm/);
  });

  it('rolls back from the console, with a confirmation, and the serving version changes', async () => {
    await page.goto(`${url}/console/functions/flaky`);
    await page.click('text=Roll back to v1');
    await page.waitForSelector('#confirm-rollback');
    await shot('rollback-confirm');
    assert.equal((await fetch(`${url}/fn/flaky`)).headers.get('x-fn-version'), '2', 'nothing changes before the confirmation');
    await page.click('#confirm-rollback');
    await page.waitForURL(/rolledBack=1$/);
    assert.match(await page.locator('.notice').innerText(), /now serves v1/);
    const res = await fetch(`${url}/fn/flaky`);
    assert.equal(res.headers.get('x-fn-version'), '1');
    assert.deepEqual(await res.json(), { version: 'one' });
  });

  it('filters invocations, and the failing one shows its error, stack and logs', async () => {
    await page.goto(`${url}/console/invocations`);
    await page.selectOption('#filter-function', 'flaky');
    await page.selectOption('#filter-outcome', 'error');
    await page.click('form.filters button');
    await page.waitForURL(/outcome=error/);
    const rows = page.locator('#invocations tbody tr');
    assert.equal(await rows.count(), 1);
    assert.match(await rows.first().innerText(), /502[\s\S]*direct[\s\S]*handler_error/);
    await shot('invocations');
    await page.selectOption('#filter-outcome', '');
    await page.selectOption('#filter-mode', 'async');
    await page.click('form.filters button');
    await page.waitForURL(/mode=async/);
    assert.equal(await page.locator('#invocations tbody tr').count(), 1, 'the async run');

    await page.goto(`${url}/console/invocations?function=flaky&outcome=error`);
    await page.click('#invocations tbody tr a.mono');
    await page.waitForSelector('#error');
    assert.match(await page.locator('#error').innerText(), /handler_error: flaky failed on purpose/);
    assert.match(await page.locator('pre.stack').innerText(), /Error: flaky failed on purpose\n\s+at /);
    const logs = await page.locator('#logs').innerText();
    assert.match(logs, /about to fail/);
    assert.match(logs, /has token \[redacted\]/);
    const phases = await page.locator('.phases-table').innerText();
    assert.match(phases, /handler/);
    assert.match(phases, /pool hit|restore|keepWarm/);
    await shot('invocation');
  });

  it('shows live sandboxes and updates itself without a reload', async () => {
    await page.goto(`${url}/console/live`);
    assert.match(await page.locator('#live-sandboxes').innerText(), /^\d+$/);
    assert.match(await page.locator('#live-functions').innerText(), /flaky/);
    await page.waitForSelector('#live[data-updated]', { timeout: 15_000 });
    await shot('live');
  });

  it('runs 1+1 in the eval playground', async () => {
    await page.goto(`${url}/console/eval`);
    await page.selectOption('#eval-language', 'javascript');
    await page.fill('#eval-code', '1+1');
    await page.click('#eval-run');
    await page.waitForSelector('#eval-result', { timeout: 60_000 });
    assert.equal((await page.locator('#eval-result').innerText()).trim(), '2');
    await shot('eval');
  });

  it('signs out', async () => {
    await page.goto(`${url}/console`);
    await page.click('header form.signout button');
    await page.waitForURL(/\/console\/login$/);
    await page.goto(`${url}/console/live`);
    assert.match(page.url(), /\/console\/login\?next=/);
  });

  it('without an API key, answers loopback clients directly', async () => {
    const config = loadConfig({ ...process.env, SNAPFN_HOME: home, PORT: '0', SNAPFN_API_KEY: '' });
    let open: RunningGateway | undefined;
    try {
      open = await startGateway({ engine: snapfn.engine, store: snapfn.store, config, port: 0, hostname: '127.0.0.1' });
      await page.goto(`${open.url}/console`);
      assert.equal(await page.locator('#functions tbody tr').count(), 2);
      assert.equal(await page.locator('header form.signout').count(), 0);
      const foreign = await fetch(`${open.url}/console/functions/flaky/rollback`, { method: 'POST', headers: { origin: 'http://evil.example', 'content-type': 'application/x-www-form-urlencoded' }, body: 'version=2' });
      assert.equal(foreign.status, 403);
    } finally {
      await open?.close();
    }
  });

  it('never shows a secret value, and never puts the key in a URL', async () => {
    const seen = await Promise.all(bodies);
    assert.ok(seen.length > 20, `${seen.length} responses`);
    for (const { url: at, text } of seen) assert.ok(!text.includes(SECRET), `the secret is in ${at}`);
    for (const at of requestedUrls) assert.ok(!at.includes(KEY), `the key is in ${at}`);
    const headers = { authorization: `Bearer ${KEY}` };
    const list = await (await fetch(`${url}/console/invocations?range=all`, { headers })).text();
    const details = [...list.matchAll(/href="(\/console\/invocations\/[a-z-]+\/[^"]+)"/g)].map((m) => m[1]!);
    assert.ok(details.length >= 8, `${details.length} invocations listed`);
    for (const route of ['/console', '/console/functions/flaky', '/console/functions/greeter', '/console/functions/flaky/charts', '/console/live/panel', ...details]) {
      const text = await (await fetch(`${url}${route}`, { headers })).text();
      assert.ok(!text.includes(SECRET), `the secret is in ${route}`);
    }
  });
});
