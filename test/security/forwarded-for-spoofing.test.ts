/**
 * X-Forwarded-For spoofing: a client choosing the address the gateway believes it has.
 *
 * The attack: every access rule, every throttle counter and every "familiar network" is keyed on
 * the client address, and that address is whatever the gateway believes. A client that sends
 * `X-Forwarded-For: 192.0.2.44` (or `Forwarded: for=...`, or `X-Real-IP`) straight to the
 * gateway, or prepends an office address to the chain a real proxy extends, walks past the
 * allowlist, and one that rotates the header on every request resets every per-source counter.
 * It is the oldest advisory of the access-proxy family: oauth2-proxy's `--trusted-ip` allowlist
 * believed the left-most X-Forwarded-For entry, so `curl -H 'X-Forwarded-For: <allowlisted>'`
 * skipped authentication (oauth2-proxy#1778; advisory GHSA-7x63-xv5r-3p2x and its follow-up
 * #3478, "walk the hop chain from the rightmost entry, skipping trusted proxies"); the same fix
 * landed in openvpn-auth-oauth2#964 and talosctl-oidc#127 (CWE-290). nginx's realip module,
 * Tomcat's RemoteIpValve and `proxy-addr` (Express, fastify's `trustProxy`) draw the same line.
 *
 * The safe answer: forwarded headers count only when the peer that wrote them is a configured
 * trusted proxy, and only the part of the chain that trusted proxies wrote: the chain is walked
 * from the right, skipping trusted proxies, and the first address that is not one is the client
 * (RFC 7239 `Forwarded` alike; proto and host only from elements trusted proxies wrote). From
 * anyone else every forwarded header is ignored and the peer address is the client, so a
 * spoofed header neither opens an allowlist nor resets a counter.
 *
 * Moved here from test/unit/client-ip.test.ts (resolveClient: untrusted peers and the walk),
 * test/e2e/gateway-core.test.ts (over real sockets) and test/e2e/login-protection.test.ts (the
 * throttle). The parser's remaining format cases stay in client-ip.test.ts; its differential
 * property test against `proxy-addr` is test/property/client-ip.property.test.ts.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, it, test } from 'node:test';
import { CidrSet } from '../../src/net/cidr.js';
import { resolveClient } from '../../src/net/client-ip.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';
import { PortalClient } from '../helpers/portal.js';

// ---------------------------------------------------------------------------------------------
// resolveClient, the one place the client address is decided
// ---------------------------------------------------------------------------------------------

const proxies = CidrSet.parse(['10.0.0.0/8', '2001:db8:ffff::/48']);
type H = Record<string, string | string[] | undefined>;
const viaProxy = (headers: H, peer = '10.0.0.2') => resolveClient(peer, headers, proxies, 'http');

describe('resolveClient: untrusted peers', () => {
  const forged: H = {
    'x-forwarded-for': '192.0.2.10',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'mail.example.org',
    forwarded: 'for=192.0.2.11;proto=https;host=mail.example.org',
    'x-real-ip': '192.0.2.12',
  };

  it('ignores every forwarded header from a peer that is not a trusted proxy', () => {
    assert.deepEqual(resolveClient('198.51.100.7', forged, proxies, 'http'), {
      ip: '198.51.100.7',
      proto: 'http',
      host: null,
      viaTrustedProxy: false,
    });
    assert.deepEqual(resolveClient('198.51.100.7', forged, proxies, 'https').proto, 'https');
  });

  it('believes the same headers from a trusted proxy', () => {
    assert.deepEqual(viaProxy(forged), { ip: '192.0.2.10', proto: 'https', host: 'mail.example.org', viaTrustedProxy: true });
  });

  it('trusts nobody when no proxy is configured', () => {
    const r = resolveClient('10.0.0.2', forged, CidrSet.empty, 'https');
    assert.deepEqual(r, { ip: '10.0.0.2', proto: 'https', host: null, viaTrustedProxy: false });
  });

  it('normalises the peer address', () => {
    assert.equal(resolveClient('::ffff:198.51.100.7', forged, proxies, 'http').ip, '198.51.100.7');
    assert.equal(resolveClient('2001:DB8:0:0::1', {}, proxies, 'http').ip, '2001:db8::1');
    // an IPv4-mapped trusted proxy is the same proxy
    assert.equal(resolveClient('::ffff:10.0.0.2', forged, proxies, 'http').ip, '192.0.2.10');
  });
});

describe('resolveClient: the right-most untrusted walk (X-Forwarded-For chains)', () => {
  it('takes the right-most address that is not a trusted proxy', () => {
    // a client-supplied "1.1.1.1" on the left must not win over the address the proxy saw
    assert.equal(viaProxy({ 'x-forwarded-for': '1.1.1.1, 192.0.2.10' }).ip, '192.0.2.10');
    assert.equal(viaProxy({ 'x-forwarded-for': '1.1.1.1, 192.0.2.10, 10.1.1.1, 10.2.2.2' }).ip, '192.0.2.10');
  });

  it('joins repeated headers before walking', () => {
    assert.equal(viaProxy({ 'x-forwarded-for': ['1.1.1.1', '192.0.2.10, 10.1.1.1'] }).ip, '192.0.2.10');
  });

  it('takes the left-most entry when every entry is a trusted proxy', () => {
    assert.equal(viaProxy({ 'x-forwarded-for': '10.3.3.3, 10.1.1.1' }).ip, '10.3.3.3');
  });

  it('stops at a malformed entry and keeps the last trusted hop', () => {
    assert.equal(viaProxy({ 'x-forwarded-for': '192.0.2.10, garbage' }).ip, '10.0.0.2');
    assert.equal(viaProxy({ 'x-forwarded-for': '192.0.2.10, garbage, 10.1.1.1' }).ip, '10.1.1.1');
    assert.equal(viaProxy({ 'x-forwarded-for': '192.0.2.10, , 10.1.1.1' }).ip, '10.1.1.1');
    assert.equal(viaProxy({ 'x-forwarded-for': '192.0.2.10,unknown' }).ip, '10.0.0.2');
    assert.equal(viaProxy({ 'x-forwarded-for': '192.0.2.010' }).ip, '10.0.0.2');
    assert.equal(viaProxy({ 'x-forwarded-for': 'fe80::1%eth0' }).ip, '10.0.0.2');
    assert.equal(viaProxy({ 'x-forwarded-for': '192.0.2.10 10.1.1.1' }).ip, '10.0.0.2');
  });
});

describe('resolveClient: the right-most untrusted walk (RFC 7239 Forwarded)', () => {
  it('walks for= right to left like X-Forwarded-For', () => {
    assert.equal(viaProxy({ forwarded: 'for=1.1.1.1, for=192.0.2.43, for=10.1.1.1' }).ip, '192.0.2.43');
    assert.equal(viaProxy({ forwarded: 'for=10.3.3.3, for=10.1.1.1' }).ip, '10.3.3.3');
  });

  it('takes proto and host from elements written by trusted proxies only', () => {
    const r = viaProxy({ forwarded: 'for=1.1.1.1;proto=http;host=evil.example, for=192.0.2.43;proto=https;host=Mail.Example.org' });
    assert.deepEqual(r, { ip: '192.0.2.43', proto: 'https', host: 'mail.example.org', viaTrustedProxy: true });
    // the element naming the untrusted client did not say: nothing further left is believed
    const r2 = viaProxy({ forwarded: 'for=1.1.1.1;proto=http;host=evil.example, for=192.0.2.43' });
    assert.deepEqual([r2.proto, r2.host], ['http', null]);
  });
});

// ---------------------------------------------------------------------------------------------
// The allowlist over real sockets: 127.0.0.3 is the one trusted proxy, 127.0.0.2 an outsider
// ---------------------------------------------------------------------------------------------

describe('the allowlist over real sockets', () => {
  const OUTSIDER = '127.0.0.2';
  const PROXY = '127.0.0.3';
  let up: Upstream;
  let gw: TestGateway;

  before(async () => {
    up = await startUpstream();
    gw = await startTestGateway(`
trusted_proxies: ["${PROXY}/32"]
networks:
  office: ["127.0.0.1/32", "192.0.2.0/24"]
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    websocket: true
    rules:
      - { paths: ["/healthz"], policy: bypass }
      - { networks: [office], policy: bypass }
      - { paths: ["/private/**"], policy: password }
      - { policy: deny }
`);
  });

  after(async () => {
    await gw?.close();
    await up?.close();
  });

  test('through a trusted proxy, the client is the right-most untrusted X-Forwarded-For entry', async () => {
    const inOffice = await rawHttp(gw.port, get('/a', 'mail.test', ['X-Forwarded-For: 203.0.113.9, 192.0.2.44']), { localAddress: PROXY });
    assert.equal(inOffice.status, 200);
    const seen = JSON.parse(inOffice.body).headers;
    assert.equal(seen['x-forwarded-for'], '192.0.2.44');
    const outside = await rawHttp(gw.port, get('/a', 'mail.test', ['X-Forwarded-For: 192.0.2.44, 203.0.113.9']), { localAddress: PROXY });
    assert.equal(outside.status, 403);
    const fwd = await rawHttp(gw.port, get('/a', 'mail.test', ['Forwarded: for="[2001:db8::1]:4711", for=192.0.2.7']), { localAddress: PROXY });
    assert.equal(fwd.status, 200, 'RFC 7239 Forwarded from a trusted proxy is honoured');
  });

  test('the same forwarded headers from an untrusted peer are ignored', async () => {
    for (const h of ['X-Forwarded-For: 192.0.2.44', 'Forwarded: for=192.0.2.44', 'X-Real-IP: 192.0.2.44', 'X-Forwarded-For: 127.0.0.1']) {
      const r = await rawHttp(gw.port, get('/a', 'mail.test', [h]), { localAddress: OUTSIDER });
      assert.equal(r.status, 403, h);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The throttle: a rotated header is not a new source
// ---------------------------------------------------------------------------------------------

describe('the login throttle over real sockets', () => {
  const PROXY = '127.0.0.3';
  const OUTSIDER = '127.0.0.2';
  const PW = 'velvet anchor prairie comet 8812';
  let up: Upstream;

  before(async () => {
    up = await startUpstream();
  });
  after(async () => {
    await up?.close();
  });

  // the configuration of test/e2e/login-protection.test.ts, where this test came from
  const config = () => `
trusted_proxies: ["${PROXY}/32"]
networks:
  office: ["192.0.2.0/24"]
  anywhere: ["0.0.0.0/0", "::/0"]
password_policy: { min_length: 8, blocklist: common, min_strength: 3, on_weak: deny }
login_limits: { hash_concurrency: 8 }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    rules:
      - { networks: [anywhere], policy: password }
`;

  test('rotating X-Forwarded-For through an untrusted peer resets no counter', async () => {
    const gw = await startTestGateway(config(), { users: [{ name: 'ann', password: PW, groups: [] }] });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 25; i++) {
        const c = new PortalClient(gw.port, 'mail.test', { localAddress: OUTSIDER, headers: [`X-Forwarded-For: 10.9.${i}.1`] });
        statuses.push((await c.login(`user${i}`, 'wrong password')).status);
      }
      // spray limit: 10 distinct users from one source, whatever the header says
      assert.deepEqual(statuses.slice(0, 10), Array(10).fill(401));
      assert.ok(statuses.slice(10).every((s) => s === 429), JSON.stringify(statuses));
    } finally {
      await gw.close();
    }
  });
});
