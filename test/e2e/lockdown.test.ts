/**
 * Lockdown over real sockets, as an admin would use it in an incident: one call to the admin
 * listener, and at once nothing opened before it reaches the app any more — not a signed-in
 * session, not a WebSocket that came in on a bypass rule from outside the lockdown networks.
 * It survives a restart on the same data directory, and `off` gives access back.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import WebSocket from 'ws';
import { request } from 'undici';
import { Gateway } from '../../src/main.js';
import { TEST_PARAMS } from '../../src/auth/password.js';
import { silentLogger } from '../../src/audit/logger.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';

const OFFICE = '127.0.0.1';
const OUTSIDER = '127.0.0.2';

let up: Upstream;
let tg: TestGateway;
let gw: Gateway;

before(async () => {
  up = await startUpstream();
  tg = await startTestGateway(`
networks:
  office: ["${OFFICE}/32"]
lockdown: { networks: [office] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    websocket: true
    rules:
      - { paths: ["/public/**"], policy: bypass }
      - { policy: password }
`);
  gw = tg.gw;
});

after(async () => {
  await gw?.close().catch(() => undefined);
  await tg?.dir.cleanup();
  await up?.close();
});

async function admin(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const token = (await readFile(gw.rt.config.admin.tokenFile, 'utf8')).trim();
  const r = await request(`http://127.0.0.1:${gw.adminPort}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: r.statusCode, json: (await r.body.json()) as Record<string, unknown> };
}

function openSocket(path: string, from: string, cookie?: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}${path}`, {
      headers: { host: 'mail.test', ...(cookie ? { cookie } : {}) },
      localAddress: from,
    });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
}

function echo(ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    ws.once('message', (m) => resolve(m.toString()));
    ws.once('close', () => reject(new Error('closed')));
    ws.send(text);
  });
}

/** Resolves when the socket closes; rejects if it is still open after 5 s. */
function closed(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    const timer = setTimeout(() => reject(new Error('the WebSocket is still open')), 5000);
    ws.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

test('lockdown on revokes a live session and closes WebSockets opened before it; it persists across a restart; off restores access', async () => {
  const s = await gw.rt.sessions.create({ user: 'alice', amr: ['pwd', 'otp'], pending: 'none', ip: OFFICE });
  const cookie = `portcullis_dev_session=${s.id}`;

  // before: the session reaches the app, and so does an outsider on the bypass path
  const signedIn = await rawHttp(gw.port, get('/inbox', 'mail.test', [`Cookie: ${cookie}`]), { localAddress: OFFICE });
  assert.equal(signedIn.status, 200);
  assert.equal(JSON.parse(signedIn.body).headers['remote-user'], 'alice');
  assert.equal((await rawHttp(gw.port, get('/public/news', 'mail.test'), { localAddress: OUTSIDER })).status, 200);
  const outsiderWs = await openSocket('/public/live', OUTSIDER);
  const sessionWs = await openSocket('/stream', OFFICE, cookie);
  assert.equal(await echo(outsiderWs, 'ping'), 'ping');
  assert.equal(await echo(sessionWs, 'pong'), 'pong');

  // the switch
  const on = await admin('POST', '/api/lockdown', { on: true, by: 'e2e' });
  assert.equal(on.status, 200);
  assert.equal(on.json.on, true);
  assert.equal(on.json.sessionsRevoked, 1);
  assert.equal(on.json.connectionsClosed, 2);
  await Promise.all([closed(outsiderWs), closed(sessionWs)]);

  // after: the session is gone even from inside the lockdown networks; outsiders get 403
  const seen = up.requests.length;
  const revoked = await rawHttp(gw.port, get('/inbox', 'mail.test', [`Cookie: ${cookie}`]), { localAddress: OFFICE });
  assert.ok(revoked.status === 401 || revoked.status === 302, `signed out (got ${revoked.status})`);
  const outsider = await rawHttp(gw.port, get('/public/news', 'mail.test'), { localAddress: OUTSIDER });
  assert.equal(outsider.status, 403);
  assert.match(outsider.body, /temporarily disabled/);
  await assert.rejects(openSocket('/public/live', OUTSIDER), /403/);
  assert.equal(up.requests.length, seen, 'nothing reached the app');
  // inside the lockdown networks, what needs no session still works
  assert.equal((await rawHttp(gw.port, get('/public/news', 'mail.test'), { localAddress: OFFICE })).status, 200);
  const audit = await readFile(gw.rt.config.audit.file!, 'utf8');
  assert.match(audit, /"event":"lockdown_changed"[^\n]*"reason":"on by e2e"/);

  // a restart on the same data directory comes back locked down
  await gw.close();
  gw = await Gateway.start({
    configFile: tg.configFile,
    port: 0,
    host: '127.0.0.1',
    logger: silentLogger(),
    argon2: TEST_PARAMS,
    watch: false,
    announce: () => undefined,
  });
  assert.equal(gw.rt.lockdown.on, true);
  assert.equal((await rawHttp(gw.port, get('/public/news', 'mail.test'), { localAddress: OUTSIDER })).status, 403);
  const status = await admin('GET', '/api/lockdown');
  assert.equal(status.json.on, true);
  assert.equal(status.json.by, 'e2e');

  // off restores access; the revoked session stays revoked
  const off = await admin('POST', '/api/lockdown', { on: false });
  assert.equal(off.status, 200);
  assert.equal(off.json.on, false);
  assert.equal((await rawHttp(gw.port, get('/public/news', 'mail.test'), { localAddress: OUTSIDER })).status, 200);
  const ws = await openSocket('/public/live', OUTSIDER);
  assert.equal(await echo(ws, 'back'), 'back');
  ws.close();
  const old = await rawHttp(gw.port, get('/inbox', 'mail.test', [`Cookie: ${cookie}`]), { localAddress: OFFICE });
  assert.notEqual(old.status, 200);
});

test('the admin listener is not the gateway: admin routes are not served on app hosts, and the gateway port is not the admin port', async () => {
  assert.notEqual(gw.adminPort, gw.port);
  const r = await rawHttp(gw.port, get('/api/lockdown', 'mail.test'), { localAddress: OFFICE });
  assert.notEqual(r.status, 200);
  const readyz = await request(`http://127.0.0.1:${gw.adminPort}/readyz`);
  assert.equal(readyz.statusCode, 200);
  assert.deepEqual(await readyz.body.json(), { status: 'ready' });
  // loopback listener: metrics need no token, and show the upstream histogram fed by the proxy
  const m = await request(`http://127.0.0.1:${gw.adminPort}/metrics`);
  assert.equal(m.statusCode, 200);
  const text = await m.body.text();
  assert.match(text, /^portcullis_upstream_duration_seconds_count\{app="mail",status_class="2xx"\} [1-9]/m);
  assert.match(text, /^portcullis_lockdown 0$/m);
});

test('a gateway whose admin listener cannot bind refuses to start, naming the listener', async () => {
  const { createServer } = await import('node:net');
  const { writeFile } = await import('node:fs/promises');
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
  const taken = (blocker.address() as { port: number }).port;
  const file = `${tg.configFile}.taken.yaml`;
  const text = (await readFile(tg.configFile, 'utf8')).replace(/^admin: \{ listen: "127\.0\.0\.1:0"/m, `admin: { listen: "127.0.0.1:${taken}"`);
  assert.ok(text.includes(`127.0.0.1:${taken}`));
  await writeFile(file, text);
  try {
    await assert.rejects(
      Gateway.start({ configFile: file, port: 0, host: '127.0.0.1', logger: silentLogger(), argon2: TEST_PARAMS, watch: false, announce: () => undefined }),
      /admin listener 127\.0\.0\.1:\d+: .*EADDRINUSE/,
    );
  } finally {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  }
});
