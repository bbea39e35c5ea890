/**
 * The login regulator as an attacker and a user meet it: guessing from one address, from many
 * addresses, from one IPv6 /64, spraying many accounts, repeating a stale password, guessing TOTP
 * codes; and the user on their usual network, who must still get in while someone elsewhere is
 * hammering their account.
 */
import { strict as assert } from 'node:assert';
import { createHmac } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { ManualClock } from '../../src/clock.js';
import type { LoginLimits } from '../../src/config/types.js';
import { LoginThrottle, networkKeyFor, userKeyFor } from '../../src/auth/throttle.js';
import { HashBudget } from '../../src/auth/hash-budget.js';
import { isPortcullisError } from '../../src/errors.js';
import { createMemoryStores } from '../../src/store/memory.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;

/** The SPEC defaults. */
const LIMITS: LoginLimits = {
  perIp: { maxFailures: 20, windowMs: 15 * MIN, blockMs: 15 * MIN },
  perUser: { maxFailures: 5, windowMs: 15 * MIN, lockoutMs: 15 * MIN, ceiling: { maxFailures: 100, windowMs: 24 * 60 * MIN } },
  spray: { distinctUsers: 10, windowMs: 10 * MIN, blockMs: HOUR },
  samePassword: { accounts: 20, windowMs: 60 * MIN, blockMs: 24 * 60 * MIN },
  mfa: { maxFailures: 5, windowMs: 15 * MIN },
  ipv6Prefix: 64,
  maxConcurrentHashes: 8,
};

const PASSWORDS: Record<string, string> = { alice: 'correct horse battery staple', bob: 'tangerine-otter-41-quarry' };
const FP_KEY = Buffer.alloc(32, 7);
const fingerprint = (user: string, pw: string) => createHmac('sha256', FP_KEY).update(`${user}\u0000${pw}`).digest('base64url');

type Outcome =
  | { outcome: 'ok' }
  | { outcome: 'wrong'; lockedOut: boolean; ipBlocked: boolean }
  | { outcome: 'throttled'; kind: string; retryAfterSec: number };

const dirs: TmpDir[] = [];
after(async () => {
  for (const d of dirs) await d.cleanup();
});

async function setup(limits: LoginLimits = LIMITS) {
  const tmp = await tmpDir('pc-throttle-');
  dirs.push(tmp);
  const clock = new ManualClock();
  const state = await FileStateStore.open(tmp.dir);
  const stores = createMemoryStores({ clock, state });
  const throttle = new LoginThrottle({ limits, rates: stores.rates, state, clock });

  /** One password attempt, driven the way the portal drives it: reserve first, hash only if allowed. */
  async function login(ip: string, user: string, password: string): Promise<Outcome> {
    const familiar = await throttle.isFamiliar(user, ip);
    const d = await throttle.reservePassword({ ip, user, passwordFingerprint: fingerprint(user, password), familiar });
    // a guess this source already got wrong is answered as wrong again, without a hash
    if (!d.allowed && d.kind === 'repeat') return wrong();
    if (!d.allowed) return { outcome: 'throttled', kind: d.kind, retryAfterSec: d.retryAfterSec };
    if (PASSWORDS[user] === password) {
      await d.ticket.succeeded();
      await state.addKnownNetwork(user, networkKeyFor(ip, limits.ipv6Prefix));
      return { outcome: 'ok' };
    }
    const r = await d.ticket.failed();
    return { outcome: 'wrong', ...r };
  }
  return { clock, state, stores, throttle, login };
}

const wrong = (lockedOut = false, ipBlocked = false): Outcome => ({ outcome: 'wrong', lockedOut, ipBlocked });

describe('networkKeyFor', () => {
  it('groups IPv4 by /24 and IPv6 by the configured prefix', () => {
    assert.equal(networkKeyFor('192.0.2.77', 64), '192.0.2.0/24');
    assert.equal(networkKeyFor('::ffff:192.0.2.77', 64), '192.0.2.0/24');
    assert.equal(networkKeyFor('2001:db8:1:2:aaaa::1', 64), '2001:db8:1:2::/64');
    assert.equal(networkKeyFor('2001:db8:1:2:aaaa::1', 48), '2001:db8:1::/48');
    assert.equal(networkKeyFor('not-an-ip', 64), 'not-an-ip');
  });
});

