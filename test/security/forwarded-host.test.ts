/**
 * X-Forwarded-Host that disagrees with the host the request was routed on. The gateway picks the
 * app (and so the rules) from `Host`, but it used to tell the app, in `X-Forwarded-Host`, the
 * value a trusted proxy passed on, and a proxy such as nginx passes a client's X-Forwarded-Host
 * through unless told otherwise. The app then builds absolute links, password-reset mails,
 * OAuth redirects or cache keys from a host the client chose and the gateway never judged: the
 * "Host header poisoning" family (James Kettle, "Practical HTTP Host header attacks", 2013), and
 * the X-Forwarded-Host confusion access proxies keep fixing (oauth2-proxy #724/#729 and #957 on
 * which host a redirect is built from; qBittorrent#24457: read X-Forwarded-Host only from a
 * configured reverse proxy).
 *
 * The safe answer: route and forward consistently. The app receives in X-Forwarded-Host the host
 * the gateway routed on (the request's Host, as the client wrote it, port included, lower case),
 * whatever any client or proxy put in X-Forwarded-Host or Forwarded; the Host header itself still
 * reaches the app as today. The same holds for WebSocket upgrades.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';

const OFFICE = '127.0.0.1';
const PROXY = '127.0.0.3';
let mail: Upstream;
let other: Upstream;
let gw: TestGateway;

before(async () => {
  mail = await startUpstream({ name: 'mail' });
  other = await startUpstream({ name: 'other' });
  gw = await startTestGateway(`
trusted_proxies: ["${PROXY}/32"]
networks: { office: ["${OFFICE}/32", "192.0.2.0/24"] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${mail.url}"
    websocket: true
    rules:
      - { networks: [office], policy: bypass }
      - { policy: deny }
  - name: other
    hosts: ["other.test"]
    upstream: "${other.url}"
    rules:
      - { policy: bypass }
`);
});

after(async () => {
  await gw?.close();
  await mail?.close();
  await other?.close();
});

async function seenBy(host: string, extra: string[], from: string): Promise<{ app: string; headers: Record<string, string> }> {
  const r = await rawHttp(gw.port, get('/inbox', host, extra), { localAddress: from });
  assert.equal(r.status, 200, r.head);
  const body = JSON.parse(r.body) as { app: string; headers: Record<string, string> };
  return body;
}

test('through a trusted proxy, a client-sent X-Forwarded-Host never reaches the app: the routed host does', async () => {
  const via = ['X-Forwarded-For: 192.0.2.44', 'X-Forwarded-Host: evil.example'];
  const r = await seenBy('mail.test', via, PROXY);
  assert.equal(r.app, 'mail');
  assert.equal(r.headers['x-forwarded-host'], 'mail.test');
  assert.equal(r.headers.host, 'mail.test', 'the Host header reaches the app as before');
});

test('an X-Forwarded-Host naming another configured app neither reroutes nor reaches the app', async () => {
  const r = await seenBy('mail.test', ['X-Forwarded-For: 192.0.2.44', 'X-Forwarded-Host: other.test'], PROXY);
  assert.equal(r.app, 'mail', 'routed on Host');
  assert.equal(r.headers['x-forwarded-host'], 'mail.test');
  const fwd = await seenBy('mail.test', ['Forwarded: for=192.0.2.44;host=other.test'], PROXY);
  assert.equal(fwd.app, 'mail');
  assert.equal(fwd.headers['x-forwarded-host'], 'mail.test', "Forwarded's host= is not sent on either");
});

test('the routed host keeps its port and is lower-cased; direct clients get the same', async () => {
  assert.equal((await seenBy('mail.test:8443', ['X-Forwarded-For: 192.0.2.44', 'X-Forwarded-Host: evil.example:443'], PROXY)).headers['x-forwarded-host'], 'mail.test:8443');
  assert.equal((await seenBy('MAIL.Test', ['X-Forwarded-For: 192.0.2.44'], PROXY)).headers['x-forwarded-host'], 'mail.test');
  const direct = await seenBy('mail.test', ['X-Forwarded-Host: evil.example'], OFFICE);
  assert.equal(direct.headers['x-forwarded-host'], 'mail.test');
});

test('a WebSocket upgrade through a trusted proxy carries the routed host too', async () => {
  const before = mail.requests.length;
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/socket`, {
    headers: { host: 'mail.test', 'x-forwarded-for': '192.0.2.44', 'x-forwarded-host': 'evil.example' },
    localAddress: PROXY,
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
  ws.close();
  const seen = mail.requests.slice(before);
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.upgrade, true);
  assert.equal(seen[0]!.headers['x-forwarded-host'], 'mail.test');
});
