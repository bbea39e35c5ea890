/**
 * FrameBoundary: the gateway may put its own close frame (1001 at shutdown) into a tunnel only
 * between two of the app's frames. Fed byte by byte or in odd chunks, it knows where frames end,
 * for short, 16-bit and 64-bit lengths, masked or not.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { FrameBoundary } from '../../src/proxy/ws-frames.js';

function frame(len: number, masked = false): Buffer {
  const ext = len < 126 ? Buffer.alloc(0) : len < 65536 ? Buffer.from([len >> 8, len & 0xff]) : Buffer.from([0, 0, 0, 0, (len >>> 24) & 0xff, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff]);
  const l7 = len < 126 ? len : len < 65536 ? 126 : 127;
  return Buffer.concat([Buffer.from([0x82, (masked ? 0x80 : 0) | l7]), ext, masked ? Buffer.from([1, 2, 3, 4]) : Buffer.alloc(0), Buffer.alloc(len, 7)]);
}

test('knows where frames end, whatever the chunking', () => {
  const stream = Buffer.concat([frame(0), frame(5), frame(300), frame(70_000), frame(10, true), frame(125)]);
  const ends = new Set<number>();
  let at = 0;
  for (const f of [frame(0), frame(5), frame(300), frame(70_000), frame(10, true), frame(125)]) ends.add((at += f.length));
  for (const size of [1, 3, 1000, stream.length]) {
    const b = new FrameBoundary();
    assert.ok(b.atBoundary);
    for (let i = 0; i < stream.length; i += size) {
      const end = Math.min(stream.length, i + size);
      b.feed(stream.subarray(i, end));
      if (size === 1) assert.equal(b.atBoundary, ends.has(end), `after byte ${end}`);
    }
    assert.ok(b.atBoundary, `chunks of ${size}`);
  }
});

test('inside a header or a payload is not a boundary', () => {
  const b = new FrameBoundary();
  const f = frame(300);
  b.feed(f.subarray(0, 1));
  assert.equal(b.atBoundary, false);
  b.feed(f.subarray(1, 10));
  assert.equal(b.atBoundary, false);
  b.feed(f.subarray(10));
  assert.equal(b.atBoundary, true);
});
