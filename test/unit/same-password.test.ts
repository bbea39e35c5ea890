/**
 * `login_limits.same_password` in the throttle, over the memory stores with a ManualClock: the
 * count is of distinct accounts per password fingerprint within the window, the mark is made
 * once at the threshold and refuses the password (in the reservation, before any hash) only from
 * unfamiliar networks; one account retrying is never a spray. (Memory under a flood of distinct
 * wrong passwords: same-password-flood.test.ts.)
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { ManualClock } from '../../src/clock.js';
import type { LoginLimits } from '../../src/config/types.js';
import { LoginThrottle, SprayWitness } from '../../src/auth/throttle.js';
import { sprayedReason } from '../../src/auth/credential.js';
import { createMemoryStores } from '../../src/store/memory.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { loadConfigText } from '../../src/config/index.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const LIMITS: LoginLimits = {
  perIp: { maxFailures: 20, windowMs: 15 * MIN, blockMs: 15 * MIN },
  perUser: { maxFailures: 5, windowMs: 15 * MIN, lockoutMs: 15 * MIN, ceiling: { maxFailures: 100, windowMs: 24 * HOUR } },
  spray: { distinctUsers: 10, windowMs: 10 * MIN, blockMs: HOUR },
  samePassword: { accounts: 20, windowMs: HOUR, blockMs: 24 * HOUR },
  mfa: { maxFailures: 5, windowMs: 15 * MIN },
  ipv6Prefix: 64,
  maxConcurrentHashes: 8,
};
const KEY = Buffer.alloc(32, 9);
const pairFp = (user: string, pw: string) => createHmac('sha256', KEY).update(`${user}\u0000${pw}`).digest('base64url');
const sameFp = (pw: string) => createHmac('sha256', KEY).update(`same\n${pw}`).digest().subarray(0, 16).toString('base64url');

const dirs: TmpDir[] = [];
after(async () => {
  for (const d of dirs) await d.cleanup();
});

async function setup(o: { witness?: SprayWitness } = {}) {
  const tmp = await tmpDir('pc-same-pw-');
  dirs.push(tmp);
  const clock = new ManualClock();
  const state = await FileStateStore.open(tmp.dir);
  const stores = createMemoryStores({ clock, state });
  const throttle = new LoginThrottle({ limits: LIMITS, rates: stores.rates, state, clock, ...(o.witness ? { witness: o.witness } : {}) });
  /** A wrong password, as checkCredential drives it. */
  async function wrong(ip: string, user: string, pw: string, familiar = false) {
    const r = await throttle.reservePassword({ ip, user, passwordFingerprint: pairFp(user, pw), familiar, sameFingerprint: sameFp(pw) });
    if (!r.allowed) return { refused: r.kind };
    return { refused: null, sprayedTicket: r.ticket.sprayed, ...(await r.ticket.failed()) };
  }
  return { clock, stores, throttle, wrong };
}

