// How a full SNAPFN_HOME is recognised and said (src/registry/disk-full.ts), and
// that the store's writes leave nothing half-written behind when one fails.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { InvalidHandlerError } from '../src/deploy/deploy-errors.ts';
import { TemplateBuildError } from '../src/errors.ts';
import { toSnapfnError } from '../src/gateway/error-response.ts';
import { writeFileExclusive } from '../src/registry/atomic-file.ts';
import { diskFullDetail, storageFailure, StorageFullError } from '../src/registry/disk-full.ts';

const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write', path: '/home/x' });

describe('a full SNAPFN_HOME', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  it('is recognised by errno, through causes, and in a child process\'s stderr', () => {
    assert.equal(diskFullDetail(enospc()), 'ENOSPC write /home/x');
    assert.equal(diskFullDetail(new TemplateBuildError('runsc checkpoint failed: exit 128', { cause: Object.assign(new Error('Command failed'), { stderr: 'write image: no space left on device' }) })), 'no space left on device');
    assert.equal(diskFullDetail(new Error('something else')), undefined);
  });

  it('is a 507 insufficient_storage at the HTTP boundary; client errors stay what they are', async () => {
    const err = toSnapfnError(enospc(), () => {});
    assert.ok(err instanceof StorageFullError);
    assert.equal(err.status, 507);
    assert.equal(err.code, 'insufficient_storage');
    const roomy = os.tmpdir();
    assert.equal(await storageFailure(new InvalidHandlerError('no default export'), roomy), undefined);
    assert.equal(await storageFailure(new TemplateBuildError('runsc checkpoint failed'), roomy), undefined, 'a build failure with room to spare is not a full disk');
  });

  it('an exclusive write is whole or absent, and refuses to replace', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfn-exclusive-'));
    dirs.push(dir);
    const file = path.join(dir, '1.json');
    await writeFileExclusive(file, '{"a":1}', { mode: 0o600 });
    assert.equal((await fs.stat(file)).mode & 0o777, 0o600);
    await assert.rejects(writeFileExclusive(file, '{"a":2}'), /EEXIST/);
    assert.equal(await fs.readFile(file, 'utf8'), '{"a":1}');
    assert.deepEqual(await fs.readdir(dir), ['1.json'], 'no temp file left');
  });
});
