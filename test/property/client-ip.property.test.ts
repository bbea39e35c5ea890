/**
 * Property tests for client-address resolution (src/net/client-ip.ts): X-Forwarded-For from a
 * trusted proxy, checked against `proxy-addr` (the resolver of Express), and invariants that hold
 * for any header at all.
 *
 * Where the two differ by design, the generator keeps to the common ground and the invariant test
 * covers the rest: portcullis stops at the first malformed or empty entry (proxy-addr skips empty
 * ones and treats junk as a client address), accepts `v4:port` and `[v6]:port`, canonicalises
 * addresses, examines at most MAX_FORWARDED_HOPS entries, and treats tab as white space.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import fc from 'fast-check';
import proxyaddr from 'proxy-addr';
import { CidrSet } from '../../src/net/cidr.js';
import { MAX_FORWARDED_HOPS, resolveClient } from '../../src/net/client-ip.js';
import { normaliseIp } from '../../src/net/ip.js';

const RUNS = Number(process.env.PROPERTY_RUNS ?? 3000);

/** Addresses from small pools, so that generated chains often hit the trusted ranges. */
const ADDRESSES = [
  '10.0.0.1', '10.0.0.2', '10.0.0.5', '10.0.0.9', '10.1.2.3', '192.0.2.1', '192.0.2.7', '192.0.2.200', '198.51.100.7', '203.0.113.9',
  '127.0.0.1', '0.0.0.0', '255.255.255.255',
  '2001:db8::1', '2001:db8::2', '2001:db8::5', '2001:db8:0:0:0:0:0:3', '2001:DB8::4', '2001:db8:1::1', 'fe80::1', '::1', '::',
  '::ffff:10.0.0.2', '::ffff:192.0.2.7', '::FFFF:198.51.100.7', '::ffff:c000:207',
];
/** Trusted ranges (none covers everyone: the config refuses those). */
const RANGES = [
  '10.0.0.0/8', '10.0.0.0/30', '10.0.0.4/31', '10.0.0.9', '192.0.2.0/25', '192.0.2.7/32', '127.0.0.0/8',
  '2001:db8::/126', '2001:db8::4/127', '2001:db8::/32', '::1/128', 'fe80::/10', '::ffff:192.0.2.0/120', '::ffff:10.0.0.2',
];

const address = fc.constantFrom(...ADDRESSES);
const spaces = fc.constantFrom('', '', ' ', '  ');
const xff = fc
  .array(fc.tuple(spaces, address, spaces), { minLength: 1, maxLength: 10 })
  .map((parts) => parts.map(([a, ip, b]) => `${a}${ip}${b}`).join(','));
const trusted = fc.oneof(
  { weight: 9, arbitrary: fc.uniqueArray(fc.constantFrom(...RANGES), { minLength: 1, maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constant([] as string[]) },
);
/** The TCP peer: mostly one the common ranges trust, so that the headers are read. */
const peerAddress = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('10.0.0.2', '::ffff:10.0.0.2', '10.0.0.9', '192.0.2.7', '2001:db8::1', '::1', '127.0.0.1') },
  { weight: 1, arbitrary: address },
);

function fakeReq(peer: string, headers: Record<string, string>): IncomingMessage {
  return { socket: { remoteAddress: peer }, connection: { remoteAddress: peer }, headers } as unknown as IncomingMessage;
}

function ours(peer: string, headers: Record<string, string | string[]>, ranges: readonly string[]): string {
  return resolveClient(peer, headers, CidrSet.parse(ranges), 'http').ip;
}

function reference(peer: string, value: string, ranges: readonly string[]): string {
  const got = proxyaddr(fakeReq(peer, { 'x-forwarded-for': value }), ranges.length > 0 ? [...ranges] : () => false);
  return normaliseIp(got) ?? got;
}

describe('resolveClient (property)', () => {
  it('agrees with proxy-addr on well-formed X-Forwarded-For chains', () => {
    fc.assert(
      fc.property(peerAddress, xff, trusted, (peer, value, ranges) => {
        assert.equal(ours(peer, { 'x-forwarded-for': value }, ranges), reference(peer, value, ranges), `peer ${peer}, XFF "${value}", trusted [${ranges.join(', ')}]`);
      }),
      { numRuns: RUNS },
    );
  });

  it('agrees when the header is sent several times (joined with commas, RFC 9110 5.3)', () => {
    fc.assert(
      fc.property(peerAddress, fc.array(xff, { minLength: 1, maxLength: 3 }), trusted, (peer, values, ranges) => {
        assert.equal(ours(peer, { 'x-forwarded-for': values }, ranges), reference(peer, values.join(','), ranges));
      }),
      { numRuns: RUNS },
    );
  });

  /** Entries a client or a sloppy proxy may write: ports, brackets, junk, obfuscation, empties. */
  const junk = fc.oneof(
    address,
    address.map((a) => (a.includes(':') ? `[${a}]:443` : `${a}:8080`)),
    fc.constantFrom('', ' ', 'unknown', '_hidden', '1.2.3', '010.0.0.1', '0x0a.0.0.1', '10.0.0.1.', '[10.0.0.1]', '2001:db8::1:80', 'fe80::1%eth0', '\t10.0.0.2', '1.2.3.4:99999', '[::1', 'a'.repeat(60)),
    fc.string({ unit: 'binary-ascii', maxLength: 12 }),
  );

  it('whatever the header says, the client is the peer or an address no trusted hop stands left of', () => {
    fc.assert(
      fc.property(peerAddress, fc.array(junk, { minLength: 0, maxLength: 40 }), trusted, (peer, entries, ranges) => {
        const set = CidrSet.parse(ranges);
        const value = entries.join(',');
        let r: string;
        try {
          r = resolveClient(peer, { 'x-forwarded-for': value }, set, 'http').ip;
        } catch (e) {
          assert.fail(`threw on ${JSON.stringify(value)}: ${String(e)}`);
        }
        const p = normaliseIp(peer)!;
        if (!set.contains(p)) return assert.equal(r, p, 'an untrusted peer is the client');
        assert.equal(normaliseIp(r), r, 'the client is a canonical address');
        // walk as the documentation says: right to left over trusted hops, at most MAX_FORWARDED_HOPS
        let expected = p;
        const list = value.split(',');
        for (let i = list.length - 1, hops = 0; i >= 0 && hops < MAX_FORWARDED_HOPS; i--, hops++) {
          const entry = parseEntryForTest(list[i]!.replace(/^[ \t]+|[ \t]+$/g, ''));
          if (entry === null) break;
          expected = entry;
          if (!set.contains(entry)) break;
        }
        assert.equal(r, expected, `peer ${peer}, XFF ${JSON.stringify(value)}, trusted [${ranges.join(', ')}]`);
      }),
      { numRuns: RUNS },
    );
  });
});

/** An X-Forwarded-For entry as the documentation of client-ip.ts describes it: v4, v6, [v6], v4:port, [v6]:port. */
function parseEntryForTest(s: string): string | null {
  let m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
  if (m) {
    if (m[2] !== undefined && Number(m[2]) > 65535) return null;
    return m[1]!.includes(':') ? normaliseIp(m[1]!) : null;
  }
  m = /^([0-9.]+):(\d{1,5})$/.exec(s);
  if (m) return Number(m[2]) <= 65535 && /^\d+\.\d+\.\d+\.\d+$/.test(m[1]!) ? normaliseIp(m[1]!) : null;
  return normaliseIp(s);
}