describe('same password, many accounts', () => {
  it('marked at the 20th distinct account within the hour, once; refused after that from unfamiliar networks only', async () => {
    const s = await setup();
    for (let i = 0; i < 19; i++) {
      const r = await s.wrong(`198.51.100.${i}`, `user${i}`, 'Summer2017');
      assert.equal(r.refused, null);
      assert.equal('sprayed' in r, false, `not at ${i + 1}`);
    }
    const mark = await s.wrong('198.51.100.19', 'user19', 'Summer2017');
    assert.ok('sprayed' in mark && mark.sprayed);
    assert.equal(mark.sprayed.count, 20);
    assert.deepEqual(mark.sprayed.accounts, Array.from({ length: 20 }, (_, i) => `user${i}`));
    assert.equal(await s.throttle.isSprayed(sameFp('Summer2017')), true);
    assert.equal(await s.throttle.sprayedCount(), 1);
    // unfamiliar: refused in the reservation
    assert.deepEqual(await s.wrong('203.0.113.1', 'user30', 'Summer2017'), { refused: 'sprayed' });
    // familiar: let through, the ticket says so; its failure does not report the mark again
    const fam = await s.wrong('192.0.2.1', 'user31', 'Summer2017', true);
    assert.equal(fam.refused, null);
    assert.equal(fam.sprayedTicket, true);
    assert.equal('sprayed' in fam, false, 'reported once');
    // another password is unaffected
    assert.equal((await s.wrong('203.0.113.1', 'user30', 'Winter2017')).refused, null);
    // the mark lasts `block`
    s.clock.advance(24 * HOUR);
    assert.equal(await s.throttle.isSprayed(sameFp('Summer2017')), false);
  });

  it('19 accounts in an hour and 19 more in the next: not a spray at 20 (the window is an hour)', async () => {
    const s = await setup();
    for (let i = 0; i < 19; i++) await s.wrong(`198.51.100.${i}`, `user${i}`, 'Autumn2017');
    s.clock.advance(HOUR);
    for (let i = 19; i < 38; i++) assert.equal('sprayed' in (await s.wrong(`198.51.100.${i}`, `user${i}`, 'Autumn2017')), false);
    assert.equal(await s.throttle.isSprayed(sameFp('Autumn2017')), false);
  });

  it('one account typing its own old password, 200 times, from 200 places: never marked', async () => {
    const s = await setup();
    for (let i = 0; i < 200; i++) {
      s.clock.advance(MIN);
      const r = await s.wrong(`198.51.${i % 2}.${i % 250}`, i % 2 ? 'alice' : 'ALICE', 'my old password', i % 3 === 0);
      assert.equal(r.refused === 'sprayed', false);
      assert.equal('sprayed' in r, false);
    }
    assert.equal(await s.throttle.isSprayed(sameFp('my old password')), false);
  });

  it('a right password (succeeded) is not counted', async () => {
    const s = await setup();
    for (let i = 0; i < 25; i++) {
      const r = await s.throttle.reservePassword({ ip: `198.51.100.${i}`, user: `user${i}`, passwordFingerprint: pairFp(`user${i}`, 'shared'), familiar: false, sameFingerprint: sameFp('shared') });
      assert.ok(r.allowed);
      await r.ticket.succeeded();
    }
    assert.equal(await s.throttle.isSprayed(sameFp('shared')), false);
  });
});

describe('the spray witness', () => {
  it('the witness keeps at most maxAccounts names per password and maxPasswords passwords', () => {
    const w = new SprayWitness(3, 2);
    for (const fp of ['a', 'b', 'c', 'd']) for (const u of ['x', 'y', 'z', 'x']) w.note(fp, u);
    assert.deepEqual(w.sizes, { passwords: 3, accounts: 6 });
    assert.deepEqual(w.take('d'), ['x', 'y']);
    assert.deepEqual(w.take('a'), [], 'the least recently used went');
  });
});

describe('the password_sprayed reason', () => {
  it('lists the accounts that fit in an audit field, then how many more', () => {
    const few = sprayedReason(3, ['ann', 'bob', 'cy'], HOUR, 24 * HOUR);
    assert.equal(few, 'tried on 3 accounts within 1h; refused from unfamiliar networks for 1d: ann, bob, cy');
    const names = Array.from({ length: 40 }, (_, i) => `someone.with.a.long.name${i}`);
    const many = sprayedReason(45, names, HOUR, 24 * HOUR);
    assert.ok(many.length <= 256, `${many.length}`);
    const m = /: (.*) \(\+(\d+) more\)$/.exec(many);
    assert.ok(m, many);
    assert.equal(m[1]!.split(', ').length + Number(m[2]), 45);
  });
});

describe('same_password config', () => {
  const base = 'apps:\n  - { name: m, hosts: [m.test], upstream: "builtin:whoami", rules: [{ policy: password }] }\n';
  it('defaults to 20 accounts in 1h, blocked for 24h', () => {
    const r = loadConfigText(base, 'd.yaml');
    assert.ok(r.ok);
    assert.deepEqual(r.config.loginLimits.samePassword, { accounts: 20, windowMs: HOUR, blockMs: 24 * HOUR });
  });
  it('accounts below 2 (one account is a user retrying), bad durations and unknown keys are refused with file:line:col', () => {
    const r = loadConfigText(`login_limits:\n  same_password: { accounts: 1, window: 1, blocks: 2h }\n${base}`, 's.yaml');
    assert.ok(!r.ok);
    const msgs = r.issues.map((i) => `${i.file}:${i.line}:${i.col} ${i.path}: ${i.message}`);
    assert.equal(msgs.length, 3, msgs.join('\n'));
    assert.match(msgs[0]!, /^s\.yaml:2:30 login_limits\.same_password\.accounts: expected a whole number from 2 to 1000/);
    assert.match(msgs[1]!, /^s\.yaml:2:41 login_limits\.same_password\.window: .*has no unit/);
    assert.match(msgs[2]!, /^s\.yaml:2:44 login_limits\.same_password\.blocks: unknown key "blocks"; did you mean "block"\?/);
  });
});
