/**
 * Password guidance as a user meets it when setting or using a password: the passwords that
 * broke into Parliament's mailboxes met the technical rules; these must not.
 */
import { strict as assert } from 'node:assert';
import { before, describe, it } from 'node:test';
import type { PasswordPolicy } from '../../src/config/types.js';
import { PasswordGuidance, warmPasswordGuidance } from '../../src/auth/guidance.js';

/** The SPEC defaults. */
const POLICY: PasswordPolicy = { minLength: 8, blocklist: 'common', minStrength: 3, onWeak: 'deny' };
const alice = { user: 'alice', email: 'alice.smith@example.org' };

describe('PasswordGuidance', () => {
  before(() => warmPasswordGuidance());
  const g = new PasswordGuidance(POLICY);

  it('refuses common passwords, whatever their case or disguise', () => {
    for (const pw of ['password', 'Password1', 'qwerty123', 'iloveyou', 'PASSWORD', 'P@ssw0rd', 'letmein', 'drowssap']) {
      const r = g.assess(pw, alice);
      assert.equal(r.ok, false, pw);
      assert.ok(r.reasons.includes('common'), `${pw}: ${r.reasons.join(',')}`);
      assert.ok(r.score <= 1, `${pw} scores ${r.score}`);
    }
  });

  it('accepts a long random passphrase', () => {
    for (const pw of ['glacier-moth-7-ferry-quietly-orbit', 'vq8#Lm2!zR5t^Wc9', 'Regal ostrich tuning lanterns at 4am']) {
      assert.deepEqual(g.assess(pw, alice), { ok: true, reasons: [], score: 4 }, pw);
    }
  });

  it('refuses a password shorter than min_length, counting code points', () => {
    assert.deepEqual(g.assess('x7#Qp2!', alice).reasons.includes('too_short'), true);
    const long = new PasswordGuidance({ ...POLICY, minLength: 4, minStrength: 0 });
    assert.deepEqual(long.assess('🔑🔒🗝🚪', alice).reasons, [], 'four emoji are four characters, not eight UTF-16 units');
    assert.deepEqual(long.assess('🔑🔒🗝', alice).reasons, ['too_short']);
    const decomposed = 'e\u0301'.repeat(4); // é written as e + combining accent
    assert.deepEqual(long.assess(decomposed, alice).reasons, [], 'a decomposed accent counts once');
  });

  it('refuses a password containing the user name or e-mail, in any case', () => {
    for (const pw of ['Vx93!mQz#2-alice', 'ALICE-Vx93!mQz#2', 'Vx93!alice.smith#2Lk']) {
      assert.ok(g.assess(pw, alice).reasons.includes('contains_user'), pw);
    }
    assert.deepEqual(g.assess('Vx93!mQz#2-Lk8w', alice).reasons, []);
    // too short a name to look for
    assert.ok(!g.assess('Vx93!mQz#al2-Lk8w', { user: 'al' }).reasons.includes('contains_user'));
  });

  it('holds min_strength against the zxcvbn score, with the user name as a known input', () => {
    const r = g.assess('Summer2024!', alice);
    assert.equal(r.ok, false);
    assert.deepEqual(r.reasons, ['weak']);
    assert.ok(r.score < 3);
    const lax = new PasswordGuidance({ ...POLICY, minStrength: 0, blocklist: 'none' });
    assert.deepEqual(lax.assess('Summer2024!', alice).reasons, []);
    assert.deepEqual(lax.assess('password', alice).reasons, [], 'blocklist: none turns the list off');
  });

  it('reports every rule broken', () => {
    assert.deepEqual(g.assess('alice', { user: 'alice' }).reasons, ['too_short', 'common', 'contains_user', 'weak']);
  });

  it('does not carry one user\u2019s name into the next assessment', () => {
    assert.ok(g.assess('Zq7!wertmallory', { user: 'mallory' }).reasons.includes('contains_user'));
    const r = g.assess('Zq7!wertmallory', { user: 'bob' });
    assert.ok(!r.reasons.includes('contains_user'));
  });

  it('stays fast on long and pathological input', () => {
    const inputs = ['p4$$w0rd'.repeat(500), '1'.repeat(10_000), 'aA1!'.repeat(2000), '@'.repeat(5000)];
    const t0 = performance.now();
    for (const pw of inputs) assert.equal(g.assess(pw, alice).ok, false, pw.slice(0, 16));
    const ms = performance.now() - t0;
    // zxcvbn with its defaults takes seconds on the first of these alone
    assert.ok(ms < 4000, `took ${ms.toFixed(0)} ms`);
  });
});
