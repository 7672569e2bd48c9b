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
      poolSize: 1,
      maxBodyBytes: 6 * 1024 * 1024,
      maxBundleBytes: 20 * 1024 * 1024,
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
      SNAPFN_MAX_BUNDLE_BYTES: '200',
    });
    assert.equal(config.port, 0);
    assert.equal(config.home, path.resolve('relative/home'));
    assert.equal(config.apiKey, 'a-long-enough-key');
    assert.deepEqual([config.maxSandboxes, config.poolSize, config.maxBodyBytes, config.maxBundleBytes], [3, 0, 100, 200]);
  });

  it('treats empty variables as unset (no empty API key)', () => {
    assert.equal(loadConfig({ SNAPFN_API_KEY: '', PORT: ' ' }).apiKey, undefined);
  });

  it('rejects bad values with one readable error', () => {
    assert.throws(() => loadConfig({ PORT: 'http', SNAPFN_MAX_SANDBOXES: '0', SNAPFN_API_KEY: 'short' }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /^invalid configuration: PORT: .*; SNAPFN_API_KEY: SNAPFN_API_KEY must be at least 8 characters; SNAPFN_MAX_SANDBOXES: /);
      return true;
    });
  });
});
