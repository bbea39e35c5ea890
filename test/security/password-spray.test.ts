/**
 * Password spraying, and the attack posture.
 *
 * The attack: the 2017 one. A few common passwords, each tried once against every account,
 * slowly, from thousands of addresses. Every per-source, per-account and distinct-users limit
 * sees one guess per round and stays silent; the accounts whose owner chose a top-10 password
 * fall all the same (the bench's replay lost 43 of 9,000 with the SPEC's throttling on, as many as
 * with none). What the attack cannot hide is the password itself: the same string fails against
 * account after account. That is what Microsoft Entra's smart lockout and Entra Password
 * Protection key on (a banned or sprayed password is refused whatever the account), and what
 * Okta's and Cloudflare's "password spray" detections count. The peer advisories read the same:
 * throttling keyed only on the source or the account does not see a spray.
 *
 * The safe answer:
 * - A wrong password is fingerprinted alone (a keyed, truncated HMAC, kept only in the rate
 *   store with a TTL); failing against `same_password.accounts` distinct accounts within the
 *   window marks it sprayed for `block`, on one instance or several sharing Redis, at the same
 *   count. One `password_sprayed` event (with the accounts, as far as this instance saw them)
 *   and one notification.
 * - While marked it is refused from every network unfamiliar to the account BEFORE any hash
 *   (nothing to gain, no CPU to burn), answered exactly as a wrong password (no oracle), each
 *   refusal audited (`login_failed`, 'sprayed password').
 * - A user whose own password it is, from a network they have signed in from before, gets in
 *   only to change it (as `on_weak: change`).
 * - A user retyping their own old password is one account, never a spray.
 * - While failed sign-ins across the gateway run above `attack.threshold` a minute, networks
 *   unfamiliar to the account need a second factor. An account without one is refused there
 *   like a wrong password: "use a familiar network" after a right password would confirm it to
 *   the sprayer (test/security/password-oracle.test.ts); the owner is told instead. Familiar
 *   networks and users with a second factor are unaffected; the posture starts and ends once
 *   per episode however many instances count it.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { attachNotifier, type Notifier } from '../../src/audit/notify.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { samePasswordFingerprint } from '../../src/auth/credential.js';
import { firstFactor } from '../../src/auth/login.js';
import { TEST_PARAMS } from '../../src/auth/password.js';
import { createRuntime, type RuntimeImpl } from '../../src/bootstrap.js';
import { silentLogger } from '../../src/audit/logger.js';
import { ManualClock, cryptoRandom } from '../../src/clock.js';
import { loadConfigText } from '../../src/config/index.js';
import { startPortalApp, type InjectResponse, type PortalApp } from '../helpers/portal-app.js';
import { hiddenField } from '../helpers/portal.js';
import { usersYaml, type TestUser } from '../helpers/gateway.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

/** What a sprayer tries: here one that meets the password policy, so only the spray makes it change. */
const SPRAY = 'Welcome to Parliament 2017!';
const OFFICE = '192.0.2.10';
const OFFICE_LATER = '192.0.2.77';
const ELSEWHERE = '203.0.113.5';
const ACCOUNTS = 20; // the default same_password.accounts
const victims = Array.from({ length: 25 }, (_, i) => `v${String(i + 1).padStart(2, '0')}`);
const attacker = (i: number) => `198.51.100.${i + 1}`;
const COOKIE = 'portcullis_dev_session';

/** Status, headers (but date, length and cookies) and body with the CSRF token and echoed name taken out. */
function shape(r: InjectResponse, user: string) {
  const csrf = hiddenField(r.body, 'csrf') ?? '';
  const headers = Object.entries(r.headers)
    .filter(([k]) => k !== 'date' && k !== 'content-length' && k !== 'set-cookie')
    .map(([k, v]) => `${k}: ${String(v)}`)
    .sort();
  return { status: r.status, headers, body: r.body.replaceAll(csrf, '<csrf>').replace(`value="${user}"`, 'value="<user>"') };
}

/** Count calls of rt.hasher.verify (a sprayed password must never reach it from an unfamiliar network). */
function countHashes(rt: RuntimeImpl): { calls: number } {
  const counter = { calls: 0 };
  const hasher = rt.hasher as { verify: RuntimeImpl['hasher']['verify'] };
  const real = hasher.verify.bind(rt.hasher);
  hasher.verify = (hash, password) => {
    counter.calls++;
    return real(hash, password);
  };
  return counter;
}

