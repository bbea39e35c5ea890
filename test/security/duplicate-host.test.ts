/**
 * Two Host headers. Node keeps the first `Host` of a request and silently drops the others, while
 * a proxy in front, a WAF, a log pipeline or the app behind may read the last one (or join them):
 * the request is judged for one host and acted on for another. That ambiguity is the basis of
 * Host-header routing and cache-poisoning attacks (James Kettle, "Practical HTTP Host header
 * attacks", 2013, and "Cracking the lens", 2017), and HTTP is explicit about it: a server MUST
 * answer 400 to a request with more than one Host field (RFC 9112 §3.2; the same rule in RFC 7230
 * §5.4 that haproxy/haproxy#1299 cites).
 *
 * The safe answer: the gateway reads the raw header list (node's merged view cannot tell) and
 * refuses a request with two or more Host fields, in any letter case, with 400 before anything
 * else looks at it: on the proxy path, on WebSocket upgrades and on the reserved /.portcullis/
 * routes (portal and forward-auth). Nothing reaches an app. One Host field works as before.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp } from '../helpers/raw-http.js';

const OFFICE = '127.0.0.1';
const PROXY = '127.0.0.3';
let up: Upstream;
let gw: TestGateway;

before(async () => {
  up = await startUpstream();
  gw = await startTestGateway(`
trusted_proxies: ["${PROXY}/32"]
networks: { office: ["${OFFICE}/32"] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    websocket: true
    rules:
      - { paths: ["/inbox", "/socket"], networks: [office], policy: bypass }
      - { networks: [office], policy: password }
  - name: admin
    hosts: ["admin.test"]
    upstream: "${up.url}"
    rules: [ { policy: deny } ]
`);
});

after(async () => {
  await gw?.close();
  await up?.close();
});

function req(target: string, hosts: string[], extra: string[] = []): string {
  return [`GET ${target} HTTP/1.1`, ...hosts, 'Connection: close', ...extra, '', ''].join('\r\n');
}

const WS = ['Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='];
const DOUBLES = [
  ['Host: mail.test', 'Host: admin.test'],
  ['Host: admin.test', 'Host: mail.test'],
  ['Host: mail.test', 'Host: mail.test'],
  ['Host: mail.test', 'host: admin.test'],
  ['HOST: mail.test', 'Host: mail.test', 'hOsT: mail.test'],
];

test('a proxied request with two Host headers gets 400 and reaches no app', async () => {
  const before = up.requests.length;
  for (const hosts of DOUBLES) {
    const r = await rawHttp(gw.port, req('/inbox', hosts), { localAddress: OFFICE });
    assert.equal(r.status, 400, `${hosts.join(' | ')}: ${r.head}`);
  }
  assert.equal(up.requests.length, before);
});

test('a WebSocket upgrade with two Host headers gets 400 and reaches no app', async () => {
  const before = up.requests.length;
  for (const hosts of DOUBLES) {
    const r = await rawHttp(gw.port, req('/socket', hosts, WS).replace('Connection: close', 'Connection: Upgrade'), { localAddress: OFFICE });
    assert.equal(r.status, 400, `${hosts.join(' | ')}: ${r.head}`);
  }
  assert.equal(up.requests.length, before);
});

test('the portal and forward-auth refuse two Host headers with 400', async () => {
  for (const hosts of DOUBLES) {
    const login = await rawHttp(gw.port, req('/.portcullis/login', hosts), { localAddress: OFFICE });
    assert.equal(login.status, 400, `login ${hosts.join(' | ')}`);
    const health = await rawHttp(gw.port, req('/.portcullis/healthz', hosts), { localAddress: OFFICE });
    assert.equal(health.status, 400, `healthz ${hosts.join(' | ')}`);
    const fa = await rawHttp(
      gw.port,
      req('/.portcullis/authz/forward-auth', hosts, ['X-Forwarded-Proto: http', 'X-Forwarded-Host: mail.test', 'X-Forwarded-Uri: /inbox', `X-Forwarded-For: ${OFFICE}`]),
      { localAddress: PROXY },
    );
    assert.equal(fa.status, 400, `forward-auth ${hosts.join(' | ')}`);
  }
});

test('one Host header works as before on every path', async () => {
  assert.equal((await rawHttp(gw.port, req('/inbox', ['Host: mail.test']), { localAddress: OFFICE })).status, 200);
  assert.equal((await rawHttp(gw.port, req('/.portcullis/healthz', ['Host: mail.test']), { localAddress: OFFICE })).status, 200);
  assert.equal((await rawHttp(gw.port, req('/.portcullis/login', ['Host: mail.test']), { localAddress: OFFICE })).status, 200);
  const fa = await rawHttp(
    gw.port,
    req('/.portcullis/authz/forward-auth', ['Host: auth.test'], ['X-Forwarded-Proto: http', 'X-Forwarded-Host: mail.test', 'X-Forwarded-Uri: /inbox', `X-Forwarded-For: ${OFFICE}`]),
    { localAddress: PROXY },
  );
  assert.equal(fa.status, 200);
});
