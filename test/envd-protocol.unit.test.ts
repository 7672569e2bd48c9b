import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { DATA_CHUNK_BYTES, dataFrame, FRAME_DATA, FRAME_JSON, FrameDecoder, jsonFrame, ProtocolError } from '../src/sandbox/envd/protocol.ts';
import { EnvdMessageSchema } from '../src/sandbox/envd/envd-messages.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function concat(parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts.map((p) => Buffer.from(p)));
}

describe('envd protocol', () => {
  it('reassembles JSON and data frames whatever the chunking', () => {
    const body = Buffer.alloc(3 * DATA_CHUNK_BYTES + 17, 7);
    const wire = concat([jsonFrame({ type: 'response', id: 9, status: 200, headers: [['a', 'b']] }), dataFrame(9, body.subarray(0, DATA_CHUNK_BYTES)), dataFrame(9, body.subarray(DATA_CHUNK_BYTES)), jsonFrame({ type: 'warmed', id: 10 })]);
    for (const step of [1, 3, 4096, wire.length]) {
      const decoder = new FrameDecoder();
      const frames = [];
      for (let i = 0; i < wire.length; i += step) frames.push(...decoder.push(wire.subarray(i, i + step)));
      assert.equal(frames.length, 4, `chunks of ${step}`);
      assert.deepEqual(frames[0], { kind: FRAME_JSON, message: { type: 'response', id: 9, status: 200, headers: [['a', 'b']] } });
      const data = frames.filter((f) => f.kind === FRAME_DATA);
      assert.deepEqual(Buffer.concat(data.map((f) => Buffer.from((f as { chunk: Uint8Array }).chunk))), body);
      assert.ok(data.every((f) => (f as { id: number }).id === 9));
    }
  });

  it('refuses a frame of impossible length or kind', () => {
    assert.throws(() => new FrameDecoder().push(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 1])), ProtocolError);
    assert.throws(() => new FrameDecoder().push(Uint8Array.from([0, 0, 0, 2, 9, 0])), ProtocolError);
  });

  it("validates envd's messages on the host", () => {
    assert.ok(EnvdMessageSchema.safeParse({ type: 'settled', id: 1, state: 'settled' }).success);
    assert.ok(!EnvdMessageSchema.safeParse({ type: 'settled', id: 1, state: 'later' }).success);
    assert.ok(!EnvdMessageSchema.safeParse({ type: 'response', id: 1, status: 99, headers: [] }).success);
  });

  it('envd type-checks against the protocol module (a message changed on one side only does not compile)', { timeout: 120_000 }, async () => {
    const run = await execa('npx', ['tsc', '-p', 'tsconfig.envd.json'], { cwd: ROOT, reject: false });
    assert.equal(run.exitCode, 0, run.stdout + run.stderr);
  });
});