function hookPosts(): { posted: Array<{ event: { event: string; user?: string; reason?: string } }>; fetch: typeof fetch } {
  const posted: Array<{ event: { event: string; user?: string; reason?: string } }> = [];
  const fetchFn = (async (_url: string, init: { body: string }) => {
    posted.push(JSON.parse(init.body));
    return new Response(null, { status: 204 });
  }) as unknown as typeof fetch;
  return { posted, fetch: fetchFn };
}

describe('a sprayed password (login_limits.same_password, defaults)', () => {
  let pa: PortalApp;
  let notifier: Notifier;
  const hook = hookPosts();
  const users: TestUser[] = [
    ...victims.map((name, i) => ({ name, password: `strong passphrase number ${i} lantern` })),
    { name: 'dana', password: SPRAY, email: 'dana@example.org' },
    { name: 'alice', password: 'granite lantern meadow 58' },
  ];

  before(async () => {
    pa = await startPortalApp(
      `
networks: { office: ["192.0.2.0/24"] }
notify: { webhook: "http://127.0.0.1:9/hook", events: [password_sprayed, password_refused_correct] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { policy: password }
`,
      { users },
    );
    notifier = attachNotifier(pa.rt, { fetch: hook.fetch });
    // dana has signed in from the office before
    const r = await pa.client('mail.test', OFFICE).login('dana', SPRAY, '/');
    assert.equal(r.status, 303);
    assert.equal(r.location, '/');
  });

  after(async () => {
    await notifier?.close();
    await pa?.close();
  });

  beforeEach(() => {
    pa.clock.advance(60_000);
  });

  const sprayed = () => pa.events.filter((e) => e.event === 'password_sprayed');
  const isSprayed = () => pa.rt.throttle.isSprayed(samePasswordFingerprint(pa.rt, SPRAY));

  it(`tried on ${ACCOUNTS - 1} accounts it is not yet marked`, async () => {
    for (let i = 0; i < ACCOUNTS - 1; i++) {
      const r = await pa.client('mail.test', attacker(i)).login(victims[i]!, SPRAY, '/');
      assert.equal(r.status, 401);
    }
    assert.equal(sprayed().length, 0);
    assert.equal(await isSprayed(), false);
  });

  it(`the ${ACCOUNTS}th account marks it: one password_sprayed event with the accounts, one notification, no password in either`, async () => {
    const r = await pa.client('mail.test', attacker(ACCOUNTS - 1)).login(victims[ACCOUNTS - 1]!, SPRAY, '/');
    assert.equal(r.status, 401);
    assert.equal(await isSprayed(), true);
    const ev = sprayed();
    assert.equal(ev.length, 1);
    const reason = ev[0]!.reason ?? '';
    assert.match(reason, new RegExp(`^tried on ${ACCOUNTS} accounts within 1h; refused from unfamiliar networks for 1d: `));
    for (const v of victims.slice(0, ACCOUNTS)) assert.ok(reason.includes(v), `${v} listed: ${reason}`);
    assert.equal(ev[0]!.ip, attacker(ACCOUNTS - 1));
    await notifier.whenIdle();
    assert.equal(hook.posted.filter((p) => p.event.event === 'password_sprayed').length, 1);
    const everything = JSON.stringify(pa.events) + JSON.stringify(hook.posted);
    assert.ok(!everything.includes(SPRAY), 'the password is never written');
    assert.ok(!everything.includes(samePasswordFingerprint(pa.rt, SPRAY)), 'nor its fingerprint');
  });

  it('from an unfamiliar network it is refused before any hash, answered exactly as a wrong password', async () => {
    const hashes = countHashes(pa.rt);
    pa.events.length = 0;
    // the owner of that password, from somewhere new, and an account it was never tried on
    const c = pa.client('mail.test', ELSEWHERE);
    const good = await c.login('dana', SPRAY, '/');
    const fresh = await pa.client('mail.test', attacker(40)).login(victims[22]!, SPRAY, '/');
    assert.equal(hashes.calls, 0, 'no hash computed for a sprayed password');
    const bad = await c.login('dana', 'not the password at all', '/');
    assert.equal(hashes.calls, 1, 'a wrong password is verified as ever');
    assert.equal(good.status, 401);
    assert.equal(fresh.status, 401);
    assert.deepEqual(shape(good, 'dana'), shape(bad, 'dana'));
    assert.equal(c.cookie(COOKIE), undefined);
    const refused = pa.events.filter((e) => e.event === 'login_failed' && e.reason === 'sprayed password');
    assert.deepEqual(
      refused.map((e) => e.user),
      ['dana', victims[22]],
      'each refusal audited',
    );
    assert.equal(pa.events.filter((e) => e.event === 'password_refused_correct').length, 0, 'nothing was verified, so nothing is known to be correct');
    assert.equal(sprayed().length, 0, 'marked once');
  });

  it('from a familiar network the right password leads only to the password change', async () => {
    const c = pa.client('mail.test', OFFICE_LATER);
    const r = await c.login('dana', SPRAY, '/');
    assert.equal(r.status, 303);
    assert.equal(r.location, '/.portcullis/password');
    const sessions = await pa.rt.stores.sessions.list('dana');
    assert.ok(sessions.some((s) => s.rec.pending === 'password'), 'the session must change the password first');
    assert.ok(pa.events.some((e) => e.event === 'weak_password' && e.user === 'dana' && e.reason === 'sprayed'));
    // the change itself: the current (sprayed) password is accepted on the change page
    const done = await c.submit('/.portcullis/password', { current: SPRAY, new: 'a much better passphrase 93', confirm: 'a much better passphrase 93' });
    assert.equal(done.status, 200, done.body);
    assert.ok((await pa.rt.stores.sessions.list('dana')).every((s) => s.rec.pending === 'none'));
  });

  it('a new password that is being sprayed is refused on the change page', async () => {
    const c = pa.client('mail.test', OFFICE);
    const r = await c.login('alice', 'granite lantern meadow 58', '/');
    assert.equal(r.status, 303);
    const refused = await c.submit('/.portcullis/password', { current: 'granite lantern meadow 58', new: SPRAY, confirm: SPRAY });
    assert.equal(refused.status, 400);
    assert.match(refused.body, /being tried against many accounts/);
  });
});

