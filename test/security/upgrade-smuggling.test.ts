/**
 * Smuggling through `Upgrade`: h2c and friends. A client that asks a proxy to pass on
 * `Upgrade: h2c` (with `HTTP2-Settings` and `Connection: Upgrade, HTTP2-Settings`) and gets a 101
 * from an h2c-capable app then speaks HTTP/2 straight to the app over the same connection: every
 * later request on it is unseen by the proxy's rules (Bishop Fox, "h2c Smuggling: Request
 * Smuggling Via HTTP/2 Cleartext", 2020, the h2csmuggler tool; traefik/traefik#9341,
 * dotnet/yarp#877). WebSocket smuggling is the sibling: a proxy that believes an upgrade happened
 * when the app in fact answered something else leaves a raw pipe to the app's HTTP parser.
 *
 * The safe answer: the only upgrade the gateway knows is `websocket`. Any other `Upgrade` token,
 * or a list of tokens, is refused with 400 before the gate, from any network, whatever the rules;
 * an upgrade request that carries a body (content the app's parser would read as a second
 * request) is refused too; the gateway pipes bytes only after the app really answered 101. A
 * plain request that merely carries `Upgrade: h2c` (node does not treat it as an upgrade unless
 * `Connection` names `upgrade`) is proxied, but neither `Upgrade`, `HTTP2-Settings` nor the
 * client's `Connection` reach the app.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp } from '../helpers/raw-http.js';
import { connect } from 'node:net';

const OFFICE = '127.0.0.1';
let up: Upstream;
let gw: TestGateway;

before(async () => {
  up = await startUpstream();
  gw = await startTestGateway(`
networks: { office: ["${OFFICE}/32"] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    websocket: true
    rules:
      - { networks: [office], policy: bypass }
      - { policy: deny }
  - name: plain
    hosts: ["plain.test"]
    upstream: "${up.url}"
    rules:
      - { policy: bypass }
`);
});

after(async () => {
  await gw?.close();
  await up?.close();
});

const H2C = ['Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA', 'Connection: Upgrade, HTTP2-Settings'];

function request(lines: string[]): string {
  return [...lines, '', ''].join('\r\n');
}

/** One request on a kept-alive connection: resolves with the status once the whole body is in. */
function once(port: number, text: string, localAddress: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, localAddress }, () => s.write(text));
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('no complete answer'));
    }, 5000);
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length - end - 4 < len) return;
      clearTimeout(timer);
      s.destroy();
      resolve(Number(head.split(' ')[1]));
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

test('Upgrade: h2c is refused with 400 before the gate, even where a bypass rule admits the client', async () => {
  const before = up.requests.length;
  for (const host of ['mail.test', 'plain.test']) {
    const r = await rawHttp(gw.port, request(['GET / HTTP/1.1', `Host: ${host}`, ...H2C]), { localAddress: OFFICE });
    assert.equal(r.status, 400, `${host}: ${r.head}`);
    assert.doesNotMatch(r.head, /^HTTP\/1\.1 101/);
  }
  assert.equal(up.requests.length, before, 'the app never saw the h2c upgrade');
});

test('any upgrade token but websocket, and any list of tokens, is refused with 400', async () => {
  const before = up.requests.length;
  const ws = ['Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='];
  const cases: string[][] = [
    ['Upgrade: H2C'],
    ['Upgrade: TLS/1.0'],
    ['Upgrade: websocket, h2c'],
    ['Upgrade: h2c, websocket'],
    ['Upgrade: websocket', 'Upgrade: h2c'],
    ['Upgrade: websocket/13'],
    ['Upgrade: websocketx'],
    ['Upgrade: PRI'],
  ];
  for (const c of cases) {
    const r = await rawHttp(gw.port, request(['GET /socket HTTP/1.1', 'Host: mail.test', 'Connection: Upgrade', ...c, ...ws]), { localAddress: OFFICE });
    assert.equal(r.status, 400, `${c.join(' | ')}: ${r.head}`);
  }
  assert.equal(up.requests.length, before);
});

test('a WebSocket upgrade carrying a body is refused: no second request hidden behind the handshake', async () => {
  const before = up.requests.length;
  const ws = ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='];
  const smuggled = 'GET /admin HTTP/1.1\r\nHost: mail.test\r\n\r\n';
  const cl = await rawHttp(gw.port, request(['GET /socket HTTP/1.1', 'Host: mail.test', ...ws, `Content-Length: ${smuggled.length}`]) + smuggled, { localAddress: OFFICE });
  assert.equal(cl.status, 400, cl.head);
  const te = await rawHttp(
    gw.port,
    request(['GET /socket HTTP/1.1', 'Host: mail.test', ...ws, 'Transfer-Encoding: chunked']) + `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`,
    { localAddress: OFFICE },
  );
  assert.equal(te.status, 400, te.head);
  assert.equal(up.requests.length, before);
});

test('a plain request carrying Upgrade: h2c is proxied without Upgrade, HTTP2-Settings or the client Connection header', async () => {
  for (const connection of ['HTTP2-Settings', 'keep-alive', 'close, HTTP2-Settings', null]) {
    const lines = ['GET /inbox HTTP/1.1', 'Host: mail.test', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA', 'X-Keep: 1'];
    if (connection) lines.push(`Connection: ${connection}`);
    const before = up.requests.length;
    assert.equal(await once(gw.port, request(lines), OFFICE), 200, String(connection));
    const seen = up.requests.slice(before);
    assert.equal(seen.length, 1, `${connection}: the app saw the request once, as a plain request`);
    assert.equal(seen[0]!.upgrade, false);
    const names = seen[0]!.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    assert.ok(!names.includes('upgrade'), `${connection}: no Upgrade header reached the app (${names.join(', ')})`);
    assert.ok(!names.includes('http2-settings'), `${connection}: no HTTP2-Settings header reached the app`);
    const conn = String(seen[0]!.headers.connection ?? '').toLowerCase();
    assert.doesNotMatch(conn, /upgrade|http2-settings/, `${connection}: the client's Connection did not reach the app`);
    assert.equal(seen[0]!.headers['x-keep'], '1');
  }
});