describe('LoginThrottle: per source', () => {
  it('blocks a source after max_failures in the window, with Retry-After counting down', async () => {
    const { login, clock, throttle } = await setup();
    const ip = '198.51.100.7';
    // 5 accounts x 4 guesses: under the per-user and spray limits, so only the source limit trips
    const results: Outcome[] = [];
    for (let u = 1; u <= 5; u++) for (let g = 1; g <= 4; g++) results.push(await login(ip, `user${u}`, `guess-${g}`));
    assert.deepEqual(results.slice(0, 19), Array(19).fill(wrong()));
    assert.deepEqual(results[19], wrong(false, true), 'the 20th failure blocks the source');

    assert.deepEqual(await login(ip, 'alice', PASSWORDS.alice!), { outcome: 'throttled', kind: 'ip', retryAfterSec: 900 }, 'even the right password is not tried');
    clock.advance(5 * MIN);
    assert.deepEqual(await throttle.check({ ip, user: 'bob' }), { allowed: false, kind: 'ip', retryAfterSec: 600 });
    assert.deepEqual(await login('198.51.100.8', 'alice', PASSWORDS.alice!), { outcome: 'ok' }, 'a neighbouring IPv4 address is another source');
    clock.advance(10 * MIN);
    assert.deepEqual(await login(ip, 'alice', PASSWORDS.alice!), { outcome: 'ok' }, 'the block lapses after `block`');
  });

  it('forgets the failures of a window that has passed', async () => {
    const { login, clock } = await setup();
    const ip = '198.51.100.9';
    for (let u = 1; u <= 5; u++) for (let g = 1; g <= 3; g++) await login(ip, `user${u}`, `guess-${g}`);
    clock.advance(15 * MIN);
    for (let u = 1; u <= 5; u++) for (let g = 4; g <= 6; g++) assert.deepEqual(await login(ip, `user${u}`, `guess-${g}`), wrong());
  });

  it('counts a whole IPv6 /64 as one source, however the attacker rotates inside it', async () => {
    const { login, throttle } = await setup();
    let n = 0;
    for (let u = 1; u <= 5; u++) {
      for (let g = 1; g <= 4; g++) {
        n++;
        const r = await login(`2001:db8:1:2:${n.toString(16)}::${(n * 7).toString(16)}`, `user${u}`, `guess-${g}`);
        assert.deepEqual(r, wrong(false, n === 20), `attempt ${n}`);
      }
    }
    assert.deepEqual(await throttle.check({ ip: '2001:db8:1:2:ffff:ffff:ffff:ffff', user: 'alice' }), { allowed: false, kind: 'ip', retryAfterSec: 900 });
    assert.deepEqual(await throttle.check({ ip: '2001:db8:1:3::1', user: 'alice' }), { allowed: true }, 'the next /64 is someone else');

    const blocks = await throttle.listBlocks();
    assert.deepEqual(blocks.map((b) => [b.kind, b.source]), [['ip', '2001:db8:1:2::/64']]);
    assert.equal(await throttle.unblock({ ip: '2001:db8:1:2::abcd' }), 1, 'the admin names any address in the block');
    assert.deepEqual(await throttle.check({ ip: '2001:db8:1:2::1', user: 'alice' }), { allowed: true });
  });

  it("a success does not launder the source's count (an attacker signing in with an account of their own between guesses)", async () => {
    // per-user and spray limits out of the way: this is about the source count alone. NIST
    // 800-63B 5.2.2 resets the count of the *account* that signed in; the source keeps the
    // failures it made against every account, or one valid account would unlock unlimited guessing.
    const limits = { ...LIMITS, perUser: { ...LIMITS.perUser, maxFailures: 1000 }, spray: { ...LIMITS.spray, distinctUsers: 1000 } };
    const { login } = await setup(limits);
    const ip = '203.0.113.50';
    for (let g = 1; g <= 19; g++) assert.deepEqual(await login(ip, 'alice', `typo-${g}`), wrong());
    assert.deepEqual(await login(ip, 'bob', PASSWORDS.bob!), { outcome: 'ok' });
    assert.deepEqual(await login(ip, 'alice', 'typo-20'), wrong(false, true), 'the 20th failure blocks, the success in between notwithstanding');
  });

  it('blocks a source that sprays distinct_users accounts within the window', async () => {
    const { login, throttle, clock } = await setup();
    const ip = '192.0.2.200';
    for (let u = 1; u <= 9; u++) assert.deepEqual(await login(ip, `victim${u}`, 'Winter2025!'), wrong());
    // the same account again is not a new user
    assert.deepEqual(await login(ip, 'victim1', 'Spring2025!'), wrong());
    assert.deepEqual(await login(ip, 'victim10', 'Winter2025!'), wrong(false, true));
    assert.deepEqual(await login(ip, 'victim11', 'Winter2025!'), { outcome: 'throttled', kind: 'spray', retryAfterSec: 3600 });
    clock.advance(59 * MIN);
    assert.deepEqual(await throttle.check({ ip, user: 'alice' }), { allowed: false, kind: 'spray', retryAfterSec: 60 });
    assert.deepEqual((await throttle.listBlocks()).map((b) => [b.kind, b.source, b.retryAfterSec]), [['spray', ip, 60]]);
    clock.advance(MIN);
    assert.deepEqual(await throttle.check({ ip, user: 'alice' }), { allowed: true });
  });

  it('does not count user names that differ only in letter case as distinct accounts', async () => {
    const { login } = await setup();
    const ip = '192.0.2.201';
    for (const name of ['victim', 'VICTIM', 'Victim', 'vIcTiM', 'victiM']) await login(ip, name, `pw-${name}`);
    assert.equal(userKeyFor('VICTIM'), userKeyFor('victim'));
    // five distinct passwords against one account: that account's bucket is locked
    assert.deepEqual(await login(ip, 'victim', 'another'), { outcome: 'throttled', kind: 'user', retryAfterSec: 900 });
  });
});

