/**
 * An app behind the gateway setting the gateway's own cookies. The app shares the host (and so
 * the cookie jar) with the gateway; if it can set `__Host-portcullis` or `portcullis_dev_session`
 * it can plant a session id of its choosing in the user's browser (session fixation through the
 * app, or "cookie tossing" when the app is less trusted than the gateway) or log the user out.
 * The filter compared the raw text before `=`, so `Set-Cookie: __Host-portcullis =evil` (a space
 * before `=`, which browsers trim from the name: RFC 6265bis §5.7) passed, and the 101 answer of a
 * WebSocket upgrade was not filtered at all. The same class as the cookie-name parsing
 * discrepancies in PortSwigger's "Cookie Chaos: How to bypass __Host and __Secure cookie
 * prefixes" (2025) and the cookie-parsing differentials of "Cookie Bugs: Smuggling & Injection"
 * (2023): the gateway and the browser must agree on what a name is.
 *
 * The safe answer: compute the name as a browser stores it (the text before the first `;`, the
 * name before the first `=`, trimmed of whitespace; no `=` at all makes a nameless cookie whose
 * value is sent bare) and drop the Set-Cookie line when that name (or, for a nameless cookie, the
 * name its value would be read as) is one of the gateway's cookies in any letter case, with or
 * without `__Host-`/`__Secure-`, with any whitespace or control around it; a line with control
 * characters (which browsers refuse or truncate) is dropped. Ordinary app cookies pass unchanged.
 * 101 answers are filtered the same way.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';

/** Lines an app might write to (re)set a gateway cookie. */
const EVIL = [
  'portcullis_dev_session=evil; Path=/',
  'portcullis_dev_session =evil; Path=/',
  'portcullis_dev_session\t=evil',
  'portcullis_dev_session= evil',
  'Portcullis_Dev_Session=evil',
  'PORTCULLIS_DEV_SESSION=evil',
  '__Host-portcullis=evil; Secure; Path=/',
  '__Host-portcullis =evil; Secure; Path=/',
  '__Host-portcullis\t\t=evil; Secure; Path=/',
  '__HOST-portcullis=evil; Secure; Path=/',
  '__host-PORTCULLIS=evil; Secure; Path=/',
  '__Secure-portcullis=evil; Secure; Path=/',
  '__Secure-__Host-portcullis=evil; Secure',
  '=portcullis_dev_session=evil',
  ' = portcullis_dev_session=evil',
  '=\t__Host-portcullis=evil; Secure; Path=/',
  'portcullis_dev_session',
  'portcullis_dev_session; Path=/',
  '__Host-portcullis; Secure; Path=/',
  '\u00a0portcullis_dev_session=evil',
  'portcullis_dev_csrf=fixed; Path=/',
  '__Host-portcullis-csrf=fixed; Secure; Path=/',
  'portcullis_admin=x',
  'portcullis=x',
];
/** Ordinary app cookies, which must pass unchanged. */
const GOOD = ['theme=dark; Path=/', 'session=app-own; HttpOnly', 'xportcullis_dev_session=1', 'my_portcullis_dev_session=1', '=banner-seen', 'lang'];

let app: Server;
let appPort: number;
let gw: TestGateway;
let upgrades = 0;

before(async () => {
  app = createServer((_req, res) => {
    res.setHeader('set-cookie', [...EVIL, ...GOOD]);
    res.setHeader('content-type', 'text/plain');
    res.end('ok');
  });
  app.on('upgrade', (_req, socket: Socket) => {
    upgrades++;
    const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo='];
    for (const c of [...EVIL, ...GOOD]) lines.push(`Set-Cookie: ${c}`);
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    setTimeout(() => socket.end(), 50);
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  appPort = (app.address() as AddressInfo).port;
  gw = await startTestGateway(`
apps:
  - name: app
    hosts: ["app.test"]
    upstream: "http://127.0.0.1:${appPort}"
    websocket: true
    rules: [ { policy: bypass } ]
`);
});

after(async () => {
  await gw?.close();
  app?.closeAllConnections();
  await new Promise<void>((resolve) => app?.close(() => resolve()));
});

function setCookies(head: string): string[] {
  return head
    .split('\r\n')
    .filter((l) => /^set-cookie:/i.test(l))
    .map((l) => l.slice(l.indexOf(':') + 1).replace(/^[ \t]+/, ''));
}

test('no spelling of a gateway cookie name set by the app reaches the browser; app cookies do', async () => {
  const r = await rawHttp(gw.port, get('/', 'app.test'));
  assert.equal(r.status, 200);
  const passed = setCookies(r.head);
  assert.deepEqual(passed, GOOD, `passed: ${JSON.stringify(passed)}`);
});

test('the 101 answer to a WebSocket upgrade is filtered the same way', async () => {
  const before = upgrades;
  const r = await rawHttp(
    gw.port,
    ['GET /ws HTTP/1.1', 'Host: app.test', 'Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', '', ''].join('\r\n'),
  );
  assert.equal(upgrades, before + 1, 'the upgrade reached the app');
  assert.equal(r.status, 101, r.head);
  assert.match(r.head, /\r\nupgrade: websocket/i);
  assert.match(r.head, /\r\nconnection: upgrade/i);
  const passed = setCookies(r.head);
  assert.deepEqual(passed, GOOD, `passed: ${JSON.stringify(passed)}`);
});