describe('a user typing their own old password is never marked', () => {
  let pa: PortalApp;
  const OLD = 'the password I had last year 2019';
  before(async () => {
    pa = await startPortalApp(
      `
networks: { office: ["192.0.2.0/24"] }
login_limits: { same_password: { accounts: 2, window: 1h, block: 24h } }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { policy: password }
`,
      { users: [{ name: 'alice', password: 'granite lantern meadow 58' }] },
    );
  });
  after(async () => pa?.close());

  it('thirty times, from the office and from home, over an hour: one account, never a spray (even at accounts: 2)', async () => {
    for (let i = 0; i < 30; i++) {
      pa.clock.advance(2 * 60_000);
      const r = await pa.client('mail.test', i % 2 ? OFFICE : ELSEWHERE).login(i % 3 ? 'alice' : 'Alice', OLD, '/');
      assert.equal(r.status, 401);
    }
    assert.equal(pa.events.filter((e) => e.event === 'password_sprayed').length, 0);
    assert.equal(await pa.rt.throttle.isSprayed(samePasswordFingerprint(pa.rt, OLD)), false);
    // and then the right one works from anywhere the rule allows
    const ok = await pa.client('mail.test', ELSEWHERE).login('alice', 'granite lantern meadow 58', '/');
    assert.equal(ok.status, 303);
  });
});