describe('LoginThrottle: per user (smart lockout)', () => {
  it('locks out the unfamiliar-network bucket while the user still signs in from their usual network', async () => {
    const { login, throttle } = await setup();
    assert.deepEqual(await login('192.0.2.10', 'alice', PASSWORDS.alice!), { outcome: 'ok' }, 'alice signs in from the office once');

    // an attacker rotates addresses so no source limit is reached
    for (let g = 1; g <= 4; g++) assert.deepEqual(await login(`203.0.113.${g}`, 'alice', `guess-${g}`), wrong());
    assert.deepEqual(await login('203.0.113.5', 'alice', 'guess-5'), wrong(true, false), 'the 5th locks the unfamiliar bucket');
    assert.deepEqual(await login('198.51.100.99', 'alice', PASSWORDS.alice!), { outcome: 'throttled', kind: 'user', retryAfterSec: 900 }, 'from anywhere unfamiliar');

    assert.deepEqual(await throttle.check({ ip: '192.0.2.77', user: 'alice' }), { allowed: true }, 'the office /24 is familiar');
    assert.deepEqual(await login('192.0.2.10', 'alice', PASSWORDS.alice!), { outcome: 'ok' });
    assert.deepEqual((await throttle.listBlocks()).map((b) => [b.kind, b.user, b.bucket]), [['user', 'alice', 'unfamiliar']]);
  });

  it('locks the familiar bucket on its own failures, leaving other accounts alone', async () => {
    const { login, throttle } = await setup();
    await login('192.0.2.10', 'alice', PASSWORDS.alice!);
    for (let g = 1; g <= 4; g++) assert.deepEqual(await login('192.0.2.10', 'alice', `typo-${g}`), wrong());
    assert.deepEqual(await login('192.0.2.11', 'alice', 'typo-5'), wrong(true));
    assert.deepEqual(await throttle.check({ ip: '192.0.2.10', user: 'alice' }), { allowed: false, kind: 'user', retryAfterSec: 900 });
    assert.deepEqual(await throttle.check({ ip: '192.0.2.10', user: 'bob' }), { allowed: true });
    assert.equal(await throttle.unblock({ user: 'ALICE' }), 1);
    assert.deepEqual(await login('192.0.2.10', 'alice', PASSWORDS.alice!), { outcome: 'ok' });
  });

  it('counts a repeated wrong password once (a device retrying a stale password)', async () => {
    const { login } = await setup();
    await login('192.0.2.10', 'alice', PASSWORDS.alice!);
    for (let i = 0; i < 50; i++) assert.deepEqual(await login('192.0.2.10', 'alice', 'last-years-password'), wrong(), `retry ${i}`);
    for (const pw of ['b', 'c', 'd']) assert.deepEqual(await login('192.0.2.10', 'alice', pw), wrong());
    assert.deepEqual(await login('192.0.2.10', 'alice', 'e'), wrong(true), 'the 5th distinct wrong password locks');
  });

  it('a success forgets the earlier failures from that kind of network', async () => {
    const { login } = await setup();
    await login('192.0.2.10', 'alice', PASSWORDS.alice!);
    for (let g = 1; g <= 4; g++) await login('192.0.2.10', 'alice', `typo-${g}`);
    assert.deepEqual(await login('192.0.2.10', 'alice', PASSWORDS.alice!), { outcome: 'ok' });
    for (let g = 5; g <= 8; g++) assert.deepEqual(await login('192.0.2.10', 'alice', `typo-${g}`), wrong());
  });
});

