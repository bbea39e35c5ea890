/**
 * IP addresses and CIDR sets: the vocabulary of every network rule. One address must have one
 * spelling (or `::ffff:192.0.2.1` slips past a rule for 192.0.2.1), and a range must mean what
 * the admin wrote (or `10.0.0.1/8` silently becomes a /8 nobody reviewed).
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { CidrSet, coversEveryone, parseCidr } from '../../src/net/cidr.js';
import { bytesToIpv6, ipv6ToBytes, maskBytes, normaliseIp, parseIp, sourceKey } from '../../src/net/ip.js';

describe('parseIp / normaliseIp', () => {
  it('gives every address one canonical spelling (RFC 5952)', () => {
    assert.deepEqual(parseIp('192.0.2.1'), { family: 4, address: '192.0.2.1' });
    assert.deepEqual(parseIp('2001:DB8:0:0:0:0:0:1'), { family: 6, address: '2001:db8::1' });
    assert.equal(normaliseIp('2001:0db8::0001'), '2001:db8::1');
    assert.equal(normaliseIp('0:0:0:0:0:0:0:1'), '::1');
    assert.equal(normaliseIp('0:0:0:0:0:0:0:0'), '::');
    assert.equal(normaliseIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1'); // first of equal runs
    assert.equal(normaliseIp('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1'); // a single 0 is not compressed
    assert.equal(normaliseIp('1:0:0:2:0:0:0:3'), '1:0:0:2::3'); // the longest run
    assert.equal(normaliseIp('1:2:3:4:5:6:7::'), '1:2:3:4:5:6:7:0');
  });

  it('turns IPv4-mapped IPv6 into IPv4, whatever the spelling', () => {
    assert.deepEqual(parseIp('::ffff:192.0.2.1'), { family: 4, address: '192.0.2.1' });
    assert.equal(normaliseIp('::FFFF:192.0.2.1'), '192.0.2.1');
    assert.equal(normaliseIp('::ffff:c000:201'), '192.0.2.1');
    assert.equal(normaliseIp('0:0:0:0:0:ffff:192.0.2.1'), '192.0.2.1');
    // IPv4-compatible and other embeddings are not mapped addresses
    assert.equal(normaliseIp('::192.0.2.1'), '::c000:201');
    assert.equal(normaliseIp('64:ff9b::192.0.2.1'), '64:ff9b::c000:201');
  });

  it('refuses anything that is not exactly an address', () => {
    for (const bad of [
      '',
      ' 192.0.2.1',
      '192.0.2.1 ',
      '192.0.2.01', // octal ambiguity
      '192.0.2',
      '192.0.2.256',
      '0x7f.0.0.1',
      '2130706433',
      'fe80::1%eth0', // zone ids identify an interface, not a host
      '1::2::3',
      '1:2:3:4:5:6:7:8:9',
      '00000::1',
      '::ffff:192.0.2.01',
      '[::1]',
      'localhost',
      'a'.repeat(46),
    ]) {
      assert.equal(parseIp(bad), null, JSON.stringify(bad));
    }
  });

  it('ipv6ToBytes returns null for malformed text instead of throwing', () => {
    // `::` must stand for at least one group; more than eight groups is not an address
    assert.equal(ipv6ToBytes('1:2:3:4:5:6:7:8::9'), null);
    assert.equal(ipv6ToBytes('1:2:3:4:5:6:7::8:9'), null);
    assert.equal(ipv6ToBytes('1:2:3:4::5:6:7:8'), null);
    assert.equal(ipv6ToBytes('1:2:3:4:5:6::1.2.3.4'), null);
    assert.deepEqual(Array.from(ipv6ToBytes('::ffff:1.2.3.4')!), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 1, 2, 3, 4]);
  });

  it('masks and groups sources for throttling', () => {
    assert.deepEqual(Array.from(maskBytes(Uint8Array.from([192, 0, 2, 255]), 25)), [192, 0, 2, 128]);
    assert.equal(bytesToIpv6(maskBytes(ipv6ToBytes('2001:db8:1:2:3:4:5:6')!, 64)), '2001:db8:1:2::');
    assert.equal(sourceKey('2001:db8:1:2:3:4:5:6', 64), '2001:db8:1:2::/64');
    assert.equal(sourceKey('2001:db8:1:2:ffff::1', 64), '2001:db8:1:2::/64'); // same subscriber, same key
    assert.equal(sourceKey('::ffff:192.0.2.1', 64), '192.0.2.1');
    assert.equal(sourceKey('192.0.2.1', 64), '192.0.2.1');
  });
});

describe('parseCidr', () => {
  it('parses IPv4, IPv6 and single hosts into canonical text', () => {
    assert.deepEqual(parseCidr('10.0.0.0/8'), { ok: true, cidr: { family: 4, network: '10.0.0.0', prefix: 8, text: '10.0.0.0/8' } });
    assert.deepEqual(parseCidr('2001:DB8::/32'), { ok: true, cidr: { family: 6, network: '2001:db8::', prefix: 32, text: '2001:db8::/32' } });
    const host = parseCidr('192.0.2.7');
    assert.ok(host.ok);
    assert.equal(host.cidr.text, '192.0.2.7/32');
    const host6 = parseCidr('2001:db8::7');
    assert.ok(host6.ok);
    assert.equal(host6.cidr.text, '2001:db8::7/128');
  });

  it('turns IPv4-mapped ranges into IPv4 ranges', () => {
    const r = parseCidr('::ffff:10.0.0.0/104');
    assert.ok(r.ok);
    assert.equal(r.cidr.text, '10.0.0.0/8');
    const h = parseCidr('::ffff:192.0.2.1');
    assert.ok(h.ok);
    assert.equal(h.cidr.text, '192.0.2.1/32');
    assert.match(refusal('::ffff:10.0.0.0/95'), /mixes IPv4-mapped/);
  });

  it('refuses host bits, bad prefixes and stray text, suggesting the fix', () => {
    assert.match(refusal('10.0.0.1/8'), /host bits set; did you mean 10\.0\.0\.0\/8\?/);
    assert.match(refusal('2001:db8::1/32'), /did you mean 2001:db8::\/32\?/);
    assert.match(refusal('10.0.0.0/33'), /longer than 32/);
    assert.match(refusal('2001:db8::/129'), /longer than 128/);
    for (const bad of ['10.0.0.0/08', '10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/+8', '10.0.0.0/8/8', '10.0.0.0/ 8']) assert.match(refusal(bad), /invalid prefix|not a valid/, bad);
    assert.match(refusal(' 10.0.0.0/8'), /stray white space/);
    assert.match(refusal('10.0.0/8'), /not a valid/);
    assert.match(refusal('office'), /not a valid/);
    assert.equal(parseCidr(42 as unknown as string).ok, false);
  });
});

function refusal(s: string): string {
  const r = parseCidr(s);
  assert.equal(r.ok, false, s);
  return r.ok ? '' : r.error;
}

describe('coversEveryone (trusted-proxy safety net)', () => {
  it('flags ranges that would let anyone forge a client address', () => {
    for (const s of ['0.0.0.0/0', '::/0', '::ffff:0:0/96', '::ffff:0.0.0.0/96', '::/80', '::/1']) assert.equal(coversEveryone(s), true, s);
  });

  it('lets ordinary proxy ranges through', () => {
    for (const s of ['10.0.0.0/8', '0.0.0.0/1', '::ffff:10.0.0.0/104', '2001:db8::/32', '192.0.2.1', '::1/128']) assert.equal(coversEveryone(s), false, s);
  });

  it('never throws on malformed text', () => {
    for (const s of ['1:2:3:4:5:6:7:8::9/0', 'garbage/0', ':::/0', '/0', '']) assert.doesNotThrow(() => coversEveryone(s), s);
  });
});

describe('CidrSet', () => {
  const set = CidrSet.parse(['10.0.0.0/8', '2001:db8::/32', '::ffff:192.168.0.0/112', '198.51.100.7']);

  it('matches addresses in any spelling', () => {
    assert.equal(set.contains('10.1.2.3'), true);
    assert.equal(set.contains('::ffff:10.1.2.3'), true); // a dual-stack socket's view of an IPv4 peer
    assert.equal(set.contains('2001:DB8:0::5'), true);
    assert.equal(set.contains('192.168.44.1'), true);
    assert.equal(set.contains('198.51.100.7'), true);
  });

  it('matches nothing else', () => {
    for (const ip of ['11.0.0.0', '9.255.255.255', '2001:db9::1', '198.51.100.8', '192.169.0.0', 'garbage', '', '10.0.0.1/32']) {
      assert.equal(set.contains(ip), false, ip);
    }
    // IPv4 is ::ffff:0:0/96: an IPv6 range covers IPv4 peers exactly when it contains that block
    // (which is why coversEveryone refuses such ranges as trusted proxies)
    assert.equal(CidrSet.parse(['::/80']).contains('10.0.0.1'), true);
    assert.equal(CidrSet.parse(['::/96']).contains('10.0.0.1'), false);
    assert.equal(CidrSet.parse(['64:ff9b::/96']).contains('10.0.0.1'), false);
    assert.equal(CidrSet.parse(['10.0.0.0/8']).contains('::a00:1'), false); // IPv4-compatible is not IPv4
    assert.equal(CidrSet.empty.contains('10.0.0.1'), false);
  });

  it('is immutable and reports its canonical entries', () => {
    assert.deepEqual(set.toStrings(), ['10.0.0.0/8', '2001:db8::/32', '192.168.0.0/16', '198.51.100.7/32']);
    assert.equal(set.size, 4);
    assert.ok(Object.isFrozen(set));
    assert.ok(Object.isFrozen(set.entries));
    const u = set.union(CidrSet.parse(['172.16.0.0/12']));
    assert.equal(u.contains('172.16.9.9'), true);
    assert.equal(set.contains('172.16.9.9'), false);
  });

  it('refuses invalid entries when parsing', () => {
    assert.throws(() => CidrSet.parse(['10.0.0.0/8', '10.0.0.1/8']), /host bits/);
  });
});