describe('the attack posture: unfamiliar networks need a second factor', () => {
  let pa: PortalApp;
  let notifier: Notifier;
  const hook = hookPosts();
  const PW = { nina: 'violet kettle harbour 77', tom: 'tangerine otter quarry 41', pat: 'copper whistle forest 31' };
  before(async () => {
    pa = await startPortalApp(
      `
networks: { office: ["192.0.2.0/24"] }
totp: { enrol: { networks: [office] } }
attack: { threshold: 5, cooldown: 30m }
notify: { webhook: "http://127.0.0.1:9/hook", events: [password_refused_correct, attack_started, attack_ended] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { policy: password }
`,
      {
        users: [
          { name: 'nina', password: PW.nina, email: 'nina@example.org' },
          { name: 'tom', password: PW.tom },
          { name: 'pat', password: PW.pat },
        ],
      },
    );
    notifier = attachNotifier(pa.rt, { fetch: hook.fetch });
    const rt = pa.rt;
    await rt.stores.state.setTotp('tom', { secret: rt.box.seal('JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', 'totp:tom'), enrolledAt: rt.clock.now(), source: 'provisioned' });
    // nina and tom have signed in from the office before
    for (const u of ['nina', 'tom'] as const) assert.equal((await pa.client('mail.test', OFFICE).login(u, PW[u], '/')).location, '/');
    // a burst of failures across the gateway: six in a minute from six networks (one network alone
    // counts at most twice a minute), above the threshold of five
    for (let i = 0; i < 6; i++) await pa.client('mail.test', `100.64.${i}.9`).login(`ghost${i}`, `guess ${i}`, '/');
    await rt.attack.tick();
    assert.equal(rt.attack.active, true);
    assert.equal(pa.events.filter((e) => e.event === 'attack_started').length, 1);
  });
  after(async () => {
    await notifier?.close();
    await pa?.close();
  });

  it('no second factor, unfamiliar network: refused exactly as a wrong password; the reason audited; the owner told', async () => {
    pa.events.length = 0;
    const c = pa.client('mail.test', ELSEWHERE);
    const good = await c.login('nina', PW.nina, '/');
    const bad = await c.login('nina', 'not it', '/');
    assert.equal(good.status, 401);
    assert.deepEqual(shape(good, 'nina'), shape(bad, 'nina'));
    const e = pa.events.find((x) => x.event === 'password_refused_correct' && x.user === 'nina');
    assert.ok(e, 'the real reason is in the audit');
    assert.match(e.reason ?? '', /^attack posture/);
    await notifier.whenIdle();
    assert.ok(hook.posted.some((p) => p.event.event === 'password_refused_correct' && p.event.user === 'nina'));
  });

  it('the same user from a familiar network is unaffected', async () => {
    const r = await pa.client('mail.test', OFFICE_LATER).login('nina', PW.nina, '/');
    assert.equal(r.status, 303);
    assert.equal(r.location, '/');
  });

  it('a user with a second factor is asked for it from an unfamiliar network, not from a familiar one', async () => {
    const away = await pa.client('mail.test', ELSEWHERE).login('tom', PW.tom, '/');
    assert.equal(away.status, 303);
    assert.equal(away.location, '/.portcullis/mfa');
    const office = await pa.client('mail.test', OFFICE).login('tom', PW.tom, '/');
    assert.equal(office.location, '/');
  });

  it('a new user at an enrolment network enrols a second factor rather than being refused', async () => {
    const r = await pa.client('mail.test', OFFICE).login('pat', PW.pat, '/');
    assert.equal(r.status, 303);
    assert.equal(r.location, '/.portcullis/enrol');
  });

  it('attack off ends it: one attack_ended, and the unfamiliar network needs only what the rule asks again', async () => {
    const r = await pa.rt.attack.off('cli:tester');
    assert.equal(r.changed, true);
    assert.equal(pa.rt.attack.active, false);
    assert.equal(pa.events.filter((e) => e.event === 'attack_ended').length, 1);
    assert.equal((await pa.rt.attack.off('cli:tester')).changed, false, 'ended once');
    const ok = await pa.client('mail.test', '203.0.113.99').login('nina', PW.nina, '/');
    assert.equal(ok.status, 303);
    assert.equal(ok.location, '/');
    await notifier.whenIdle();
    assert.deepEqual(
      hook.posted.filter((p) => p.event.event.startsWith('attack_')).map((p) => p.event.event),
      ['attack_started', 'attack_ended'],
    );
  });
});