describe('LoginThrottle: the 100-failure ceiling', () => {
  it('holds against an attacker rotating through fresh sources for a whole day', async () => {
    const { login, clock, throttle } = await setup();
    await login('192.0.2.10', 'alice', PASSWORDS.alice!);
    clock.advance(MIN);

    // one guess every 10 s, each from an address never seen before and never reused
    let tried = 0;
    let firstCeilingAt = -1;
    const start = clock.now();
    for (let i = 0; clock.now() - start < 24 * HOUR; i++) {
      const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      const r = await login(ip, 'alice', `guess-${i}`);
      if (r.outcome === 'wrong') tried++;
      else if (r.outcome === 'throttled' && r.kind === 'ceiling' && firstCeilingAt < 0) firstCeilingAt = clock.now() - start;
      else assert.equal(r.outcome, 'throttled');
      clock.advance(10 * SEC);
    }
    assert.equal(tried, 100, 'exactly 100 guesses were checked against the password in 24 h');
    assert.ok(firstCeilingAt > 4 * HOUR, 'smart lockout alone spread the first 100 over hours');

    const fromElsewhere = await throttle.check({ ip: '10.200.0.1', user: 'alice' });
    assert.equal(fromElsewhere.allowed, false, 'past the ceiling the account refuses password attempts from unfamiliar networks');
    assert.equal(fromElsewhere.allowed === false && fromElsewhere.kind, 'ceiling');
    assert.ok(fromElsewhere.allowed === false && fromElsewhere.retryAfterSec > 0 && fromElsewhere.retryAfterSec <= 24 * 3600);
    assert.ok((await throttle.listBlocks()).some((b) => b.kind === 'ceiling' && b.user === 'alice' && b.bucket === 'unfamiliar'));
    assert.deepEqual(
      await throttle.check({ ip: '192.0.2.10', user: 'alice' }),
      { allowed: true },
      'the ceiling reached from elsewhere never locks the user out of the office (issue 10, item 6)',
    );

    assert.ok((await throttle.unblock({ user: 'alice' })) >= 1, 'an admin lifts it');
    assert.deepEqual(await login('10.200.0.1', 'alice', PASSWORDS.alice!), { outcome: 'ok' });
  });

  it('counts familiar and unfamiliar networks apart, and resets on success', async () => {
    const limits = { ...LIMITS, perUser: { ...LIMITS.perUser, maxFailures: 1000 } };
    const { login, throttle } = await setup(limits);
    await login('192.0.2.10', 'alice', PASSWORDS.alice!);
    for (let g = 0; g < 60; g++) await login(`10.0.${g}.1`, 'alice', `x-${g}`);
    assert.deepEqual(await login('10.9.0.1', 'alice', PASSWORDS.alice!), { outcome: 'ok' }, 'a success resets the consecutive count');
    for (let g = 0; g < 50; g++) {
      // office failures count in their own bucket: 50 there, 49 + 50 elsewhere
      assert.deepEqual(await login(`192.0.2.${g + 100}`, 'alice', `o-${g}`), wrong(), `office failure ${g + 1}`);
    }
    for (let g = 0; g < 99; g++) assert.deepEqual(await login(`10.1.${g}.1`, 'alice', `y-${g}`), wrong(), `failure ${g + 1}`);
    assert.deepEqual(await login('10.2.0.1', 'alice', 'y-99'), wrong(true), 'the 100th failure from elsewhere locks unfamiliar networks');
    assert.deepEqual(await throttle.check({ ip: '10.3.0.1', user: 'alice' }), { allowed: false, kind: 'ceiling', retryAfterSec: 24 * 3600 });
    assert.deepEqual(await throttle.check({ ip: '192.0.2.10', user: 'alice' }), { allowed: true }, 'the office is another bucket');
    assert.deepEqual(await login('192.0.2.10', 'alice', PASSWORDS.alice!), { outcome: 'ok' });
  });
});

