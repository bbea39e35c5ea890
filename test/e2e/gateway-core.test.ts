/**
 * The gateway core over real sockets: network allowlists, host routing, path refusals that never
 * reach the app, WebSocket with and without a pass, an unreachable upstream isolated to its app.
 * (Forwarded headers through a trusted proxy and from untrusted peers:
 * test/security/forwarded-for-spoofing.test.ts; identity headers a client sends:
 * test/security/identity-header-spoofing.test.ts.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';
import { freePort } from '../helpers/ports.js';

let up: Upstream;
let gw: TestGateway;
let deadPort: number;

before(async () => {
  up = await startUpstream();
  deadPort = await freePort();
  gw = await startTestGateway(`
trusted_proxies: ["127.0.0.3/32"]
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
  - name: dead
    hosts: ["dead.test"]
    upstream: "http://127.0.0.1:${deadPort}"
    rules:
      - { policy: bypass }
`);
});

after(async () => {
  await gw?.close();
  await up?.close();
});

const OFFICE = '127.0.0.1';
const OUTSIDER = '127.0.0.2';

test('an allowlisted client reaches the app; a client from elsewhere gets 403 and the app sees nothing', async () => {
  const before = up.requests.length;
  const ok = await rawHttp(gw.port, get('/inbox', 'mail.test'), { localAddress: OFFICE });
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.body).url, '/inbox');
  const no = await rawHttp(gw.port, get('/inbox', 'mail.test'), { localAddress: OUTSIDER });
  assert.equal(no.status, 403);
  assert.match(no.body, /network/i);
  assert.equal(up.requests.length, before + 1);
});

test('an unknown host gets 421 and reaches no app', async () => {
  const before = up.requests.length;
  const r = await rawHttp(gw.port, get('/', 'evil.test'), { localAddress: OFFICE });
  assert.equal(r.status, 421);
  assert.equal(up.requests.length, before);
});

test('paths that cannot be normalised safely get 400 and never reach the app', async () => {
  const before = up.requests.length;
  for (const p of ['/public/../app', '/%2e%2e/app', '/.%2e/app', '/a%2fb', '/a%2Fb', '/a%5cb', '/a\\b', '/a%00b', '//app', '/a//b', '/app;jsessionid=1', '/a/..;/b', '/%2e/app']) {
    const r = await rawHttp(gw.port, get(p, 'mail.test'), { localAddress: OFFICE });
    assert.equal(r.status, 400, p);
  }
  assert.equal(up.requests.length, before);
});

test('the app receives exactly the path that was authorised', async () => {
  const r = await rawHttp(gw.port, get('/caf%C3%A9/x%20y?q=%2e%2e/&z=1', 'mail.test'), { localAddress: OFFICE });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).url, '/caf%C3%A9/x%20y?q=%2e%2e/&z=1');
});

test('password rules without a session answer 401 (API) or redirect to login (browser), never pass', async () => {
  const api = await rawHttp(gw.port, get('/private/x', 'mail.test'), { localAddress: OUTSIDER });
  assert.equal(api.status, 401);
  const browser = await rawHttp(gw.port, get('/private/x', 'mail.test', ['Accept: text/html']), { localAddress: OUTSIDER });
  assert.equal(browser.status, 302);
  assert.equal(browser.headers.location, '/.portcullis/login?rd=%2Fprivate%2Fx');
});

test('CONNECT and TRACE are refused; lower-case methods are not HTTP', async () => {
  const t = await rawHttp(gw.port, get('/', 'mail.test').replace('GET', 'TRACE'), { localAddress: OFFICE });
  assert.equal(t.status, 405);
  const c = await rawHttp(gw.port, 'CONNECT mail.test:443 HTTP/1.1\r\nHost: mail.test:443\r\n\r\n', { localAddress: OFFICE });
  assert.equal(c.status, 405);
  const l = await rawHttp(gw.port, get('/', 'mail.test').replace('GET', 'get'), { localAddress: OFFICE });
  assert.equal(l.status, 400);
});

test('a WebSocket echo passes with a pass, and no 101 without one', async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/socket`, { headers: { host: 'mail.test' }, localAddress: OFFICE });
  await new Promise<void>((resolve, reject) => {
    ws.on('open', () => ws.send('ping'));
    ws.on('message', (m) => {
      assert.equal(m.toString(), 'ping');
      ws.close();
      resolve();
    });
    ws.on('error', reject);
  });
  const before = up.requests.length;
  const refused = await new Promise<number>((resolve) => {
    const w = new WebSocket(`ws://127.0.0.1:${gw.port}/socket`, { headers: { host: 'mail.test' }, localAddress: OUTSIDER });
    w.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    w.on('open', () => resolve(101));
    w.on('error', () => resolve(-1));
  });
  assert.equal(refused, 403);
  assert.equal(up.requests.length, before, 'the refused upgrade never reached the app');
});

test('an unreachable upstream gives a 502 page while another app still answers', async () => {
  const dead = await rawHttp(gw.port, get('/', 'dead.test'), { localAddress: OFFICE });
  assert.equal(dead.status, 502);
  assert.match(dead.body, /not reachable/);
  const alive = await rawHttp(gw.port, get('/', 'mail.test'), { localAddress: OFFICE });
  assert.equal(alive.status, 200);
});

test('healthz answers on any host', async () => {
  const r = await rawHttp(gw.port, get('/.portcullis/healthz', 'whatever'), { localAddress: OUTSIDER });
  assert.equal(r.status, 200);
});
