import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { PayloadTooLargeError } from '../src/deploy/deploy-errors.ts';
import { hashDirectory, packDirectory } from '../src/deploy/pack-directory.ts';

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

  it('follows optionalDependencies that are installed (prebuilt binaries), and skips the ones that are not', async () => {
    await write(root, {
      'node_modules/imagey/package.json': JSON.stringify({ name: 'imagey', dependencies: {}, optionalDependencies: { '@bin/imagey-linux-x64': '1', '@bin/imagey-darwin-arm64': '1' } }),
      'node_modules/imagey/index.js': 'module.exports = 1;',
      'node_modules/@bin/imagey-linux-x64/package.json': JSON.stringify({ name: '@bin/imagey-linux-x64' }),
      'node_modules/@bin/imagey-linux-x64/imagey.node': 'ELF',
      'opt/package.json': JSON.stringify({ dependencies: { imagey: '1' } }),
      'opt/index.js': 'export default () => 1;',
    });
    const packed = await packDirectory(path.join(root, 'opt'), { maxBytes: 1 << 20 });
    assert.deepEqual(packed.hoisted, ['imagey', '@bin/imagey-linux-x64']);
    assert.ok(packed.files['node_modules/@bin/imagey-linux-x64/imagey.node']);
  });

  it('leaves out what .fnignore lists (gitignore syntax), .git always, node_modules never by default', async () => {
    await write(root, {
      'ign/index.js': 'export default () => 1;',
      'ign/.git/HEAD': 'ref',
      'ign/notes/todo.txt': 'x',
      'ign/notes/keep.txt': 'x',
      'ign/build.log': 'x',
      'ign/sub/build.log': 'x',
      'ign/node_modules/dep/index.js': 'x',
      'ign/node_modules/dep/test/fixture.js': 'x',
    });
    const files = async () => Object.keys((await packDirectory(path.join(root, 'ign'), { maxBytes: 1 << 20 })).files).sort();
    assert.deepEqual(await files(), ['build.log', 'index.js', 'node_modules/dep/index.js', 'node_modules/dep/test/fixture.js', 'notes/keep.txt', 'notes/todo.txt', 'sub/build.log']);
    await fs.writeFile(path.join(root, 'ign/.fnignore'), '# comments work\n*.log\nnotes/*\n!notes/keep.txt\nnode_modules/*/test/\n');
    assert.deepEqual(await files(), ['.fnignore', 'index.js', 'node_modules/dep/index.js', 'notes/keep.txt']);
  });

  it('applies .fnignore to dependencies taken from a parent node_modules', async () => {
    await write(root, { 'ign2/package.json': JSON.stringify({ dependencies: { hoisted: '1' } }), 'ign2/index.js': 'export default () => 1;', 'ign2/.fnignore': 'node_modules/transitive\n' });
    const packed = await packDirectory(path.join(root, 'ign2'), { maxBytes: 1 << 20 });
    assert.deepEqual(packed.hoisted, ['hoisted']);
    assert.ok(!Object.keys(packed.files).some((f) => f.startsWith('node_modules/transitive/')));
  });

  it('hashDirectory lists the same files by content, executables marked, one local file per digest', async () => {
    await write(root, { 'hashed/index.js': 'same', 'hashed/copy.js': 'same', 'hashed/run.sh': '#!/bin/sh' });
    await fs.chmod(path.join(root, 'hashed/run.sh'), 0o755);
    const hashed = await hashDirectory(path.join(root, 'hashed'));
    const digest = (text: string) => crypto.createHash('sha256').update(text).digest('hex');
    assert.deepEqual(hashed.manifest, [
      { path: 'copy.js', sha256: digest('same'), size: 4 },
      { path: 'index.js', sha256: digest('same'), size: 4 },
      { path: 'run.sh', sha256: digest('#!/bin/sh'), size: 9, executable: true },
    ]);
    assert.equal(hashed.bytes, 17);
    assert.deepEqual([...hashed.fileOf.keys()].sort(), [digest('same'), digest('#!/bin/sh')].sort());
    assert.equal(await fs.readFile(hashed.fileOf.get(digest('same'))!, 'utf8'), 'same');
    await assert.rejects(hashDirectory(path.join(root, 'hashed'), { maxBytes: 10 }), PayloadTooLargeError);
  });

  it("packs sharp with its prebuilt binary and libvips from the repository's node_modules", async () => {
    // A function directory whose parent node_modules is the repository's.
    const parent = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-pack-sharp-'));
    try {
      await fs.symlink(fileURLToPath(new URL('../node_modules', import.meta.url)), path.join(parent, 'node_modules'));
      await write(parent, { 'thumb/package.json': JSON.stringify({ dependencies: { sharp: '*' } }), 'thumb/index.js': "import sharp from 'sharp';\nexport default () => typeof sharp;\n" });
      const hashed = await hashDirectory(path.join(parent, 'thumb'));
      assert.ok(hashed.hoisted.includes('@img/sharp-linux-x64') && hashed.hoisted.includes('@img/sharp-libvips-linux-x64'), hashed.hoisted.join(' '));
      assert.ok(hashed.manifest.some((e) => /^node_modules\/@img\/sharp-linux-x64\/lib\/sharp-linux-x64-[\d.]+\.node$/.test(e.path)));
      assert.ok(hashed.manifest.some((e) => /^node_modules\/@img\/sharp-libvips-linux-x64\/lib\/libvips-cpp\.so/.test(e.path)));
    } finally {
      await fs.rm(parent, { recursive: true, force: true });
    }
  });

  it("packs the json-api example with zod from the repository's node_modules", async () => {
    const packed = await packDirectory(path.join(EXAMPLES, 'json-api'), { maxBytes: 20 << 20 });
    assert.ok(packed.files['node_modules/zod/package.json']);
    assert.deepEqual(packed.hoisted, ['zod']);
  });
});
