/**
 * WebSocket tunnels that outlive their session. A WebSocket is authorised once, at the upgrade;
 * after that it is a pipe that can stay open for days. Sign-out and revocation closed the tunnels
 * of the session, but the idle and absolute timeouts did not: a web terminal or a Guacamole desktop
 * opened at 09:00 on a 12-hour session was still live the next morning, long after every other
 * request of that session would have been sent to the login page, and an unattended tab kept its
 * shell past the idle timeout. Peers have had the same gap: pomerium/pomerium#1279 ("Logging out of
 * pomerium doesn't cancel websocket connection"), mod_auth_mellon#170 (WebSockets not interrupted
 * when the session length runs out), warpgate#2106.
 *
 * The safe answer: a tunnel lives only as long as its session. Each open tunnel re-checks its
 * session (without touching it: tunnel traffic is not activity that extends the idle timeout)
 * at the session's own deadline and periodically in between, so expiry by idle or absolute
 * timeout, a revocation on another instance, or the user being disabled closes it; the periodic
 * check runs on real time while the deadline is judged on the gateway's clock, so it holds with a
 * fixed clock too. Tunnels without a session (a bypass rule) are not affected.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { ManualClock } from '../../src/clock.js';
import { tunnelChecks } from '../../src/proxy/websocket.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';

const OFFICE = '127.0.0.1';
const MIN = 60_000;
const clock = new ManualClock(Date.UTC(2026, 0, 5, 9, 0, 0));
let up: Upstream;
let gw: TestGateway;

before(async () => {
  tunnelChecks.everyMs = 40;
  up = await startUpstream();
  gw = await startTestGateway(
    `
networks: { office: ["${OFFICE}/32"] }
session: { idle_timeout: 30m, absolute_timeout: 2h }
apps:
  - name: term
    hosts: ["term.test"]
    upstream: "${up.url}"
    websocket: true
    rules:
      - { paths: ["/public/**"], policy: bypass }
      - { networks: [office], policy: password }
`,
    { clock, users: [{ name: 'alice', password: 'amber lantern orchid gravel 1987' }, { name: 'bob', password: 'saffron kettle glacier pylon 3310' }] },
  );
});

after(async () => {
  await gw?.close();
  await up?.close();
});

async function session(user = 'alice'): Promise<string> {
  const s = await gw.gw.rt.sessions.create({ user, amr: ['pwd'], pending: 'none', ip: OFFICE });
  return `portcullis_dev_session=${s.id}`;
}

function open(path: string, cookie?: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}${path}`, { headers: { host: 'term.test', ...(cookie ? { cookie } : {}) }, localAddress: OFFICE });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
}

/** The tunnel still answers after several re-checks have had time to run. */
async function stillOpen(ws: WebSocket, what: string): Promise<void> {
  await new Promise((r) => setTimeout(r, 10 * tunnelChecks.everyMs));
  assert.equal(ws.readyState, WebSocket.OPEN, `${what}: the tunnel is open`);
  const echoed = await new Promise<string>((resolve, reject) => {
    ws.once('message', (m) => resolve(m.toString()));
    ws.once('close', () => reject(new Error(`${what}: closed`)));
    ws.send(what);
  });
  assert.equal(echoed, what);
}

function closes(ws: WebSocket, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    const timer = setTimeout(() => reject(new Error(`${what}: the tunnel is still open`)), 3000);
    ws.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function touch(cookie: string): Promise<void> {
  const r = await rawHttp(gw.port, get('/inbox', 'term.test', [`Cookie: ${cookie}`]), { localAddress: OFFICE });
  assert.equal(r.status, 200, 'the session is live for plain requests');
}

test('a tunnel closes when its session reaches the idle timeout; tunnel traffic does not extend it', async () => {
  const cookie = await session();
  const ws = await open('/ws', cookie);
  clock.advance(20 * MIN);
  await stillOpen(ws, 'after 20 idle minutes');
  clock.advance(9 * MIN);
  await stillOpen(ws, 'after 29 idle minutes (traffic on the tunnel all along)');
  clock.advance(1 * MIN);
  await closes(ws, 'after 30 idle minutes');
  const r = await rawHttp(gw.port, get('/inbox', 'term.test', [`Cookie: ${cookie}`]), { localAddress: OFFICE });
  assert.equal(r.status, 401, 'and the session itself is over');
});

test('a tunnel of a session kept active by requests closes at the absolute timeout', async () => {
  const cookie = await session();
  const ws = await open('/ws', cookie);
  for (let t = 0; t < 100; t += 20) {
    clock.advance(20 * MIN);
    await touch(cookie);
    await stillOpen(ws, `${t + 20} minutes in, active`);
  }
  clock.advance(15 * MIN);
  await touch(cookie);
  await stillOpen(ws, '115 minutes in, active');
  clock.advance(5 * MIN);
  await closes(ws, 'at the absolute timeout');
});

test('a tunnel closes when its session disappears without a local revocation, or its user is disabled', async () => {
  const rt = gw.gw.rt;
  // a session ended elsewhere (another instance, a store-side expiry): the record is just gone
  const s = await rt.sessions.create({ user: 'alice', amr: ['pwd'], pending: 'none', ip: OFFICE });
  const ws = await open('/ws', `portcullis_dev_session=${s.id}`);
  await stillOpen(ws, 'before');
  await rt.stores.sessions.set(s.idHash, s.rec, 1); // still stored for 1 ms of the gateway clock
  clock.advance(2);
  await closes(ws, 'record gone from the store');

  const bobCookie = await session('bob');
  const bobWs = await open('/ws', bobCookie);
  await stillOpen(bobWs, 'bob before');
  const users = new Map(rt.users);
  users.set('bob', { ...users.get('bob')!, disabled: true });
  rt.users = users;
  await closes(bobWs, 'user disabled');
});

test('the deadline is judged on the gateway clock even while the store still holds the record', async () => {
  // A store's TTL can outlast the deadline: Redis expires keys on its own clock, and a reload
  // that shortens idle_timeout leaves records stored under the old, longer TTL.
  const rt = gw.gw.rt;
  const s = await rt.sessions.create({ user: 'alice', amr: ['pwd'], pending: 'none', ip: OFFICE });
  const ws = await open('/ws', `portcullis_dev_session=${s.id}`);
  await stillOpen(ws, 'before');
  await rt.stores.sessions.set(s.idHash, { ...s.rec, lastSeenAt: clock.now() - 31 * MIN }, 12 * 60 * MIN);
  await closes(ws, 'idle by the clock, still in the store');
});

test('a tunnel without a session (bypass rule) is not affected by the clock', async () => {
  const ws = await open('/public/feed');
  clock.advance(3 * 60 * MIN);
  await stillOpen(ws, 'three hours later');
  ws.close();
});
