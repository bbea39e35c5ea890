/**
 * Signed-in requests while Redis is down: `session.grace`.
 *
 * The risk: with sessions in Redis, an outage leaves the gateway unable to tell a live session
 * from a revoked, expired or invented one. Failing open (any well-formed cookie gets in) hands
 * the apps to whoever sends a cookie-shaped string while the store is down, which an attacker can
 * help along (CWE-636, "not failing securely"; the class of Envoy ext_authz
 * `failure_mode_allow`). Failing closed for everyone is safe but takes every signed-in user
 * offline for a Redis restart. `session.grace` is the documented middle: a session this instance
 * itself verified within the last `grace` may go on from its local cache; nothing else may.
 *
 * The adversarial review planted "grace ignored" (a signed-in request while Redis was stopped got
 * 200 with grace 0) and no test noticed: the outage tests never made a signed-in request.
 *
 * The safe answer, checked here against a real redis-server that the test stops:
 * - within grace of its last verification here, a cached session works (200);
 * - past grace, the same session gets 503, never 200;
 * - a session this instance never verified, or an id nobody issued, gets 503 at any time;
 * - with grace 0 (the default), a cached session gets 503 as soon as the short cache lapses;
 * - when Redis comes back (empty: it keeps nothing), the session is gone: sign in again.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ManualClock } from '../../src/clock.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { PortalClient } from '../helpers/portal.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

const PW = 'cobalt meadow lantern quarry 5820';
const COOKIE = 'portcullis_dev_session';
const GRACE_MS = 5 * 60_000;
const T0 = Date.UTC(2026, 5, 1, 8, 0, 0);

let redis: RedisServer;
const clock = new ManualClock(T0);
let withGrace: TestGateway;
let noGrace: TestGateway;

function config(storeUrl: string, grace: string): string {
  return `
store: "${storeUrl}"
session: { idle_timeout: 30m, absolute_timeout: 12h, grace: ${grace} }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "builtin:whoami"
    rules:
      - { networks: ["127.0.0.0/8"], policy: password }
`;
}

before(async () => {
  redis = await startRedis();
  const users = [
    { name: 'alice', password: PW, groups: ['staff'] },
    { name: 'bob', password: PW, groups: ['staff'] },
  ];
  const prefix = randomBytes(4).toString('hex');
  withGrace = await startTestGateway(config(`${redis.url}?prefix=grace-${prefix}:`, '5m'), { users, clock });
  noGrace = await startTestGateway(config(`${redis.url}?prefix=nograce-${prefix}:`, '0s'), { users, clock });
});

after(async () => {
  await withGrace?.close();
  await noGrace?.close();
  await redis?.stop();
});

async function signIn(gw: TestGateway, user: string): Promise<PortalClient> {
  const c = new PortalClient(gw.port, 'mail.test', { localAddress: '127.0.0.1' });
  const r = await c.login(user, PW, '/inbox');
  assert.equal(r.status, 303, r.head);
  assert.ok(c.cookie(COOKIE), 'signed in');
  return c;
}

async function eventually(what: string, f: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) assert.fail(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('session.grace: the cached session works within grace, 503 past it, and nothing unverified ever gets 200', { timeout: 60_000 }, async () => {
  // alice's session is verified by each gateway (a signed-in request); bob's never is
  const alice = await signIn(withGrace, 'alice');
  const aliceNoGrace = await signIn(noGrace, 'alice');
  const bob = await signIn(withGrace, 'bob');
  assert.equal((await alice.get('/inbox')).status, 200);
  assert.equal((await aliceNoGrace.get('/inbox')).status, 200);
  const verifiedAt = clock.now();
  const bobCookie = bob.cookie(COOKIE)!;
  const invented = randomBytes(32).toString('base64url');
  const asCookie = (id: string) => ({ cookieHeader: `${COOKIE}=${id}` });

  await redis.stop();
  await eventually('the store to notice the outage', () => !withGrace.gw.rt.stores.healthy() && !noGrace.gw.rt.stores.healthy());

  clock.set(verifiedAt + 3_000); // past the 2 s local cache: every lookup now asks the store
  assert.equal((await alice.get('/inbox')).status, 200, 'within grace the cached session goes on');
  assert.equal((await aliceNoGrace.get('/inbox')).status, 503, 'without grace: 503 once the cache lapses');
  assert.equal((await bob.request('GET', '/inbox', asCookie(bobCookie))).status, 503, 'a session never verified here: 503');
  assert.equal((await alice.request('GET', '/inbox', asCookie(invented))).status, 503, 'an id nobody issued: 503');

  clock.set(verifiedAt + GRACE_MS - 1_000);
  assert.equal((await alice.get('/inbox')).status, 200, 'still within grace');
  assert.equal((await alice.request('GET', '/inbox', asCookie(invented))).status, 503);

  clock.set(verifiedAt + GRACE_MS + 1_000);
  const past = await alice.get('/inbox');
  assert.equal(past.status, 503, 'past grace: 503, never 200');
  assert.equal((await alice.request('GET', '/inbox', asCookie(invented))).status, 503);

  // Redis returns, empty: the session is gone, the gateway recovers by itself
  await redis.start();
  await eventually('the store to reconnect', () => withGrace.gw.rt.stores.healthy(), 15_000);
  const after = await alice.get('/inbox');
  assert.notEqual(after.status, 200, 'the session did not survive the store losing it');
  assert.notEqual(after.status, 503, 'the gateway answers again');
});

test(
  'within grace, a session is still held to its absolute timeout',
  { timeout: 60_000 },
  async () => {
    await eventually('the store to be up', () => withGrace.gw.rt.stores.healthy(), 15_000);
    const start = clock.now();
    const late = await signIn(withGrace, 'alice');
    // keep the session alive (idle) until just before its 12 h absolute timeout
    for (let t = start + 20 * 60_000; t < start + 12 * 3_600_000 - 60_000; t += 20 * 60_000) {
      clock.set(t);
      assert.equal((await late.get('/inbox')).status, 200);
    }
    clock.set(start + 12 * 3_600_000 - 30_000);
    assert.equal((await late.get('/inbox')).status, 200, 'verified just before the absolute timeout');
    await redis.stop();
    await eventually('the outage', () => !withGrace.gw.rt.stores.healthy());
    clock.set(start + 12 * 3_600_000 + 60_000); // within grace of the last check, past the absolute timeout
    const r = await late.get('/inbox');
    await redis.start();
    assert.notEqual(r.status, 200, 'a session past its absolute timeout must not be served from the grace cache');
  },
);
