/**
 * Limits that hold under parallel requests.
 *
 * The attack: fire many guesses at once instead of one after another. The first landing checked
 * "is this blocked?", then verified, then counted the failure: three steps with awaits between
 * them. On Redis an adversarial review sent 200 parallel wrong TOTP codes on one half-signed-in
 * session and 189 were evaluated where the limit is 5, and one burst of Basic requests tripped
 * the 24-hour account ceiling. It is the race behind Authelia's and Keycloak's brute-force
 * advisories (GHSA-... "bypass of the regulation by concurrent requests"), and the classic
 * "limit overrun" race condition of web security testing guides.
 *
 * The safe answer: each attempt is reserved before it is verified, atomically (one Lua script
 * on Redis; one synchronous step in memory): refused when blocked or when the limit is already
 * used up, else counted at once; settled afterwards (failure: block at the limit; success:
 * counts forgotten). One session verifies one code at a time; a user has a few verifications in
 * flight at most. So N parallel guesses evaluate at most as many as the limits allow, on either
 * store, for passwords, codes and app passwords alike.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AuditEvent } from '../../src/audit/events.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { hiddenField, PortalClient } from '../helpers/portal.js';
import { rawHttp } from '../helpers/raw-http.js';

const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const BURST = 200;

function config(store: string): string {
  return `
store: "${store}"
totp: { always: true }
login_limits:
  per_ip: { max_failures: 20, window: 15m, block: 15m }
  per_user: { max_failures: 5, window: 15m, lockout: 15m }
  spray: { distinct_users: 10, window: 10m, block: 1h }
  mfa: { max_failures: 5, window: 15m }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "builtin:whoami"
    rules:
      - { policy: password }
    basic_auth: { paths: ["/dav/**"] }
`;
}

for (const kind of ['memory', 'redis'] as const) {
  describe(`parallel attempts never evaluate more than the limits allow (${kind} store)`, () => {
    let redis: RedisServer | null = null;
    let tg: TestGateway;
    const events: AuditEvent[] = [];

    before(async () => {
      if (kind === 'redis') redis = await startRedis();
      tg = await startTestGateway(config(redis ? redis.url : 'memory'), {
        users: [
          { name: 'alice', password: 'correct horse battery staple' },
          { name: 'bob', password: 'tangerine otter quarry 41' },
          { name: 'carol', password: 'violet kettle harbour 77' },
        ],
      });
      const rt = tg.gw.rt;
      rt.audit.on((e) => events.push(e));
      await rt.stores.state.setTotp('bob', { secret: rt.box.seal(SECRET, 'totp:bob'), enrolledAt: rt.clock.now(), source: 'provisioned' });
      await rt.stores.state.addAppPassword('carol', { label: 'phone', hash: rt.box.hmac('app-password', 'carol\u0000the-real-app-password'), createdAt: rt.clock.now() });
    });

    after(async () => {
      await tg?.close();
      await redis?.stop();
    });

    const evaluated = (event: string, user?: string) => events.filter((e) => e.event === event && e.outcome === 'failure' && (user === undefined || e.user === user)).length;

    it(`${BURST} parallel wrong passwords for one account: at most per_user.max_failures evaluated`, async () => {
      const c = new PortalClient(tg.port, 'mail.test');
      const csrf = hiddenField((await c.get('/.portcullis/login')).body, 'csrf')!;
      const rs = await Promise.all(Array.from({ length: BURST }, (_, i) => c.post('/.portcullis/login', { csrf, username: 'alice', password: `guess-${i}` })));
      const statuses = new Set(rs.map((r) => r.status));
      for (const s of statuses) assert.ok([401, 429, 503].includes(s), `status ${s}`);
      const n = evaluated('login_failed', 'alice');
      assert.ok(n >= 1, 'some guesses were evaluated');
      assert.ok(n <= 5, `${n} guesses were checked against alice's password (limit 5)`);
      const d = await tg.gw.rt.throttle.check({ ip: '127.0.0.1', user: 'alice' });
      assert.equal(d.allowed, false, 'and the account is locked from here');
    });

    it(`${BURST} parallel wrong passwords for ${BURST} accounts from one source: at most spray.distinct_users evaluated`, async () => {
      const c = new PortalClient(tg.port, 'mail.test', { localAddress: '127.0.0.2' });
      const csrf = hiddenField((await c.get('/.portcullis/login')).body, 'csrf')!;
      const before = events.length;
      await Promise.all(Array.from({ length: BURST }, (_, i) => c.post('/.portcullis/login', { csrf, username: `user${i}`, password: 'Summer2017!' })));
      const n = events.slice(before).filter((e) => e.event === 'login_failed' && e.outcome === 'failure').length;
      assert.ok(n >= 1);
      assert.ok(n <= 10, `${n} accounts were tried from one source (spray limit 10)`);
    });

    it(`${BURST} parallel wrong codes on one half-signed-in session: at most mfa.max_failures evaluated`, async () => {
      const c = new PortalClient(tg.port, 'mail.test', { localAddress: '127.0.0.3' });
      const r = await c.login('bob', 'tangerine otter quarry 41', '/');
      assert.equal(r.status, 303);
      assert.equal(r.headers.location, '/.portcullis/mfa');
      const csrf = hiddenField((await c.get('/.portcullis/mfa')).body, 'csrf')!;
      const rs = await Promise.all(
        Array.from({ length: BURST }, (_, i) => c.post('/.portcullis/mfa', { csrf, code: String(100000 + i) })),
      );
      for (const x of rs) assert.ok([401, 429].includes(x.status), `status ${x.status}`);
      const n = evaluated('mfa_failed', 'bob');
      assert.ok(n >= 1);
      assert.ok(n <= 5, `${n} codes were evaluated (limit 5 per user and source)`);
    });

    it(`${BURST} parallel wrong app passwords over Basic: at most per_user.max_failures evaluated, and the right one still works from a familiar network`, async () => {
      const basic = (pw: string, local: string) =>
        rawHttp(
          tg.port,
          `GET /dav/cal HTTP/1.1\r\nHost: mail.test\r\nAuthorization: Basic ${Buffer.from(`carol:${pw}`).toString('base64')}\r\nConnection: close\r\n\r\n`,
          { localAddress: local },
        );
      // carol's phone has synced from 127.0.0.5 before: that network is familiar to her
      await tg.gw.rt.stores.state.addKnownNetwork('carol', '127.0.0.0/24');
      const rs = await Promise.all(Array.from({ length: BURST }, (_, i) => basic(`wrong-${i}`, '127.0.1.4')));
      for (const x of rs) assert.ok([401, 429].includes(x.status), `status ${x.status}`);
      const n = evaluated('login_failed', 'carol');
      assert.ok(n >= 1);
      assert.ok(n <= 5, `${n} app passwords were evaluated (limit 5)`);
      assert.equal((await basic('the-real-app-password', '127.0.0.5')).status, 200, 'the burst from elsewhere did not lock carol out of her familiar network');
    });
  });
}