describe('several instances on one Redis count together', () => {
  let redis: RedisServer;
  const dirs: TmpDir[] = [];
  const KEY = randomBytes(32).toString('base64');
  const users: TestUser[] = victims.map((name, i) => ({ name, password: `strong passphrase number ${i} lantern` }));

  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    for (const d of dirs) await d.cleanup();
    await redis?.stop();
  });

  /** A runtime on the shared Redis (key prefix `prefix`), as `portcullis serve` builds one. */
  async function instance(prefix: string, clock: ManualClock, events: AuditEvent[]): Promise<RuntimeImpl> {
    const dir = await tmpDir('pc-spray-redis');
    dirs.push(dir);
    const usersFile = join(dir.dir, 'users.yaml');
    await writeFile(usersFile, await usersYaml(users), { mode: 0o600 });
    await mkdir(join(dir.dir, 'data'), { recursive: true });
    const text = [
      `store: "${redis.url}?prefix=${prefix}"`,
      `data_dir: ${JSON.stringify(join(dir.dir, 'data'))}`,
      `users_file: ${JSON.stringify(usersFile)}`,
      'audit: { file: null }',
      'attack: { threshold: 10, cooldown: 30m }',
      'apps:',
      '  - { name: mail, hosts: ["mail.test"], upstream: "http://127.0.0.1:9", rules: [{ policy: password }] }',
    ].join('\n');
    const loaded = loadConfigText(text, join(dir.dir, 'portcullis.yaml'));
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.issues));
    const rt = await createRuntime(loaded.config, { clock, random: cryptoRandom, logger: silentLogger(), argon2: TEST_PARAMS, env: { PORTCULLIS_SECRET_KEY: KEY } });
    rt.audit.on((e) => events.push(e));
    return rt;
  }

  /** Spray `victims` in order, attempt i on instance i % n; the attempt (1-based) after which it was marked. */
  async function spray(rts: RuntimeImpl[], events: AuditEvent[]): Promise<number | null> {
    for (let i = 0; i < victims.length; i++) {
      const rt = rts[i % rts.length]!;
      const r = await firstFactor(rt, rt.config, { app: rt.config.apps[0]!, ip: attacker(i), username: victims[i]!, password: SPRAY, rd: null });
      assert.equal(r.kind, 'fail');
      if (events.some((e) => e.event === 'password_sprayed')) return i + 1;
    }
    return null;
  }

  it('a spray split across two instances is marked at the same count as on one, once, and refused on both', async () => {
    const clock = new ManualClock();
    const oneEvents: AuditEvent[] = [];
    const one = await instance(`one-${randomBytes(4).toString('hex')}:`, clock, oneEvents);
    const twoEvents: AuditEvent[] = [];
    const prefix = `two-${randomBytes(4).toString('hex')}:`;
    const a = await instance(prefix, clock, twoEvents);
    const b = await instance(prefix, clock, twoEvents);
    try {
      const alone = await spray([one], oneEvents);
      assert.equal(alone, ACCOUNTS);
      const hashesA = countHashes(a);
      const hashesB = countHashes(b);
      const split = await spray([a, b], twoEvents);
      assert.equal(split, alone, 'the same count on two instances as on one');
      assert.equal(twoEvents.filter((e) => e.event === 'password_sprayed').length, 1, 'one event for both');
      // from now on, both refuse it before any hash
      const before = hashesA.calls + hashesB.calls;
      for (const [i, rt] of [a, b].entries()) {
        const r = await firstFactor(rt, rt.config, { app: rt.config.apps[0]!, ip: attacker(100 + i), username: victims[22 + i]!, password: SPRAY, rd: null });
        assert.equal(r.kind, 'fail');
      }
      assert.equal(hashesA.calls + hashesB.calls, before, 'no hash on either instance');
      assert.equal(twoEvents.filter((e) => e.event === 'login_failed' && e.reason === 'sprayed password').length, 2);
    } finally {
      for (const rt of [one, a, b]) {
        await rt.stores.close();
        await rt.hasher.close();
      }
    }
  });

  it('the attack posture starts and ends once per episode, whichever instance counts and ticks', async () => {
    const clock = new ManualClock(Date.UTC(2026, 2, 1, 9, 0, 10));
    const events: AuditEvent[] = [];
    const prefix = `atk-${randomBytes(4).toString('hex')}:`;
    const a = await instance(prefix, clock, events);
    const b = await instance(prefix, clock, events);
    try {
      // eleven failures in one minute, six counted by a and five by b: above the threshold of ten only together
      for (let i = 0; i < 11; i++) await (i % 2 ? b : a).attack.recordFailure(`192.0.2.${i}/24`);
      await Promise.all([a.attack.tick(), b.attack.tick()]);
      await Promise.all([a.attack.tick(), b.attack.tick()]);
      assert.equal(a.attack.active && b.attack.active, true, 'both see the posture');
      assert.equal(events.filter((e) => e.event === 'attack_started').length, 1);
      clock.advance(31 * 60_000);
      await Promise.all([a.attack.tick(), b.attack.tick()]);
      await Promise.all([a.attack.tick(), b.attack.tick()]);
      assert.equal(a.attack.active || b.attack.active, false);
      assert.equal(events.filter((e) => e.event === 'attack_ended').length, 1);
    } finally {
      for (const rt of [a, b]) {
        await rt.stores.close();
        await rt.hasher.close();
      }
    }
  });
});
