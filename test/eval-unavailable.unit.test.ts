// A node whose eval could not start (a driver with no eval root filesystem,
// say) still serves everything else, and /v1/eval says why with a 503.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createGateway } from '../src/gateway/app.ts';
import { FunctionStore } from '../src/registry/function-store.ts';
import { FakeEngine } from './helpers/fake-engine.ts';

let home: string;
let store: FunctionStore;
let engine: FakeEngine;

before(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-eval-off-'));
  store = await FunctionStore.open(home);
  engine = await FakeEngine.create();
});

after(async () => {
  await store.close();
  await engine.close();
  await fs.rm(home, { recursive: true, force: true });
});

test('POST /v1/eval answers 503 eval_unavailable with the reason; the rest of the API serves', async () => {
  const why = 'no eval template could be built: javascript: the firecracker driver has only the base root filesystem';
  const app = createGateway({ engine, store, evalUnavailable: why, config: { apiKey: 'eval-off-key-123', maxBodyBytes: 4096, maxDeployBytes: 1 << 20 } } as Parameters<typeof createGateway>[0]);
  const headers = { authorization: 'Bearer eval-off-key-123', 'content-type': 'application/json' };
  const res = await app.request('/v1/eval', { method: 'POST', headers, body: JSON.stringify({ language: 'javascript', code: '1+1' }) });
  assert.equal(res.status, 503);
  const body = (await res.json()) as { error: { code: string; message: string } };
  assert.equal(body.error.code, 'eval_unavailable');
  assert.ok(body.error.message.includes(why), body.error.message);
  const list = await app.request('/v1/functions', { headers });
  assert.equal(list.status, 200);
  // Auth still comes first.
  assert.equal((await app.request('/v1/eval', { method: 'POST', body: '{}' })).status, 401);
});