describe('LoginThrottle: MFA', () => {
  /** One wrong code, through the reservation every code goes through. */
  const mfaFail = async (throttle: LoginThrottle, ctx: { ip: string; user: string }) => {
    const r = await throttle.reserveMfa(ctx);
    assert.ok(r.allowed, 'the attempt was reserved');
    return r.ticket.failed();
  };
  /** One right code. */
  const mfaOk = async (throttle: LoginThrottle, ctx: { ip: string; user: string }) => {
    const r = await throttle.reserveMfa(ctx);
    assert.ok(r.allowed, 'the attempt was reserved');
    await r.ticket.succeeded();
  };
  it('throttles wrong codes per user and source, then per user across sources', async () => {
    const { throttle, clock } = await setup();
    const a = { ip: '203.0.113.9', user: 'alice' };
    for (let i = 1; i <= 4; i++) assert.deepEqual(await mfaFail(throttle, a), { throttled: false });
    assert.deepEqual(await mfaFail(throttle, a), { throttled: true });
    assert.deepEqual(await throttle.checkMfa(a), { allowed: false, kind: 'user', retryAfterSec: 900 });
    assert.deepEqual(await throttle.check(a), { allowed: true }, 'MFA failures do not block password attempts');

    const b = { ip: '198.51.100.3', user: 'alice' };
    assert.deepEqual(await throttle.checkMfa(b), { allowed: true }, 'another source still has its own allowance');
    for (let i = 1; i <= 4; i++) await mfaFail(throttle, b);
    assert.deepEqual(await mfaFail(throttle, b), { throttled: true });
    const c = { ip: '192.0.2.10', user: 'alice' };
    assert.deepEqual(await throttle.checkMfa(c), { allowed: false, kind: 'user', retryAfterSec: 900 }, 'twice max_failures per user stops every source');
    assert.deepEqual(await throttle.checkMfa({ ip: c.ip, user: 'bob' }), { allowed: true });

    clock.advance(15 * MIN);
    assert.deepEqual(await throttle.checkMfa(c), { allowed: true });
  });

  it('a correct code forgets the earlier wrong ones', async () => {
    const { throttle } = await setup();
    const a = { ip: '203.0.113.9', user: 'alice' };
    for (let i = 1; i <= 4; i++) await mfaFail(throttle, a);
    await mfaOk(throttle, a);
    for (let i = 1; i <= 4; i++) assert.deepEqual(await mfaFail(throttle, a), { throttled: false });
    assert.deepEqual(await throttle.checkMfa(a), { allowed: true });
  });

  it('unblock by user or by source lifts MFA blocks', async () => {
    const { throttle } = await setup();
    const a = { ip: '203.0.113.9', user: 'alice' };
    for (let i = 1; i <= 5; i++) await mfaFail(throttle, a);
    assert.deepEqual((await throttle.listBlocks()).map((b) => [b.kind, b.source, b.user]), [['mfa', '203.0.113.9', 'alice']]);
    assert.equal(await throttle.unblock({ ip: '203.0.113.9' }), 1);
    assert.deepEqual(await throttle.checkMfa(a), { allowed: true });
    for (let i = 1; i <= 5; i++) await mfaFail(throttle, a);
    // the (alice, source) block again, and the per-user one: ten wrong codes in the window
    assert.equal(await throttle.unblock({ user: 'alice' }), 2);
    assert.deepEqual(await throttle.checkMfa(a), { allowed: true });
  });
});

