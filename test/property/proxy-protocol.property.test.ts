/**
 * Property tests for the PROXY protocol v1/v2 decoder (src/net/proxy-protocol.ts). Whoever can
 * reach the listener writes the first bytes of the connection, so the decoder must answer any
 * bytes with one of its documented verdicts (it is documented never to throw: stricter than "only
 * catalogued errors"), and its verdict must depend only on the bytes it was given, in order:
 *
 * - a verdict reached on a prefix never changes when more bytes arrive (otherwise it read past the
 *   end of its buffer, or guessed at bytes it had not seen);
 * - an `ok` header is decided by its own `consumed` bytes, whatever the proxied stream after it
 *   says (otherwise it read past the header into the client's data).
 *
 * Inputs: random bytes behind each signature, valid headers as HAProxy and AWS NLB write them
 * (addresses, ports, TLVs), and those headers mutated (bytes flipped, cut, inserted, lengths
 * changed) and followed by the start of an HTTP request.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import fc from 'fast-check';
import { parseProxyHeader, V1_MAX_LENGTH, V2_MAX_PAYLOAD, V2_SIGNATURE, type ProxyHeaderResult } from '../../src/net/proxy-protocol.js';
import { normaliseIp } from '../../src/net/ip.js';

const RUNS = Number(process.env.PROPERTY_RUNS ?? 1500);

const port = fc.integer({ min: 0, max: 65535 });

/** A v1 header line as a sender writes it, and the source it announces. */
const v1 = fc.oneof(
  fc.tuple(fc.ipV4(), fc.ipV4(), port, port).map(([s, d, sp, dp]) => ({ bytes: Buffer.from(`PROXY TCP4 ${s} ${d} ${sp} ${dp}\r\n`), source: { address: s, port: sp } })),
  fc.tuple(fc.ipV6(), fc.ipV6(), port, port).map(([s, d, sp, dp]) => ({ bytes: Buffer.from(`PROXY TCP6 ${s} ${d} ${sp} ${dp}\r\n`), source: { address: normaliseIp(s)!, port: sp } })),
  fc.string({ unit: 'grapheme-ascii', maxLength: 40 }).map((s) => ({ bytes: Buffer.from(`PROXY UNKNOWN${s ? ` ${s}` : ''}\r\n`), source: null })),
);

const tlvs = fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 24 })), { maxLength: 4 }).map((list) =>
  Buffer.concat(
    list.map(([type, value]) => {
      const head = Buffer.alloc(3);
      head[0] = type;
      head.writeUInt16BE(value.length, 1);
      return Buffer.concat([head, Buffer.from(value)]);
    }),
  ),
);

function v2Header(cmd: number, famTrans: number, addr: Buffer, extra: Buffer): Buffer {
  const fixed = Buffer.alloc(4);
  fixed[0] = 0x20 | cmd;
  fixed[1] = famTrans;
  fixed.writeUInt16BE(addr.length + extra.length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, addr, extra]);
}

/** A v2 header as HAProxy or AWS NLB write it, and the source it announces. */
const v2 = fc.oneof(
  fc.tuple(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 4, maxLength: 4 }), port, port, tlvs).map(([s, d, sp, dp, t]) => {
    const a = Buffer.alloc(12);
    a.set(s, 0);
    a.set(d, 4);
    a.writeUInt16BE(sp, 8);
    a.writeUInt16BE(dp, 10);
    return { bytes: v2Header(1, 0x11, a, t), source: { address: Array.from(s).join('.'), port: sp } };
  }),
  fc.tuple(fc.uint8Array({ minLength: 16, maxLength: 16 }), port, tlvs).map(([s, sp, t]) => {
    const a = Buffer.alloc(36);
    a.set(s, 0);
    a.writeUInt16BE(sp, 32);
    const hex = Array.from({ length: 8 }, (_, i) => ((s[2 * i]! << 8) | s[2 * i + 1]!).toString(16)).join(':');
    return { bytes: v2Header(1, 0x21, a, t), source: { address: normaliseIp(hex)!, port: sp } };
  }),
  fc.tuple(fc.uint8Array({ maxLength: 40 }), fc.constantFrom(0x00, 0x11, 0x21, 0x31, 0x12)).map(([a, ft]) => ({ bytes: v2Header(0, ft, Buffer.from(a), Buffer.alloc(0)), source: null })),
  fc.tuple(fc.uint8Array({ minLength: 216, maxLength: 216 }), tlvs).map(([a, t]) => ({ bytes: v2Header(1, 0x31, Buffer.from(a), t), source: null })),
  fc.uint8Array({ maxLength: 20 }).map((a) => ({ bytes: v2Header(1, 0x00, Buffer.from(a), Buffer.alloc(0)), source: null })),
);

const valid = fc.oneof(v1, v2);
const stream = fc.constantFrom(Buffer.alloc(0), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.from('\x16\x03\x01\x02\x00\x01'), Buffer.from('PROXY TCP4 6.6.6.6 6.6.6.6 1 1\r\n'));

type Mutation = { at: number; kind: 'flip' | 'set' | 'cut' | 'insert' | 'delete'; byte: number };
const mutation = fc.record({ at: fc.nat(300), kind: fc.constantFrom('flip', 'set', 'cut', 'insert', 'delete'), byte: fc.integer({ min: 0, max: 255 }) }) as fc.Arbitrary<Mutation>;

