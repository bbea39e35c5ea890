/**
 * Several instances act as one: two gateways on two ports share one Redis (a unique key prefix
 * per run keeps this file apart from the rest of the suite). A session made on A works on B; a
 * brute force split across A and B is stopped at the same count as on one instance; a session
 * revoked on A is refused on B at once; lockdown on A applies on B. Then a Redis this test starts
 * itself is stopped mid-run: sign-ins fail closed with 503, the gateway stays up, and service
 * comes back by itself when Redis does.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { PortalClient } from '../helpers/portal.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

const REDIS = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const PW = 'quartz harbour lantern meadow 4471';
const KEY = randomBytes(32).toString('base64');
const COOKIE = 'portcullis_dev_session';

let up: Upstream;
let a: TestGateway;
let b: TestGateway;

function config(storeUrl: string, upstream: string): string {
  return `
store: "${storeUrl}"
networks:
  office: ["127.0.0.1/32"]
lockdown: { networks: [office] }
login_limits:
  per_user: { max_failures: 5, window: 15m, lockout: 15m }
  per_ip: { max_failures: 1000, window: 15m, block: 15m }
  spray: { distinct_users: 1000, window: 10m, block: 1h }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${upstream}"
    rules:
      - { paths: ["/public"], policy: bypass }
      - { policy: password }
`;
}

async function pair(prefix: string): Promise<[TestGateway, TestGateway]> {
  const url = `${REDIS}${REDIS.includes('?') ? '&' : '?'}prefix=${prefix}`;
  const users = [
    { name: 'alice', password: PW, groups: ['staff'] },
    { name: 'bob', password: PW, groups: ['staff'] },
    { name: 'carol', password: PW, groups: ['staff'] },
  ];
  const env = { ...process.env, PORTCULLIS_SECRET_KEY: KEY };
  const x = await startTestGateway(config(url, up.url), { users, env });
  const y = await startTestGateway(config(url, up.url), { users, env });
  return [x, y];
}

before(async () => {
  up = await startUpstream();
  [a, b] = await pair(`pc-test-${randomBytes(6).toString('hex')}:`);
});

after(async () => {
  await a?.close();
  await b?.close();
  await up?.close();
});

/** Poll until `f` is true (pub/sub is asynchronous: a few ms), at most `ms`. */
async function eventually(f: () => Promise<boolean>, ms = 1000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await f()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return f();
}

test('sign in on A, use the session on B', async () => {
  const ca = new PortalClient(a.port, 'mail.test', { localAddress: '127.0.0.1' });
  const r = await ca.login('alice', PW, '/inbox');
  assert.equal(r.status, 303);
  const id = ca.cookie(COOKIE)!;
  assert.ok(id);
  const cb = new PortalClient(b.port, 'mail.test', { localAddress: '127.0.0.1' });
  cb.jar.set(COOKIE, id);
  const onB = await cb.get('/inbox');
  assert.equal(onB.status, 200);
  assert.equal(JSON.parse(onB.body).headers['remote-user'], 'alice');
});

test('a brute force split across A and B is throttled at the same count as on one instance', async () => {
  const statuses: number[] = [];
  for (let i = 0; i < 8; i++) {
    const gw = i % 2 === 0 ? a : b;
    const c = new PortalClient(gw.port, 'mail.test', { localAddress: '127.0.0.2' });
    const r = await c.login('bob', `wrong guess number ${i}`);
    statuses.push(r.status);
  }
  // max_failures 5: five 401s, then every attempt on either instance is refused before hashing
  assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
});

test('a session revoked on A is refused on B at once', async () => {
  const ca = new PortalClient(a.port, 'mail.test', { localAddress: '127.0.0.1' });
  assert.equal((await ca.login('carol', PW, '/')).status, 303);
  const id = ca.cookie(COOKIE)!;
  const cb = new PortalClient(b.port, 'mail.test', { localAddress: '127.0.0.1' });
  cb.jar.set(COOKIE, id);
  assert.equal((await cb.get('/x')).status, 200, 'B knows (and caches) the session');
  const out = await ca.logout();
  assert.equal(out.status, 200);
  assert.ok(await eventually(async () => (await cb.get('/x')).status === 401, 500), 'B refuses the revoked session within 500 ms');
});

test('lockdown on A applies on B', async () => {
  const outside = () => new PortalClient(b.port, 'mail.test', { localAddress: '127.0.0.2' }).get('/public');
  assert.equal((await outside()).status, 200);
  const { setLockdown } = await import('../../src/access/lockdown.js');
  await setLockdown(a.gw.rt, true, 'test');
  try {
    assert.ok(await eventually(async () => (await outside()).status === 403), 'B denies outside lockdown.networks');
  } finally {
    await setLockdown(a.gw.rt, false, 'test');
  }
  assert.ok(await eventually(async () => (await outside()).status === 200), 'off on A restores B');
});

test('Redis stopped mid-run: sign-ins get 503, the gateway stays up, and recovers by itself', async () => {
  let redis: RedisServer | null = await startRedis();
  let gw: TestGateway | null = null;
  try {
    gw = await startTestGateway(config(`${redis.url}?prefix=outage:`, up.url), {
      users: [{ name: 'alice', password: PW, groups: ['staff'] }],
      env: { ...process.env, PORTCULLIS_SECRET_KEY: KEY },
    });
    const c = () => new PortalClient(gw!.port, 'mail.test', { localAddress: '127.0.0.1' });
    assert.equal((await c().login('alice', PW)).status, 303);
    await redis.stop();
    const during = await c().login('alice', PW);
    assert.equal(during.status, 503, 'fail closed while Redis is down');
    assert.equal((await c().get('/public')).status, 200, 'bypass paths and the gateway itself stay up');
    assert.equal((await c().get('/.portcullis/healthz')).status, 200);
    await redis.start();
    assert.ok(await eventually(async () => (await c().login('alice', PW)).status === 303, 8000), 'sign-ins work again once Redis is back');
  } finally {
    await gw?.close();
    await redis?.stop();
    redis = null;
  }
});
