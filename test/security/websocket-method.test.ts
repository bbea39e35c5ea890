/**
 * WebSocket method confusion: the gate judged an upgrade on the client's method, and the
 * WebSocket path then always sent GET to the app. A CORS rule as common as
 * `{ methods: [OPTIONS], policy: bypass }` (the same idea as oauth2-proxy's
 * `--skip-auth-preflight`, bitly/oauth2_proxy#370) therefore opened a tunnel to
 * `OPTIONS /ws/terminal` + `Upgrade: websocket` from a network no rule admits: the gate saw
 * OPTIONS (bypass), the app saw GET (a WebSocket handshake) and answered 101. For a web terminal
 * or Guacamole that is an unauthenticated shell. It is the class of "the check and the use read
 * different things" that forward-auth peers keep meeting (oauth2-proxy #735 and #1549: which
 * method does the auth sub-request judge?).
 *
 * The safe answer: a WebSocket handshake is a GET (RFC 6455 §4.1), so any other method with
 * `Upgrade` is refused with 405 before the gate, and the gate decides on exactly the request the
 * app then receives (the same method, the same target). A GET upgrade still needs a pass.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp } from '../helpers/raw-http.js';

const OFFICE = '127.0.0.1';
const OUTSIDER = '127.0.0.2';
let up: Upstream;
let gw: TestGateway;
let cookie: string;

before(async () => {
  up = await startUpstream();
  gw = await startTestGateway(`
networks: { office: ["${OFFICE}/32"] }
apps:
  - name: term
    hosts: ["term.test"]
    upstream: "${up.url}"
    websocket: true
    rules:
      - { methods: [OPTIONS], policy: bypass }
      - { networks: [office], policy: password }
      - { policy: deny }
`);
  const s = await gw.gw.rt.sessions.create({ user: 'alice', amr: ['pwd'], pending: 'none', ip: OFFICE });
  cookie = `portcullis_dev_session=${s.id}`;
});

after(async () => {
  await gw?.close();
  await up?.close();
});

function upgrade(method: string, target: string, extra: string[] = []): string {
  return [
    `${method} ${target} HTTP/1.1`,
    'Host: term.test',
    'Connection: Upgrade',
    'Upgrade: websocket',
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    ...extra,
    '',
    '',
  ].join('\r\n');
}

test('OPTIONS + Upgrade: websocket under a bypass rule for OPTIONS gets 405, never a tunnel', async () => {
  const before = up.requests.length;
  const r = await rawHttp(gw.port, upgrade('OPTIONS', '/ws/terminal'), { localAddress: OUTSIDER });
  assert.equal(r.status, 405, r.head);
  assert.equal(r.headers.allow, 'GET');
  assert.doesNotMatch(r.head, /^HTTP\/1\.1 101/);
  assert.equal(up.requests.length, before, 'the app never saw the upgrade');
});

test('every method but GET is refused with 405 before the gate, for outsiders and signed-in users alike', async () => {
  const before = up.requests.length;
  for (const method of ['OPTIONS', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'PROPFIND', 'MKCOL']) {
    for (const [from, extra] of [
      [OUTSIDER, []],
      [OFFICE, [`Cookie: ${cookie}`]],
    ] as const) {
      const r = await rawHttp(gw.port, upgrade(method, '/ws/terminal', [...extra]), { localAddress: from });
      assert.equal(r.status, 405, `${method} from ${from}: ${r.head}`);
    }
  }
  assert.equal(up.requests.length, before, 'none of them reached the app');
});

test('a GET upgrade from a network no rule admits is refused and never reaches the app', async () => {
  const before = up.requests.length;
  const r = await rawHttp(gw.port, upgrade('GET', '/ws/terminal'), { localAddress: OUTSIDER });
  assert.equal(r.status, 403, r.head);
  const anon = await rawHttp(gw.port, upgrade('GET', '/ws/terminal'), { localAddress: OFFICE });
  assert.equal(anon.status, 401, 'office without a session: sign in first');
  assert.equal(up.requests.length, before);
});

test('a GET upgrade with a pass reaches the app as exactly that request: GET, the same target', async () => {
  const before = up.requests.length;
  const target = '/ws/terminal?cols=80&path=%2Fhome';
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}${target}`, { headers: { host: 'term.test', cookie }, localAddress: OFFICE });
  const echoed = await new Promise<string>((resolve, reject) => {
    ws.once('open', () => ws.send('whoami'));
    ws.once('message', (m) => resolve(m.toString()));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
  ws.close();
  assert.equal(echoed, 'whoami');
  const seen = up.requests.slice(before);
  assert.equal(seen.length, 1);
  assert.deepEqual({ method: seen[0]!.method, url: seen[0]!.url, upgrade: seen[0]!.upgrade }, { method: 'GET', url: target, upgrade: true });
  assert.equal(seen[0]!.headers['remote-user'], 'alice');
});