function mutate(buf: Buffer, ms: readonly Mutation[]): Buffer {
  let b = Buffer.from(buf);
  for (const m of ms) {
    if (b.length === 0) break;
    const i = m.at % b.length;
    if (m.kind === 'flip') b[i] = b[i]! ^ (1 << (m.byte & 7));
    else if (m.kind === 'set') b[i] = m.byte;
    else if (m.kind === 'cut') b = b.subarray(0, i);
    else if (m.kind === 'insert') b = Buffer.concat([b.subarray(0, i), Buffer.from([m.byte]), b.subarray(i)]);
    else b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1)]);
  }
  return b;
}

/** Any bytes: random, behind a signature, valid, or mutated valid headers followed by a stream. */
const anyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
  fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.concat([Buffer.from('PROXY '), a])),
  fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.concat([V2_SIGNATURE, a])),
  fc.tuple(valid, stream).map(([h, s]) => Buffer.concat([h.bytes, s])),
  // v2 with a right length but any bytes where the TLVs go (a TLV cut short at the very end)
  fc.tuple(fc.constantFrom(0x11, 0x21, 0x31), fc.uint8Array({ maxLength: 8 }), stream).map(([ft, extra, s]) => {
    const addrLen = ft === 0x11 ? 12 : ft === 0x21 ? 36 : 216;
    return Buffer.concat([v2Header(1, ft, Buffer.alloc(addrLen, 7), Buffer.from(extra)), s]);
  }),
  // v1 lines around the 107-byte limit
  fc.tuple(fc.integer({ min: 84, max: 96 }), fc.constantFrom('\r\n', '\r', '', '\n'), stream).map(([k, end, s]) => Buffer.concat([Buffer.from(`PROXY UNKNOWN ${'x'.repeat(k)}${end}`), s])),
  fc.tuple(valid, fc.array(mutation, { minLength: 1, maxLength: 4 }), stream).map(([h, ms, s]) => Buffer.concat([mutate(h.bytes, ms), s])),
);

function parse(buf: Buffer): ProxyHeaderResult {
  try {
    return parseProxyHeader(buf);
  } catch (e) {
    assert.fail(`threw ${String(e)} on ${buf.toString('hex')}`);
  }
}

function wellFormed(r: ProxyHeaderResult, buf: Buffer): void {
  assert.ok(['incomplete', 'none', 'invalid', 'ok'].includes(r.kind), r.kind);
  if (r.kind === 'invalid') assert.ok(typeof r.reason === 'string' && r.reason.length > 0);
  if (r.kind !== 'ok') return;
  assert.ok(Number.isInteger(r.consumed) && r.consumed > 0 && r.consumed <= buf.length, `consumed ${r.consumed} of ${buf.length}`);
  assert.ok(r.version === 1 ? r.consumed <= V1_MAX_LENGTH : r.consumed <= 16 + V2_MAX_PAYLOAD);
  if (r.source) {
    assert.ok(isIP(r.source.address) !== 0 && normaliseIp(r.source.address) === r.source.address, `source ${r.source.address}`);
    assert.ok(Number.isInteger(r.source.port) && r.source.port >= 0 && r.source.port <= 65535);
  }
}

describe('parseProxyHeader (property)', () => {
  it('answers any bytes with a documented verdict, and never throws', () => {
    fc.assert(
      fc.property(anyBytes, (buf) => wellFormed(parse(buf), buf)),
      { numRuns: RUNS * 2 },
    );
  });

  it('a verdict reached on a prefix never changes as more bytes arrive', () => {
    fc.assert(
      fc.property(anyBytes, (buf) => {
        const full = parse(buf);
        for (let n = 0; n <= buf.length; n++) {
          const r = parse(buf.subarray(0, n));
          if (r.kind === 'incomplete') continue;
          assert.deepEqual(r, full, `${n} of ${buf.length} bytes said ${JSON.stringify(r)}, all of them ${JSON.stringify(full)}: ${buf.toString('hex')}`);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('an accepted header is decided by its own bytes, whatever follows it', () => {
    fc.assert(
      fc.property(anyBytes, fc.uint8Array({ maxLength: 64 }), (buf, tail) => {
        const r = parse(buf);
        if (r.kind !== 'ok') return;
        const own = buf.subarray(0, r.consumed);
        assert.deepEqual(parse(Buffer.from(own)), r);
        assert.deepEqual(parse(Buffer.concat([own, Buffer.from(tail)])), r);
      }),
      { numRuns: RUNS },
    );
  });

  it('reads valid headers exactly, with any proxied stream after them', () => {
    fc.assert(
      fc.property(valid, stream, ({ bytes, source }, s) => {
        const r = parse(Buffer.concat([bytes, s]));
        assert.equal(r.kind, 'ok', `${bytes.toString('hex')}: ${JSON.stringify(r)}`);
        if (r.kind !== 'ok') return;
        assert.equal(r.consumed, bytes.length);
        assert.deepEqual(r.source, source);
      }),
      { numRuns: RUNS },
    );
  });
});
