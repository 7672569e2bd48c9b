import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { PayloadTooLargeError } from '../src/deploy/deploy-errors.ts';
import { packDirectory } from '../src/deploy/pack-directory.ts';

const EXAMPLES = fileURLToPath(new URL('../functions', import.meta.url));

async function write(root: string, files: Record<string, string>): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await fs.writeFile(path.join(root, rel), text);
  }
}

describe('packDirectory', () => {
  let root: string;
  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-pack-'));
    await write(root, {
      // A workspace: the handler's dependency is hoisted to the parent's node_modules.
      'node_modules/hoisted/package.json': JSON.stringify({ name: 'hoisted', dependencies: { transitive: '1' } }),
      'node_modules/hoisted/index.js': 'module.exports = 1;',
      'node_modules/hoisted/index.d.ts': 'export {};',
      'node_modules/transitive/package.json': JSON.stringify({ name: 'transitive' }),
      'node_modules/transitive/index.js': 'module.exports = 2;',
      'node_modules/unrelated/index.js': 'nope',
      'fn/package.json': JSON.stringify({ dependencies: { hoisted: '1', local: '1', absent: '1' } }),
      'fn/index.ts': 'export default () => 1;',
      'fn/lib/util.ts': 'export const x = 1;',
      'fn/.git/HEAD': 'ref: refs/heads/main',
      'fn/node_modules/local/index.js': 'module.exports = 3;',
      'fn/node_modules/.bin/tool': '#!/bin/sh',
    });
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  it('packs the directory with its node_modules, without .git, plus hoisted dependencies', async () => {
    const packed = await packDirectory(path.join(root, 'fn'), { maxBytes: 1 << 20 });
    assert.deepEqual(Object.keys(packed.files).sort(), [
      'index.ts',
      'lib/util.ts',
      'node_modules/hoisted/index.js',
      'node_modules/hoisted/package.json',
      'node_modules/local/index.js',
      'node_modules/transitive/index.js',
      'node_modules/transitive/package.json',
      'package.json',
    ]);
    assert.deepEqual(packed.hoisted, ['hoisted', 'transitive']);
    assert.equal(Buffer.from(packed.files['index.ts']!, 'base64').toString(), 'export default () => 1;');
  });

  it('stops at the size limit', async () => {
    await assert.rejects(packDirectory(path.join(root, 'fn'), { maxBytes: 10 }), PayloadTooLargeError);
  });

  it("packs the json-api example with zod from the repository's node_modules", async () => {
    const packed = await packDirectory(path.join(EXAMPLES, 'json-api'), { maxBytes: 20 << 20 });
    assert.ok(packed.files['node_modules/zod/package.json']);
    assert.deepEqual(packed.hoisted, ['zod']);
  });
});
