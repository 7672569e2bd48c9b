import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    assert.deepEqual(loadConfig({}), {
      port: 8080,
      home: path.join(os.homedir(), '.snapfn'),
      apiKey: undefined,
      maxSandboxes: 8,
      poolSize: undefined,
      maxBodyBytes: 6 * 1024 * 1024,
      maxDeployBytes: 250 * 1024 * 1024,
      maxResponseBytes: 100 * 1024 * 1024,
      pauseAfterMs: 1000,
      redisUrl: undefined,
      templateStore: undefined,
      maxQueueWaitMs: 30_000,
      maxQueuedPerFunction: 1000,
      gcKeepVersions: 3,
      gcMinAgeMs: 600_000,
      examples: true,
      eval: true,
      publicUrl: undefined,
      egress: { deny: [], allow: [] },
      secretsKey: undefined,
    });
  });

  it('reads every variable', () => {
    const config = loadConfig({
      PORT: '0',
      SNAPFN_HOME: 'relative/home',
      SNAPFN_API_KEY: 'a-long-enough-key',
      SNAPFN_MAX_SANDBOXES: '3',
      SNAPFN_POOL_SIZE: '0',
      SNAPFN_MAX_BODY_BYTES: '100',
      SNAPFN_MAX_DEPLOY_BYTES: '200',
      REDIS_URL: 'rediss://:pw@redis.internal:6380',
      SNAPFN_TEMPLATE_STORE: 'shared/templates',
      SNAPFN_MAX_QUEUE_WAIT_MS: '5000',
      SNAPFN_MAX_QUEUED_PER_FUNCTION: '7',
      SNAPFN_EXAMPLES: '0',
      SNAPFN_GC_KEEP_VERSIONS: '0',
      SNAPFN_GC_MIN_AGE_MS: '1000',
    });
    assert.deepEqual([config.gcKeepVersions, config.gcMinAgeMs], [0, 1000]);
    assert.equal(config.port, 0);
    assert.equal(config.home, path.resolve('relative/home'));
    assert.equal(config.apiKey, 'a-long-enough-key');
    assert.deepEqual([config.maxSandboxes, config.poolSize, config.maxBodyBytes, config.maxDeployBytes], [3, 0, 100, 200]);
    assert.equal(config.redisUrl, 'rediss://:pw@redis.internal:6380');
    assert.equal(config.templateStore, path.resolve('shared/templates'));
    assert.deepEqual([config.maxQueueWaitMs, config.maxQueuedPerFunction, config.examples], [5000, 7, false]);
  });

  it('accepts SNAPFN_MAX_BUNDLE_BYTES as the old name of SNAPFN_MAX_DEPLOY_BYTES (the new name wins)', () => {
    assert.equal(loadConfig({ SNAPFN_MAX_BUNDLE_BYTES: '300' }).maxDeployBytes, 300);
    assert.equal(loadConfig({ SNAPFN_MAX_BUNDLE_BYTES: '300', SNAPFN_MAX_DEPLOY_BYTES: '400' }).maxDeployBytes, 400);
    assert.throws(() => loadConfig({ SNAPFN_MAX_BUNDLE_BYTES: '0' }), /SNAPFN_MAX_BUNDLE_BYTES: /);
  });

  it('treats empty variables as unset (no empty API key)', () => {
    assert.equal(loadConfig({ SNAPFN_API_KEY: '', PORT: ' ' }).apiKey, undefined);
  });

  it('rejects a REDIS_URL that is not redis:// or rediss://, and unknown SNAPFN_EXAMPLES values', () => {
    assert.throws(() => loadConfig({ REDIS_URL: 'http://x', SNAPFN_EXAMPLES: 'no' }), /REDIS_URL: REDIS_URL must start with redis:\/\/ or rediss:\/\/; SNAPFN_EXAMPLES: /);
  });

  it('rejects bad values with one readable error', () => {
    assert.throws(() => loadConfig({ PORT: 'http', SNAPFN_MAX_SANDBOXES: '0', SNAPFN_API_KEY: 'short' }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /^invalid configuration: PORT: .*; SNAPFN_API_KEY: SNAPFN_API_KEY must be at least 8 characters; SNAPFN_MAX_SANDBOXES: /);
      return true;
    });
  });
});
