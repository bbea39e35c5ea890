import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { hash as rawArgon2Hash } from '@node-rs/argon2';
import { isPortcullisError } from '../../src/errors.js';
import {
  MAX_PASSWORD_LENGTH,
  PasswordHasher,
  PRODUCTION_PARAMS,
  TEST_PARAMS,
  isSupportedHash,
  paramsFromEnv,
} from '../../src/auth/password.js';

const hasher = new PasswordHasher(TEST_PARAMS);

describe('PasswordHasher', () => {
  it('hashes with argon2id and the configured parameters, salted', async () => {
    const h = await hasher.hash('correct horse battery staple');
    assert.match(h, /^\$argon2id\$v=19\$m=256,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    assert.notEqual(await hasher.hash('correct horse battery staple'), h, 'a fresh salt each time');
  });

  it('verifies the right password and only that', async () => {
    const h = await hasher.hash('correct horse battery staple');
    assert.equal(await hasher.verify(h, 'correct horse battery staple'), true);
    assert.equal(await hasher.verify(h, 'correct horse battery stapl'), false);
    assert.equal(await hasher.verify(h, 'Correct horse battery staple'), false);
    assert.equal(await hasher.verify(h, ''), false);
  });

  it('NFKC-normalises, so the same password typed differently verifies', async () => {
    const composed = await hasher.hash('caf\u00e9-\uff11\uff12\uff13'); // é precomposed, full-width 123
    assert.equal(await hasher.verify(composed, 'cafe\u0301-123'), true); // e + combining acute, ASCII digits
    const ligature = await hasher.hash('\ufb01sh'); // "ﬁsh"
    assert.equal(await hasher.verify(ligature, 'fish'), true);
  });

  it('refuses to hash an empty or over-long password, and never verifies one', async () => {
    await assert.rejects(hasher.hash(''), (e) => isPortcullisError(e, 'PC_BAD_REQUEST'));
    const long = 'a'.repeat(MAX_PASSWORD_LENGTH + 1);
    await assert.rejects(hasher.hash(long), (e) => isPortcullisError(e, 'PC_BAD_REQUEST'));
    assert.ok(await hasher.hash('a'.repeat(MAX_PASSWORD_LENGTH)));
    // A hash of the long password made outside the hasher still does not let it in.
    const h = await rawArgon2Hash(long, { ...TEST_PARAMS });
    assert.equal(await hasher.verify(h, long), false);
    // NFKC expansion counts: U+FDFA normalises to 18 characters.
    await assert.rejects(hasher.hash('\ufdfa'.repeat(100)), (e) => isPortcullisError(e, 'PC_BAD_REQUEST'));
  });

  it('answers false, without throwing, for an unknown user, a malformed or a foreign hash', async () => {
    assert.equal(await hasher.verify(null, 'anything'), false);
    for (const bad of ['', 'plaintext', '$argon2id$', '$2b$10$abcdefghijklmnopqrstuu5Lp4ZrOfYoUJ4qmx0d6I5V9jGmVuJ3e', '$argon2id$v=19$m=256,t=1,p=1$!!!$!!!']) {
      assert.equal(await hasher.verify(bad, 'anything'), false, bad);
    }
    // argon2i is not argon2id: refused even with the right password.
    const i = await rawArgon2Hash('pw', { ...TEST_PARAMS, algorithm: 1 as never });
    assert.equal(isSupportedHash(i), false);
    assert.equal(await hasher.verify(i, 'pw'), false);
  });

  it('does not run a stored hash whose parameters would exhaust memory', async () => {
    const h = await hasher.hash('pw');
    const huge = h.replace('m=256', 'm=4194304'); // 4 GiB
    assert.equal(isSupportedHash(huge), false);
    const t0 = performance.now();
    assert.equal(await hasher.verify(huge, 'pw'), false);
    assert.ok(performance.now() - t0 < 1000);
  });

  it('verifies off the event loop (the libuv pool), so other requests keep being served', async () => {
    const prod = new PasswordHasher(PRODUCTION_PARAMS);
    const h = await prod.hash('pw');
    let ticks = 0;
    let maxGap = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 1);
    const t0 = performance.now();
    assert.equal(await prod.verify(h, 'pw'), true);
    const took = performance.now() - t0;
    clearInterval(timer);
    assert.ok(ticks >= 3, `only ${ticks} timer ticks during a ${took.toFixed(0)}ms verification`);
    assert.ok(maxGap < took * 0.75, `the event loop stalled for ${maxGap.toFixed(0)}ms of ${took.toFixed(0)}ms`);
  });

  it('says when a stored hash should be upgraded to the current parameters', async () => {
    const h = await hasher.hash('pw');
    assert.equal(hasher.needsRehash(h), false);
    assert.equal(new PasswordHasher({ ...TEST_PARAMS, memoryCost: 512 }).needsRehash(h), true);
    assert.equal(new PasswordHasher({ ...TEST_PARAMS, timeCost: 2 }).needsRehash(h), true);
    assert.equal(hasher.needsRehash('garbage'), true);
  });

  it('refuses parameters argon2 cannot run', () => {
    assert.throws(() => new PasswordHasher({ memoryCost: 4, timeCost: 1, parallelism: 1 }), { code: 'PC_CONFIG_INVALID', message: /invalid argon2 parameters/ });
    assert.throws(() => new PasswordHasher({ memoryCost: 256, timeCost: 0, parallelism: 1 }), { code: 'PC_CONFIG_INVALID', message: /invalid argon2 parameters/ });
    assert.throws(() => new PasswordHasher({ memoryCost: 256.5, timeCost: 1, parallelism: 1 }), { code: 'PC_CONFIG_INVALID', message: /invalid argon2 parameters/ });
  });
});

describe('parameters', () => {
  it('production parameters are at least OWASP minimum (m=19 MiB, t=2, p=1)', () => {
    assert.ok(PRODUCTION_PARAMS.memoryCost >= 19456);
    assert.ok(PRODUCTION_PARAMS.timeCost >= 2);
    assert.ok(PRODUCTION_PARAMS.memoryCost * PRODUCTION_PARAMS.timeCost >= 19456 * 2);
  });

  it('PORTCULLIS_ARGON2=test selects the cheap parameters; anything unknown is refused', () => {
    assert.equal(paramsFromEnv({}), PRODUCTION_PARAMS);
    assert.equal(paramsFromEnv({ PORTCULLIS_ARGON2: 'test' }), TEST_PARAMS);
    assert.equal(paramsFromEnv({ PORTCULLIS_ARGON2: 'production' }), PRODUCTION_PARAMS);
    assert.throws(() => paramsFromEnv({ PORTCULLIS_ARGON2: 'fast' }), (e) => isPortcullisError(e, 'PC_CONFIG_INVALID'));
  });
});
