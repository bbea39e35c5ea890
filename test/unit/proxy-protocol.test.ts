/**
 * PROXY protocol parser, against the vectors of HAProxy's proxy-protocol.txt. The header decides
 * which client address every access rule sees, so anything but an exact header is refused.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { detectProxyHeader, parseProxyHeader, V2_MAX_PAYLOAD, V2_SIGNATURE } from '../../src/net/proxy-protocol.js';

const ascii = (s: string) => Buffer.from(s, 'latin1');

function v2(opts: { verCmd?: number; famTrans: number; addr: Buffer; tlvs?: Buffer; len?: number }): Buffer {
  const body = Buffer.concat([opts.addr, opts.tlvs ?? Buffer.alloc(0)]);
  const hdr = Buffer.alloc(4);
  hdr[0] = opts.verCmd ?? 0x21;
  hdr[1] = opts.famTrans;
  hdr.writeUInt16BE(opts.len ?? body.length, 2);
  return Buffer.concat([V2_SIGNATURE, hdr, body]);
}

function inet(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return b;
}

function inet6(src: string, dst: string, sport: number, dport: number): Buffer {
  const b = Buffer.alloc(36);
  Buffer.from(src.replace(/:/g, ''), 'hex').copy(b, 0);
  Buffer.from(dst.replace(/:/g, ''), 'hex').copy(b, 16);
  b.writeUInt16BE(sport, 32);
  b.writeUInt16BE(dport, 34);
  return b;
}

const tlv = (type: number, value: Buffer) => Buffer.concat([Buffer.from([type, value.length >> 8, value.length & 255]), value]);

describe('PROXY v1', () => {
  it('parses the example of the specification and leaves the request after it', () => {
    const wire = ascii('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n');
    const r = parseProxyHeader(wire);
    assert.deepEqual(r, { kind: 'ok', consumed: 47, source: { address: '192.168.0.1', port: 56324 }, version: 1 });
    assert.equal(wire.subarray(47).toString('latin1', 0, 14), 'GET / HTTP/1.1');
  });

  it('parses the worst cases of the specification', () => {
    assert.deepEqual(parseProxyHeader(ascii('PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n')), {
      kind: 'ok',
      consumed: 56,
      source: { address: '255.255.255.255', port: 65535 },
      version: 1,
    });
    const f = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    const tcp6 = ascii(`PROXY TCP6 ${f} ${f} 65535 65535\r\n`);
    assert.equal(tcp6.length, 104);
    assert.deepEqual(parseProxyHeader(tcp6), { kind: 'ok', consumed: 104, source: { address: f, port: 65535 }, version: 1 });
    const unknown = ascii(`PROXY UNKNOWN ${f} ${f} 65535 65535\r\n`);
    assert.equal(unknown.length, 107);
    assert.deepEqual(parseProxyHeader(unknown), { kind: 'ok', consumed: 107, source: null, version: 1 });
    assert.deepEqual(parseProxyHeader(ascii('PROXY UNKNOWN\r\n')), { kind: 'ok', consumed: 15, source: null, version: 1 });
  });

  it('normalises addresses', () => {
    const r = parseProxyHeader(ascii('PROXY TCP6 2001:DB8:0:0::1 2001:db8::2 1 2\r\n'));
    assert.ok(r.kind === 'ok');
    assert.equal(r.source?.address, '2001:db8::1');
    const m = parseProxyHeader(ascii('PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n'));
    assert.ok(m.kind === 'ok');
    assert.equal(m.source?.address, '192.0.2.1');
  });

  it('asks for more bytes until the line is complete', () => {
    const full = ascii('PROXY TCP4 192.0.2.1 192.0.2.2 1234 443\r\n');
    for (let n = 0; n < full.length; n++) assert.deepEqual(parseProxyHeader(full.subarray(0, n)), { kind: 'incomplete' }, `after ${n} bytes`);
    assert.equal(parseProxyHeader(full).kind, 'ok');
  });

  it('refuses anything but the exact syntax', () => {
    for (const line of [
      'PROXY TCP4 192.0.2.1 192.0.2.2 1234 443\n', // LF only
      'PROXY TCP4 192.0.2.1 192.0.2.2 1234 443\rX',
      'PROXY TCP4  192.0.2.1 192.0.2.2 1234 443\r\n', // two spaces
      'PROXY TCP4 192.0.2.1 192.0.2.2 1234 443 \r\n', // trailing space
      'PROXY TCP4 192.0.2.1 192.0.2.2 1234\r\n', // missing port
      'PROXY TCP4 192.0.2.1 192.0.2.2 1234 443 5\r\n',
      'PROXY tcp4 192.0.2.1 192.0.2.2 1234 443\r\n',
      'PROXY UDP4 192.0.2.1 192.0.2.2 1234 443\r\n',
      'PROXY TCP4 2001:db8::1 192.0.2.2 1234 443\r\n', // wrong family
      'PROXY TCP6 192.0.2.1 2001:db8::2 1234 443\r\n',
      'PROXY TCP6 fe80::1%eth0 fe80::2 1234 443\r\n', // zone id
      'PROXY TCP4 192.0.2.01 192.0.2.2 1234 443\r\n', // leading zero (octal?)
      'PROXY TCP4 192.0.2.256 192.0.2.2 1234 443\r\n',
      'PROXY TCP4 192.0.2.1 192.0.2.2 01234 443\r\n',
      'PROXY TCP4 192.0.2.1 192.0.2.2 65536 443\r\n',
      'PROXY TCP4 192.0.2.1 192.0.2.2 -1 443\r\n',
      'PROXY TCP4 192.0.2.1 192.0.2.2 +1 443\r\n',
      'PROXY TCP4 192.0.2.1 192.0.2.2 1234 443\t\r\n',
      'PROXY TCP4 192.0.2.1\u0000 192.0.2.2 1234 443\r\n',
      'PROXY UNKNOWNX\r\n',
      'PROXY \r\n',
    ]) {
      const r = parseProxyHeader(ascii(line));
      assert.equal(r.kind, 'invalid', JSON.stringify(line));
    }
  });

  it('refuses a line longer than 107 bytes, without waiting for its end', () => {
    const long = ascii(`PROXY UNKNOWN ${'x'.repeat(200)}`);
    assert.equal(parseProxyHeader(long.subarray(0, 105)).kind, 'incomplete');
    assert.deepEqual(parseProxyHeader(long.subarray(0, 106)), { kind: 'invalid', reason: 'v1: header longer than 107 bytes' });
    const f = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    assert.equal(parseProxyHeader(ascii(`PROXY UNKNOWN ${f} ${f} 65535 655350\r\n`)).kind, 'invalid'); // 108 bytes
  });
});

describe('PROXY v2', () => {
  it('parses a TCP over IPv4 header as HAProxy sends it', () => {
    // captured from haproxy `send-proxy-v2`, followed by the proxied request
    const wire = Buffer.concat([
      Buffer.from('0d0a0d0a000d0a515549540a2111000cac130001ac130003a6520050', 'hex'),
      ascii('GET / HTTP/1.1\r\n'),
    ]);
    assert.deepEqual(parseProxyHeader(wire), { kind: 'ok', consumed: 28, source: { address: '172.19.0.1', port: 42578 }, version: 2 });
  });

  it('parses TCP over IPv6 and normalises IPv4-mapped sources', () => {
    const r = parseProxyHeader(v2({ famTrans: 0x21, addr: inet6('2001:0db8:0000:0000:0000:0000:0000:0001', '2001:0db8:0000:0000:0000:0000:0000:0002', 40000, 443) }));
    assert.deepEqual(r, { kind: 'ok', consumed: 52, source: { address: '2001:db8::1', port: 40000 }, version: 2 });
    const m = parseProxyHeader(v2({ famTrans: 0x21, addr: inet6('0000:0000:0000:0000:0000:ffff:c000:0201', '0000:0000:0000:0000:0000:0000:0000:0001', 1, 2) }));
    assert.ok(m.kind === 'ok');
    assert.deepEqual(m.source, { address: '192.0.2.1', port: 1 });
  });

  it('skips TLVs (as AWS NLB and HAProxy add them)', () => {
    const tlvs = Buffer.concat([tlv(0x01, ascii('h2')), tlv(0xea, Buffer.concat([Buffer.from([0x01]), ascii('vpce-0123456789abcdef')])), tlv(0x04, Buffer.alloc(5))]);
    const wire = Buffer.concat([v2({ famTrans: 0x11, addr: inet([198, 51, 100, 7], [10, 0, 0, 1], 5555, 443), tlvs }), ascii('GET /')]);
    const r = parseProxyHeader(wire);
    assert.ok(r.kind === 'ok');
    assert.deepEqual(r.source, { address: '198.51.100.7', port: 5555 });
    assert.equal(wire.subarray(r.consumed).toString('latin1'), 'GET /');
  });

  it('reports no source for LOCAL (health checks), UNSPEC and UNIX', () => {
    assert.deepEqual(parseProxyHeader(v2({ verCmd: 0x20, famTrans: 0x00, addr: Buffer.alloc(0) })), { kind: 'ok', consumed: 16, source: null, version: 2 });
    // LOCAL ignores whatever address block follows
    assert.deepEqual(parseProxyHeader(v2({ verCmd: 0x20, famTrans: 0x11, addr: inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2) })), {
      kind: 'ok',
      consumed: 28,
      source: null,
      version: 2,
    });
    assert.deepEqual(parseProxyHeader(v2({ famTrans: 0x00, addr: Buffer.alloc(0) })), { kind: 'ok', consumed: 16, source: null, version: 2 });
    assert.deepEqual(parseProxyHeader(v2({ famTrans: 0x31, addr: Buffer.alloc(216) })), { kind: 'ok', consumed: 232, source: null, version: 2 });
  });

  it('asks for more bytes until the whole block is there', () => {
    const full = v2({ famTrans: 0x11, addr: inet([192, 0, 2, 1], [192, 0, 2, 2], 1, 2), tlvs: tlv(0x04, Buffer.alloc(3)) });
    for (let n = 0; n < full.length; n++) assert.deepEqual(parseProxyHeader(full.subarray(0, n)), { kind: 'incomplete' }, `after ${n} bytes`);
    assert.equal(parseProxyHeader(full).kind, 'ok');
  });

  it('refuses bad versions, commands, families, transports and lengths', () => {
    const a4 = inet([192, 0, 2, 1], [192, 0, 2, 2], 1, 2);
    const cases: Array<[string, Buffer]> = [
      ['version 1 in a v2 frame', v2({ verCmd: 0x11, famTrans: 0x11, addr: a4 })],
      ['version 3', v2({ verCmd: 0x31, famTrans: 0x11, addr: a4 })],
      ['command 2', v2({ verCmd: 0x22, famTrans: 0x11, addr: a4 })],
      ['family 4', v2({ famTrans: 0x41, addr: a4 })],
      ['transport 3', v2({ famTrans: 0x13, addr: a4 })],
      ['UDP (DGRAM)', v2({ famTrans: 0x12, addr: a4 })],
      ['UNSPEC transport', v2({ famTrans: 0x10, addr: a4 })],
      ['IPv4 block too short', v2({ famTrans: 0x11, addr: a4.subarray(0, 11) })],
      ['IPv6 block too short', v2({ famTrans: 0x21, addr: a4 })],
      ['TLV overrunning the block', v2({ famTrans: 0x11, addr: a4, tlvs: Buffer.from([0x04, 0x00, 0x09, 0, 0]) })],
      ['TLV header cut short', v2({ famTrans: 0x11, addr: a4, tlvs: Buffer.from([0x04, 0x00]) })],
      ['length beyond the bound', v2({ famTrans: 0x11, addr: a4, len: V2_MAX_PAYLOAD + 1 })],
    ];
    for (const [what, buf] of cases) assert.equal(parseProxyHeader(buf).kind, 'invalid', what);
    // the length bound is decided from the fixed part alone: no waiting for 64 KiB to arrive
    const huge = v2({ famTrans: 0x11, addr: a4, len: 0xffff });
    assert.equal(parseProxyHeader(huge.subarray(0, 16)).kind, 'invalid');
  });
});

describe('detection of plain traffic', () => {
  it('says "none" for HTTP, TLS and garbage as soon as a byte differs', () => {
    for (const s of ['GET / HTTP/1.1\r\n', 'POST /', 'PUT /x', 'PATCH /', 'PROPFIND / HTTP/1.1', 'PRI * HTTP/2.0', 'PROXZ', 'P', 'hello']) {
      const r = parseProxyHeader(ascii(s));
      assert.equal(r.kind, s === 'P' ? 'incomplete' : 'none', s);
    }
    assert.equal(parseProxyHeader(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])).kind, 'none'); // TLS ClientHello
    assert.equal(parseProxyHeader(Buffer.from('0d0a0d0a000d0a515549540b', 'hex')).kind, 'none'); // last signature byte wrong
    assert.equal(parseProxyHeader(ascii('\r\nGET /')).kind, 'none');
  });

  it('waits while the bytes are a prefix of a signature', () => {
    assert.equal(parseProxyHeader(Buffer.alloc(0)).kind, 'incomplete');
    assert.equal(parseProxyHeader(ascii('PROX')).kind, 'incomplete');
    assert.equal(parseProxyHeader(V2_SIGNATURE.subarray(0, 11)).kind, 'incomplete');
    assert.equal(detectProxyHeader(ascii('PROXY ')), 'v1');
    assert.equal(detectProxyHeader(V2_SIGNATURE), 'v2');
    assert.equal(detectProxyHeader(ascii('PROXY')), 'incomplete');
    assert.equal(detectProxyHeader(ascii('GET')), 'none');
  });
});