describe('LoginThrottle: keys an attacker controls', () => {
  it('keeps absurd user names to a bounded key', async () => {
    const { throttle, stores } = await setup();
    const huge = 'x'.repeat(100_000);
    await throttle.recordFailure({ ip: '203.0.113.1', user: huge, passwordFingerprint: 'f', familiar: false });
    assert.ok(userKeyFor(huge).length < 64);
    assert.ok(userKeyFor('eve\nINJECTED').startsWith('#'), 'control characters never reach a key or a listing');
    assert.equal(stores.rates.sizes.counters, 4);
  });

  it('refuses limits that would disable it', async () => {
    const { stores, state, clock } = await setup();
    assert.throws(
      () => new LoginThrottle({ limits: { ...LIMITS, perIp: { ...LIMITS.perIp, maxFailures: 0 } }, rates: stores.rates, state, clock }),
      /per_ip\.max_failures/,
    );
  });
});

describe('HashBudget', () => {
  it('runs at most `max` verifications at once and refuses the rest at once with PC_BUSY', async () => {
    const budget = new HashBudget(2);
    const gates: Array<() => void> = [];
    const slow = () => new Promise<string>((resolve) => gates.push(() => resolve('verified')));
    const a = budget.tryRun(slow);
    const b = budget.tryRun(slow);
    assert.equal(budget.inFlight, 2);

    let called = false;
    await assert.rejects(
      budget.tryRun(async () => {
        called = true;
        return 'never';
      }),
      (e) => isPortcullisError(e, 'PC_BUSY') && e.status === 503,
    );
    assert.equal(called, false, 'the refused request costs no hash');
    assert.equal(budget.rejected, 1);

    gates.shift()!();
    assert.equal(await a, 'verified');
    assert.equal(budget.inFlight, 1);
    assert.equal(await budget.tryRun(async () => 'room again'), 'room again');
    gates.shift()!();
    await b;
    assert.equal(budget.inFlight, 0);
    assert.equal(budget.completed, 3);
  });

  it('frees the slot when a verification throws', async () => {
    const budget = new HashBudget(1);
    await assert.rejects(budget.tryRun(async () => Promise.reject(new Error('argon2 failed'))), /argon2 failed/);
    assert.equal(budget.inFlight, 0);
    assert.equal(await budget.tryRun(async () => 1), 1);
  });

  it('refuses a budget that is not a positive integer', () => {
    assert.throws(() => new HashBudget(0), (e) => isPortcullisError(e, 'PC_CONFIG_INVALID'));
    assert.throws(() => new HashBudget(1.5), (e) => isPortcullisError(e, 'PC_CONFIG_INVALID'));
  });
});

describe('userKeyFor folds a name as a directory compares it (review F1: one bucket per account name)', () => {
  it('case, compatibility forms, dotted I, characters mapped to nothing, insignificant spaces', () => {
    for (const v of ['alice', 'ALICE', '\uff41lice', 'AL\u0130CE', 'al\u0130ce', 'al\u00adice', 'al\u200bice', 'alice ', ' alice', 'alice\u00a0', '\u212alice'.replace('\u212a', 'a')]) {
      assert.equal(userKeyFor(v), 'alice', JSON.stringify(v));
    }
    assert.notEqual(userKeyFor('a lice'), 'alice', 'a space inside a name is significant');
    assert.equal(userKeyFor('a  lice'), userKeyFor('a lice'));
  });
});
