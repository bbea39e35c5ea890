/**
 * Client address resolution. Access rules are written against the client address, so a client
 * that can choose what the gateway believes its address is can walk past every allowlist: the
 * forwarded headers must count only when a trusted proxy wrote them, and only the part of the
 * chain that trusted proxies wrote. That security line itself (untrusted peers, the right-most
 * untrusted walk) is test/security/forwarded-for-spoofing.test.ts; this file keeps the parser's
 * format cases.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { CidrSet } from '../../src/net/cidr.js';
import { MAX_FORWARDED_HOPS, resolveClient, validHost } from '../../src/net/client-ip.js';

const proxies = CidrSet.parse(['10.0.0.0/8', '2001:db8:ffff::/48']);
type H = Record<string, string | string[] | undefined>;
const viaProxy = (headers: H, peer = '10.0.0.2') => resolveClient(peer, headers, proxies, 'http');

describe('resolveClient: X-Forwarded-For chains', () => {
  it('treats an empty header as absent', () => {
    assert.equal(viaProxy({ 'x-forwarded-for': '  ', 'x-real-ip': '192.0.2.5' }).ip, '192.0.2.5');
  });

  it('reads IPv6, IPv4-mapped and port-suffixed entries', () => {
    assert.equal(viaProxy({ 'x-forwarded-for': '2001:DB8::0:5' }).ip, '2001:db8::5');
    assert.equal(viaProxy({ 'x-forwarded-for': '::ffff:192.0.2.10' }).ip, '192.0.2.10');
    assert.equal(viaProxy({ 'x-forwarded-for': '192.0.2.10:51234' }).ip, '192.0.2.10');
    assert.equal(viaProxy({ 'x-forwarded-for': '[2001:db8::5]:443' }).ip, '2001:db8::5');
    assert.equal(viaProxy({ 'x-forwarded-for': '[2001:db8::5]' }).ip, '2001:db8::5');
    assert.equal(viaProxy({ 'x-forwarded-for': '192.0.2.10:99999' }).ip, '10.0.0.2');
    assert.equal(viaProxy({ 'x-forwarded-for': '[192.0.2.10]' }).ip, '10.0.0.2');
    // IPv6 trusted proxies in the chain are skipped like IPv4 ones
    assert.equal(viaProxy({ 'x-forwarded-for': '192.0.2.10, 2001:db8:ffff::9' }, '2001:db8:ffff::1').ip, '192.0.2.10');
  });

  it(`examines at most ${MAX_FORWARDED_HOPS} entries`, () => {
    const trustedHops = Array.from({ length: 100 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
    const r = viaProxy({ 'x-forwarded-for': ['192.0.2.10', ...trustedHops].join(', ') });
    // the walk gave up among trusted hops; it never reached (or believed) anything further left
    assert.equal(r.ip, trustedHops[trustedHops.length - MAX_FORWARDED_HOPS]);
    assert.ok(proxies.contains(r.ip));
  });

  it('treats an absurdly long header as malformed', () => {
    const r = viaProxy({ 'x-forwarded-for': `${'1.1.1.1, '.repeat(2000)}192.0.2.10` });
    assert.equal(r.ip, '10.0.0.2');
  });
});

describe('resolveClient: RFC 7239 Forwarded', () => {
  it('reads quoted IPv6 with ports, IPv4 with ports, any letter case', () => {
    assert.equal(viaProxy({ forwarded: 'For="[2001:db8:cafe::17]:4711"' }).ip, '2001:db8:cafe::17');
    assert.equal(viaProxy({ forwarded: 'for="[2001:db8:cafe::17]"' }).ip, '2001:db8:cafe::17');
    assert.equal(viaProxy({ forwarded: 'for="192.0.2.60:8080";proto=https;by=203.0.113.43' }).ip, '192.0.2.60');
    assert.equal(viaProxy({ forwarded: 'for="192.0.2.60:_hidden"' }).ip, '192.0.2.60'); // obfuscated port
    assert.equal(viaProxy({ forwarded: 'for=192.0.2.60:8080' }).ip, '10.0.0.2'); // `:` needs quoting
  });

  it('stops at unknown, obfuscated and malformed nodes', () => {
    assert.equal(viaProxy({ forwarded: 'for=192.0.2.43, for=unknown' }).ip, '10.0.0.2');
    assert.equal(viaProxy({ forwarded: 'for=192.0.2.43, for=_hidden, for=10.1.1.1' }).ip, '10.1.1.1');
    assert.equal(viaProxy({ forwarded: 'for=192.0.2.43, for=2001:db8::1' }).ip, '10.0.0.2'); // IPv6 must be bracketed and quoted
    assert.equal(viaProxy({ forwarded: 'for=192.0.2.43, for=[2001:db8::1]' }).ip, '10.0.0.2'); // brackets are not a token
    assert.equal(viaProxy({ forwarded: 'for=192.0.2.43, for' }).ip, '10.0.0.2');
    assert.equal(viaProxy({ forwarded: 'for=192.0.2.43, for=10.1.1.1;for=10.2.2.2' }).ip, '10.0.0.2'); // duplicate parameter
    assert.equal(viaProxy({ forwarded: 'for=192.0.2.43, by=10.0.0.2' }).ip, '10.0.0.2'); // no for= at all
  });

  it('does not split inside quoted strings', () => {
    // a client cannot smuggle a second element through a quoted value
    assert.equal(viaProxy({ forwarded: 'for=1.1.1.1;host="x, for=192.0.2.99", for=192.0.2.43' }).ip, '192.0.2.43');
    // an unterminated quote swallows the rest, which is then malformed
    assert.equal(viaProxy({ forwarded: 'for=192.0.2.43;host="unterminated, for=10.1.1.1' }).ip, '10.0.0.2');
  });

  it('prefers X-Forwarded-For when both are present', () => {
    assert.equal(viaProxy({ 'x-forwarded-for': '192.0.2.1', forwarded: 'for=192.0.2.2' }).ip, '192.0.2.1');
  });
});

describe('resolveClient: X-Real-IP, proto and host', () => {
  it('uses X-Real-IP only without X-Forwarded-For and Forwarded', () => {
    assert.equal(viaProxy({ 'x-real-ip': '192.0.2.5' }).ip, '192.0.2.5');
    assert.equal(viaProxy({ 'x-real-ip': '::ffff:192.0.2.5' }).ip, '192.0.2.5');
    assert.equal(viaProxy({ 'x-real-ip': '192.0.2.5, 192.0.2.6' }).ip, '10.0.0.2');
    assert.equal(viaProxy({ 'x-real-ip': 'garbage' }).ip, '10.0.0.2');
    assert.equal(viaProxy({ 'x-forwarded-for': '192.0.2.1', 'x-real-ip': '192.0.2.5' }).ip, '192.0.2.1');
  });

  it('takes the right-most X-Forwarded-Proto and refuses other schemes', () => {
    assert.equal(viaProxy({ 'x-forwarded-proto': 'https' }).proto, 'https');
    assert.equal(viaProxy({ 'x-forwarded-proto': 'HTTPS' }).proto, 'https');
    assert.equal(viaProxy({ 'x-forwarded-proto': 'http, https' }).proto, 'https');
    assert.equal(viaProxy({ 'x-forwarded-proto': 'https, http' }).proto, 'http');
    assert.equal(viaProxy({ 'x-forwarded-proto': 'javascript' }).proto, null);
    assert.equal(viaProxy({ 'x-forwarded-proto': 'https x' }).proto, null);
    assert.equal(viaProxy({}).proto, 'http'); // absent: the scheme of our own listener
    assert.equal(viaProxy({ forwarded: 'for=192.0.2.1;proto=ftp' }).proto, null);
  });

  it('takes the right-most X-Forwarded-Host and refuses junk', () => {
    assert.equal(viaProxy({ 'x-forwarded-host': 'Mail.Example.org' }).host, 'mail.example.org');
    assert.equal(viaProxy({ 'x-forwarded-host': 'evil.example, mail.example.org:8443' }).host, 'mail.example.org:8443');
    for (const bad of ['mail.example.org/x', 'user@mail.example.org', 'mail.example.org:', 'mail.example.org:99999', 'a b', 'mail..example.org', 'mail.example.org.', '-x.example', '<script>', '1.2.3', '[::1', '[mail]']) {
      assert.equal(viaProxy({ 'x-forwarded-host': bad }).host, null, bad);
    }
    assert.equal(viaProxy({}).host, null);
  });

  it('validHost accepts what a Host header may hold', () => {
    assert.equal(validHost('mail.example.org'), 'mail.example.org');
    assert.equal(validHost('localhost:8080'), 'localhost:8080');
    assert.equal(validHost('192.0.2.1:443'), '192.0.2.1:443');
    assert.equal(validHost('[2001:DB8::1]:443'), '[2001:db8::1]:443');
    assert.equal(validHost('[2001:db8::1]'), '[2001:db8::1]');
    assert.equal(validHost('[192.0.2.1]'), null);
    assert.equal(validHost('01.2.3.4'), null);
    assert.equal(validHost(''), null);
    assert.equal(validHost('a'.repeat(64) + '.example'), null);
  });
});
