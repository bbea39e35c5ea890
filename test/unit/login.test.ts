/**
 * Where a password leads, as core functions (no HTTP): `firstFactor` (the login form's check and
 * what it asks for next), `secondFactor` (a TOTP code or a recovery code) and `changePassword`.
 * What the client is told, and what the audit log records: every refusal looks like a wrong
 * password from outside; the real reason is in the audit. A runtime with memory stores and a
 * fixed clock; no sockets.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { changePassword, firstFactor, secondFactor, type FirstFactor } from '../../src/auth/login.js';
import { checkCredential } from '../../src/auth/credential.js';
import { generateCode } from '../../src/auth/totp.js';
import { generateRecoveryCodes, hashRecoveryCode } from '../../src/auth/recovery.js';
import { networkKeyFor } from '../../src/auth/throttle.js';
import { startCoreRuntime, type CoreRuntime } from '../helpers/core-runtime.js';

const OFFICE = '192.0.2.10';
const VPN = '198.51.100.20';
const HOME = '203.0.113.5';
const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

const CONFIG = `
networks: { office: ["192.0.2.0/24", "192.0.3.0/24"], vpn: ["198.51.100.0/24"] }
lockdown: { networks: [] }
totp: { issuer: "Test Mail", enrol: { networks: [office], prompt: true } }
password_policy: { min_length: 10, blocklist: common, min_strength: 3, on_weak: change }
login_limits:
  per_user: { max_failures: 3, window: 15m, lockout: 15m }
  mfa: { max_failures: 3, window: 15m }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { paths: ["/admin/**"], networks: [office, vpn], policy: mfa }
      - { networks: [office], policy: password }
      - { networks: [vpn], policy: mfa }
      - { policy: deny }
  - name: ops
    hosts: ["ops.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { groups: [admins], policy: password }
`;

const PW = {
  alice: 'Vq8tzLm2rW9xKp4',
  tom: 'Hd7gRw3nYq2jTb6',
  bob: 'Zp5kXc8vNm1qWe3',
  dora: 'Ls4hJt9bFv6yUi2',
  weak: 'password123',
  pat: 'Rk3mWq7zLp9sXe5',
};
const USERS = [
  { name: 'alice', password: PW.alice, groups: ['staff'] },
  { name: 'tom', password: PW.tom, groups: ['staff'] },
  { name: 'bob', password: PW.bob, groups: ['staff'] },
  { name: 'dora', password: PW.dora, groups: ['staff'], disabled: true },
  { name: 'weak', password: PW.weak, groups: ['staff'] },
  { name: 'pat', password: PW.pat, groups: ['staff'] },
];

let core: CoreRuntime;
before(async () => {
  core = await startCoreRuntime(CONFIG, { users: USERS });
  // tom has an authenticator
  await core.rt.stores.state.setTotp('tom', { secret: core.rt.box.seal(SECRET, 'totp:tom'), enrolledAt: core.clock.now(), source: 'enrolled' });
});
after(async () => core?.close());
beforeEach(() => {
  // past every window and lockout of the previous test
  core.clock.advance(2 * 60 * 60_000);
  core.events.length = 0;
  core.rt.lockdown = { on: false, since: 0, by: '' };
});

function login(username: string, password: string, ip: string, o: { rd?: string; app?: string } = {}): Promise<FirstFactor> {
  return firstFactor(core.rt, core.rt.config, { app: core.app(o.app ?? 'mail'), ip, username, password, rd: o.rd ?? null });
}

function ok(r: FirstFactor): Extract<FirstFactor, { kind: 'ok' }> {
  assert.equal(r.kind, 'ok', `expected ok, got ${r.kind}`);
  return r as Extract<FirstFactor, { kind: 'ok' }>;
}

const reasons = (event: string) => core.audited(event).map((e) => e.reason);

function totpNow(): string {
  const t = core.rt.config.totp;
  return generateCode(SECRET, { time: core.clock.now(), period: t.period, digits: t.digits, algorithm: t.algorithm });
}

describe('firstFactor: a right password, and what it leads to', () => {
  it('from a password network, no second factor: next none, enrolment offered where it is allowed', async () => {
    const r = ok(await login('alice', PW.alice, OFFICE));
    assert.equal(r.user.name, 'alice');
    assert.equal(r.next, 'none');
    assert.equal(r.weak, false);
    assert.equal(r.mustChange, false);
    assert.equal(r.offerEnrol, true);
    assert.equal(core.audited('login_succeeded').length, 1);
  });

  it('leading spaces in the user name are forgiven; the name is case-sensitive', async () => {
    assert.equal(ok(await login('  alice ', PW.alice, OFFICE)).user.name, 'alice');
    assert.equal((await login('Alice', PW.alice, OFFICE)).kind, 'fail');
  });

  it('a user with an authenticator is asked for it where the rule needs mfa', async () => {
    assert.equal(ok(await login('tom', PW.tom, VPN)).next, 'mfa');
  });

  it('and where the target the user was going to needs it (rd picks the factor, never whether)', async () => {
    assert.equal(ok(await login('tom', PW.tom, OFFICE)).next, 'none');
    assert.equal(ok(await login('tom', PW.tom, OFFICE, { rd: '/admin/users' })).next, 'mfa');
    // an rd pointing anywhere else changes nothing
    assert.equal(ok(await login('tom', PW.tom, OFFICE, { rd: 'https://evil.test/admin/x' })).next, 'mfa');
  });

  it('a user without one, heading for an mfa target from an enrolment network, is sent to enrol', async () => {
    const r = ok(await login('alice', PW.alice, OFFICE, { rd: '/admin/x' }));
    assert.equal(r.next, 'enrol');
    assert.equal(r.offerEnrol, false);
  });

  it('a weak password under on_weak: change leads to a password change, from a familiar network', async () => {
    await core.rt.stores.state.addKnownNetwork('weak', networkKeyFor(OFFICE, core.rt.config.loginLimits.ipv6Prefix));
    const r = ok(await login('weak', PW.weak, OFFICE));
    assert.equal(r.weak, true);
    assert.equal(r.mustChange, true);
    assert.equal(r.next, 'password');
    assert.equal(core.audited('weak_password').length, 1);
  });
});

describe('firstFactor: refusals all look like a wrong password', () => {
  it('a wrong password: fail, audited login_failed "wrong password"', async () => {
    assert.deepEqual(await login('alice', 'not the password', OFFICE), { kind: 'fail' });
    assert.deepEqual(reasons('login_failed'), ['wrong password']);
  });

  it('an unknown user: the same fail, audited "unknown user"', async () => {
    assert.deepEqual(await login('mallory', 'whatever it is', OFFICE), { kind: 'fail' });
    assert.deepEqual(reasons('login_failed'), ['unknown user']);
  });

  it('a disabled user with the right password: the same fail, audited password_refused_correct "user disabled"', async () => {
    assert.deepEqual(await login('dora', PW.dora, OFFICE), { kind: 'fail' });
    assert.deepEqual(reasons('password_refused_correct'), ['user disabled']);
    assert.equal(core.audited('login_succeeded').length, 0);
  });

  it('right password, but no rule admits this user from here (groups): fail, with the reason in the audit', async () => {
    assert.deepEqual(await login('alice', PW.alice, OFFICE, { app: 'ops' }), { kind: 'fail' });
    assert.deepEqual(reasons('password_refused_correct'), ['no rule admits this user from this network']);
  });

  it('right password, a second factor needed and none can be enrolled from here: fail', async () => {
    assert.deepEqual(await login('alice', PW.alice, VPN), { kind: 'fail' });
    assert.deepEqual(reasons('password_refused_correct'), ['a second factor is required and none can be enrolled from this network']);
  });

  it('right but weak password from an unfamiliar network without a second factor: fail (on_weak: change)', async () => {
    assert.deepEqual(await login('weak', PW.weak, '192.0.3.77'), { kind: 'fail' });
    assert.deepEqual(reasons('password_refused_correct'), ['password below policy; change refused from an unfamiliar network without a second factor']);
    assert.equal(core.audited('weak_password')[0]?.outcome, 'denied');
  });

  it('the same wrong password again is answered the same, without counting twice', async () => {
    await login('bob', 'wrong guess one', OFFICE);
    await login('bob', 'wrong guess one', OFFICE);
    await login('bob', 'wrong guess one', OFFICE);
    assert.equal(ok(await login('bob', PW.bob, OFFICE)).user.name, 'bob');
    assert.equal(reasons('login_failed').filter((r) => /again/.test(r ?? '')).length, 2);
  });

  it('throttled after too many wrong passwords for the account, even for the right one', async () => {
    for (const guess of ['guess one!', 'guess two!', 'guess three!']) assert.equal((await login('bob', guess, OFFICE)).kind, 'fail');
    const r = await login('bob', PW.bob, OFFICE);
    assert.equal(r.kind, 'throttled');
    assert.ok((r as { retryAfterSec: number }).retryAfterSec > 0);
    assert.equal(core.audited('locked_out').length, 1);
    assert.equal(core.audited('login_succeeded').length, 0);
    // the lockout ends
    core.clock.advance(16 * 60_000);
    assert.equal(ok(await login('bob', PW.bob, OFFICE)).user.name, 'bob');
  });

  it('from a network no sign-in rule admits: network, and the password is not looked at', async () => {
    assert.deepEqual(await login('alice', PW.alice, HOME), { kind: 'network' });
    assert.deepEqual(await login('alice', 'wrong', HOME), { kind: 'network' });
    assert.equal(core.audited('network_denied').length, 2);
    assert.equal(core.audited('login_failed').length, 0);
  });

  it('lockdown refuses sign-in from everywhere outside lockdown.networks', async () => {
    core.rt.lockdown = { on: true, since: core.clock.now(), by: 'test' };
    assert.deepEqual(await login('alice', PW.alice, OFFICE), { kind: 'network' });
  });
});

describe('secondFactor', () => {
  const second = (code: string, o: { user?: string; session?: string } = {}) =>
    secondFactor(core.rt, core.rt.config, { ip: VPN, user: o.user ?? 'tom', code, app: 'mail', session: o.session });

  it('the current TOTP code is accepted, spaces and all', async () => {
    const c = totpNow();
    assert.deepEqual(await second(`${c.slice(0, 3)} ${c.slice(3)}`), { kind: 'ok', method: 'totp' });
    assert.deepEqual(reasons('mfa_succeeded'), ['totp']);
  });

  it('the same code again is refused (replay), also from another session', async () => {
    const c = totpNow();
    assert.equal((await second(c, { session: 'a' })).kind, 'ok');
    assert.deepEqual(await second(c, { session: 'b' }), { kind: 'fail' });
    assert.equal(core.audited('totp_replayed').length, 1);
  });

  it('a wrong code is refused and audited', async () => {
    const c = totpNow();
    const wrong = String((Number(c) + 1) % 1_000_000).padStart(6, '0');
    assert.deepEqual(await second(wrong), { kind: 'fail' });
    assert.equal(core.audited('mfa_failed').length, 1);
  });

  it('guessing codes is throttled', async () => {
    for (const g of ['000000', '111111', '222222']) await second(g, { user: 'tom' });
    const r = await second(totpNow());
    assert.equal(r.kind, 'throttled');
  });

  it('a user without an authenticator has no code that works', async () => {
    assert.deepEqual(await second(totpNow(), { user: 'alice' }), { kind: 'fail' });
  });

  it('a recovery code works once', async () => {
    const codes = generateRecoveryCodes(core.rt.random, 2);
    await core.rt.stores.state.setRecoveryCodes('pat', codes.map((c) => hashRecoveryCode(core.rt.box, 'pat', c)));
    assert.deepEqual(await second(codes[0]!, { user: 'pat' }), { kind: 'ok', method: 'recovery' });
    assert.deepEqual(await second(codes[0]!, { user: 'pat' }), { kind: 'fail' });
    assert.deepEqual(await second(codes[1]!, { user: 'pat' }), { kind: 'ok', method: 'recovery' });
    assert.deepEqual(reasons('mfa_succeeded'), ['recovery code', 'recovery code']);
  });

  it('a recovery code may be typed in capitals, without its dash, with o for 0 and l for 1', async () => {
    const [code] = generateRecoveryCodes(core.rt.random, 1);
    await core.rt.stores.state.setRecoveryCodes('pat', [hashRecoveryCode(core.rt.box, 'pat', code!)]);
    const typed = code!.replace('-', '').toUpperCase().replace(/0/g, 'O').replace(/1/g, 'l');
    assert.deepEqual(await second(typed, { user: 'pat' }), { kind: 'ok', method: 'recovery' });
  });

  it('a recovery code for a user who also has an authenticator works, with or without its dash', async () => {
    const [code] = generateRecoveryCodes(core.rt.random, 1);
    await core.rt.stores.state.setRecoveryCodes('tom', [hashRecoveryCode(core.rt.box, 'tom', code!)]);
    assert.deepEqual(await second(code!.replace('-', ''), { user: 'tom' }), { kind: 'ok', method: 'recovery' });
  });

  it('an all-digit recovery code, typed without its dash, works for a user who has an authenticator', async () => {
    const code = '01234-56789';
    await core.rt.stores.state.setRecoveryCodes('tom', [hashRecoveryCode(core.rt.box, 'tom', code)]);
    assert.deepEqual(await second('0123456789', { user: 'tom' }), { kind: 'ok', method: 'recovery' });
  });

  it('the same all-digit recovery code typed with its dash works', async () => {
    const code = '01234-56789';
    await core.rt.stores.state.setRecoveryCodes('tom', [hashRecoveryCode(core.rt.box, 'tom', code)]);
    assert.deepEqual(await second(code, { user: 'tom' }), { kind: 'ok', method: 'recovery' });
  });

  it('a recovery code of another user does not work', async () => {
    const [code] = generateRecoveryCodes(core.rt.random, 1);
    await core.rt.stores.state.setRecoveryCodes('pat', [hashRecoveryCode(core.rt.box, 'pat', code!)]);
    assert.deepEqual(await second(code!, { user: 'tom' }), { kind: 'fail' });
  });
});

describe('changePassword', () => {
  const change = (current: string, next: string, confirm = next, o: { ip?: string; user?: string } = {}) =>
    changePassword(core.rt, core.rt.config, { app: core.app('mail'), ip: o.ip ?? OFFICE, user: o.user ?? 'alice', current, next, confirm });

  it('refuses a confirmation that differs, before looking at anything', async () => {
    assert.deepEqual(await change('anything', 'Nw5rTq8zPl3mXk7', 'Nw5rTq8zPl3mXk8'), { kind: 'mismatch' });
    assert.equal(core.events.length, 0);
  });

  it('a wrong current password is a failure, counted like one', async () => {
    assert.deepEqual(await change('not it at all', 'Nw5rTq8zPl3mXk7'), { kind: 'fail' });
    assert.match(reasons('login_failed')[0] ?? '', /wrong current password on password change/);
  });

  it('the same password again, or a weak one, is refused', async () => {
    assert.deepEqual(await change(PW.alice, PW.alice), { kind: 'same' });
    const w = await change(PW.alice, 'password123');
    assert.equal(w.kind, 'weak');
    assert.ok((w as { reasons: readonly string[] }).reasons.length > 0);
  });

  it('from a network no sign-in rule admits: network', async () => {
    assert.deepEqual(await change(PW.alice, 'Nw5rTq8zPl3mXk7', 'Nw5rTq8zPl3mXk7', { ip: HOME }), { kind: 'network' });
  });

  it('changes the password, ends every session of the user, and only the new password works after', async () => {
    const next = 'Nw5rTq8zPl3mXk7';
    const s1 = await core.rt.sessions.create({ user: 'alice', amr: ['pwd'], pending: 'none', ip: OFFICE });
    await core.rt.sessions.create({ user: 'alice', amr: ['pwd'], pending: 'none', ip: VPN });
    const other = await core.rt.sessions.create({ user: 'tom', amr: ['pwd'], pending: 'none', ip: OFFICE });
    assert.deepEqual(await change(PW.alice, next), { kind: 'ok' });
    assert.equal(await core.rt.sessions.lookup(s1.id), null);
    assert.equal((await core.rt.stores.sessions.list('alice')).length, 0);
    assert.ok(await core.rt.sessions.lookup(other.id));
    assert.equal(core.audited('session_revoked').length, 1);
    core.clock.advance(60 * 60_000);
    assert.equal((await login('alice', PW.alice, OFFICE)).kind, 'fail');
    assert.equal(ok(await login('alice', next, OFFICE)).user.name, 'alice');
    // put it back for the other tests
    core.clock.advance(60 * 60_000);
    assert.deepEqual(await change(next, PW.alice), { kind: 'ok' });
  });
});

describe('the credential check is the same for every way in', () => {
  it('an attempt from a refused network is refused before any secret is checked, whatever the via', async () => {
    for (const via of ['form', 'password-change', 'reauth', 'basic'] as const) {
      const r = await checkCredential(core.rt, core.rt.config, { app: core.app('mail'), ip: HOME, username: 'alice', secret: PW.alice, via });
      assert.deepEqual(r, { kind: 'network' }, via);
    }
  });
});
