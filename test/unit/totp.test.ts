import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import type { Random } from '../../src/clock.js';
import { isPortcullisError } from '../../src/errors.js';
import {
  generateCode,
  generateSecret,
  normaliseCode,
  normaliseSecret,
  otpauthUri,
  verifyCode,
  type TotpAlgorithm,
} from '../../src/auth/totp.js';

/** Base32 of the RFC 6238 Appendix B seeds: ASCII "1234567890" repeated to 20, 32 and 64 bytes. */
const RFC_SEEDS: Record<TotpAlgorithm, string> = {
  SHA1: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ',
  SHA256: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA',
  SHA512:
    'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNA',
};

/** RFC 6238 Appendix B: time (s), then the 8-digit TOTP for SHA1, SHA256, SHA512. */
const RFC_VECTORS: Array<[number, string, string, string]> = [
  [59, '94287082', '46119246', '90693936'],
  [1111111109, '07081804', '68084774', '25091201'],
  [1111111111, '14050471', '67062674', '99943326'],
  [1234567890, '89005924', '91819424', '93441116'],
  [2000000000, '69279037', '90698825', '38618901'],
  [20000000000, '65353130', '77737706', '47863826'],
];

const ALGOS: TotpAlgorithm[] = ['SHA1', 'SHA256', 'SHA512'];

function fixedRandom(byte: number): Random {
  return { bytes: (n) => Buffer.alloc(n, byte) };
}

describe('TOTP: RFC 6238 Appendix B', () => {
  for (const [t, ...codes] of RFC_VECTORS) {
    ALGOS.forEach((algorithm, i) => {
      const expected = codes[i]!;
      it(`${algorithm} at T=${t}s is ${expected}`, () => {
        const o = { period: 30, digits: 8 as const, algorithm };
        assert.equal(generateCode(RFC_SEEDS[algorithm], { ...o, time: t * 1000 }), expected);
        // And the verifier accepts it at that time, reporting the RFC's counter.
        assert.equal(verifyCode(RFC_SEEDS[algorithm], expected, { ...o, now: t * 1000, skew: 0 }), Math.floor(t / 30));
      });
    });
  }
});

describe('verifyCode', () => {
  const secret = RFC_SEEDS.SHA1;
  const base = { period: 30, digits: 6 as const, algorithm: 'SHA1' as const };
  const now = 1_700_000_015_000; // mid-step
  const step = Math.floor(now / 30_000);
  const codeAt = (s: number) => generateCode(secret, { ...base, time: s * 30_000 });

  it('returns the matched time step, the same each time, so the caller can claim it once', () => {
    const c = codeAt(step);
    assert.equal(verifyCode(secret, c, { ...base, now, skew: 1 }), step);
    assert.equal(verifyCode(secret, c, { ...base, now: now + 10_000, skew: 1 }), step);
  });

  it('accepts a code from `skew` steps either side and reports which step', () => {
    assert.equal(verifyCode(secret, codeAt(step - 1), { ...base, now, skew: 1 }), step - 1);
    assert.equal(verifyCode(secret, codeAt(step + 1), { ...base, now, skew: 1 }), step + 1);
    assert.equal(verifyCode(secret, codeAt(step - 2), { ...base, now, skew: 2 }), step - 2);
  });

  it('refuses a code outside the window', () => {
    assert.equal(verifyCode(secret, codeAt(step - 1), { ...base, now, skew: 0 }), null);
    assert.equal(verifyCode(secret, codeAt(step + 1), { ...base, now, skew: 0 }), null);
    assert.equal(verifyCode(secret, codeAt(step - 2), { ...base, now, skew: 1 }), null);
    assert.equal(verifyCode(secret, codeAt(step + 2), { ...base, now, skew: 1 }), null);
  });

  it('refuses a code made with another secret, algorithm or digit count', () => {
    const c = codeAt(step);
    assert.equal(verifyCode(RFC_SEEDS.SHA256, c, { ...base, now, skew: 1 }), null);
    assert.equal(verifyCode(secret, generateCode(secret, { ...base, algorithm: 'SHA256', time: now }), { ...base, now, skew: 0 }), null);
    const eight = generateCode(secret, { ...base, digits: 8, time: now });
    assert.equal(verifyCode(secret, eight, { ...base, now, skew: 0 }), null);
    assert.equal(verifyCode(secret, eight.slice(2), { ...base, now, skew: 0 }), step, '6-digit code is the low digits of the 8-digit one');
  });

  it('strips spaces a user typed or pasted', () => {
    const c = codeAt(step);
    assert.equal(verifyCode(secret, `${c.slice(0, 3)} ${c.slice(3)}`, { ...base, now, skew: 0 }), step);
    assert.equal(verifyCode(secret, ` ${c}\t`, { ...base, now, skew: 0 }), step);
  });

  it('refuses malformed input without trying it', () => {
    const c = codeAt(step);
    const bad = [
      '',
      c.slice(1), // too short
      `${c}0`, // too long
      `+${c.slice(1)}`,
      `-${c.slice(1)}`,
      `${c.slice(0, 5)}a`,
      `${c.slice(0, 5)}.`,
      // Non-ASCII digits that \d or Number() might accept somewhere else:
      c.replace(/[0-9]/g, (d) => String.fromCharCode(0x0660 + Number(d))), // Arabic-Indic
      c.replace(/[0-9]/g, (d) => String.fromCharCode(0xff10 + Number(d))), // full-width
      `${c}\u0000`,
      '0x' + c.slice(2),
      '1e5000',
      c.repeat(1000),
    ];
    for (const b of bad) assert.equal(verifyCode(secret, b, { ...base, now, skew: 1 }), null, JSON.stringify(b.slice(0, 20)));
    assert.equal(normaliseCode(c.repeat(1000), 6), null);
    assert.equal(normaliseCode(` ${c} `, 6), c);
  });

  it('refuses an unreasonable skew instead of scanning a huge window', () => {
    assert.throws(() => verifyCode(secret, codeAt(step), { ...base, now, skew: 1000 }), (e) => isPortcullisError(e, 'PC_CONFIG_INVALID'));
    assert.throws(() => verifyCode(secret, codeAt(step), { ...base, now, skew: -1 }), (e) => isPortcullisError(e, 'PC_CONFIG_INVALID'));
  });
});

describe('generateSecret', () => {
  it('draws 20, 32 or 64 bytes from the random source, base32 without padding', () => {
    assert.equal(generateSecret(fixedRandom(0)), 'A'.repeat(32));
    assert.equal(generateSecret(fixedRandom(0), 'SHA256').length, 52);
    assert.equal(generateSecret(fixedRandom(0), 'SHA512').length, 103);
    assert.equal(generateSecret(fixedRandom(0x31), 'SHA1'), 'GEYTCMJRGEYTCMJRGEYTCMJRGEYTCMJR');
    assert.match(generateSecret({ bytes: (n) => Buffer.from(Array.from({ length: n }, (_, i) => i * 37)) }), /^[A-Z2-7]+$/);
  });

  it('makes secrets that round-trip through generate and verify', () => {
    for (const algorithm of ALGOS) {
      const s = generateSecret(fixedRandom(0x5a), algorithm);
      const o = { period: 30, digits: 6 as const, algorithm };
      const c = generateCode(s, { ...o, time: 1_000_000_000_000 });
      assert.equal(verifyCode(s, c, { ...o, now: 1_000_000_000_000, skew: 0 }), Math.floor(1_000_000_000 / 30));
    }
  });
});

describe('normaliseSecret (admin-provisioned tokens)', () => {
  it('accepts spaced, lower-case or padded base32 and returns it canonical', () => {
    assert.equal(normaliseSecret('gezd gnbv gy3t qojq gezd gnbv gy3t qojq'), RFC_SEEDS.SHA1);
    assert.equal(normaliseSecret(`${RFC_SEEDS.SHA256.toLowerCase()}====`), RFC_SEEDS.SHA256);
  });

  it('refuses short, oversized or non-base32 secrets', () => {
    for (const bad of ['', 'JBSWY3DPEHPK3PXP' /* 10 bytes */, 'GEZDGNBVGY3TQOJ1GEZDGNBVGY3TQOJQ', 'A'.repeat(200), 'ÄÖÜ']) {
      assert.throws(() => normaliseSecret(bad), (e) => isPortcullisError(e, 'PC_BAD_REQUEST'), bad);
    }
  });
});

describe('otpauthUri', () => {
  it('names issuer and account and carries the secret', () => {
    const uri = otpauthUri({ issuer: 'Example Mail', account: 'alice@example.org', secret: RFC_SEEDS.SHA1, period: 30, digits: 6, algorithm: 'SHA1' });
    const u = new URL(uri);
    assert.equal(u.protocol, 'otpauth:');
    assert.equal(u.host, 'totp');
    assert.equal(decodeURIComponent(u.pathname), '/Example Mail:alice@example.org');
    assert.equal(u.searchParams.get('secret'), RFC_SEEDS.SHA1);
    assert.equal(u.searchParams.get('issuer'), 'Example Mail');
  });

  it('states non-default parameters so the app generates matching codes', () => {
    const u = new URL(otpauthUri({ issuer: 'X', account: 'bob', secret: RFC_SEEDS.SHA256, period: 60, digits: 8, algorithm: 'SHA256' }));
    assert.equal(u.searchParams.get('algorithm'), 'SHA256');
    assert.equal(u.searchParams.get('digits'), '8');
    assert.equal(u.searchParams.get('period'), '60');
  });

  it('refuses a colon in the issuer or account (it would shift the label)', () => {
    assert.throws(() => otpauthUri({ issuer: 'a:b', account: 'bob', secret: RFC_SEEDS.SHA1, period: 30, digits: 6, algorithm: 'SHA1' }), { code: 'PC_CONFIG_INVALID', message: /must not contain ":"/ });
    assert.throws(() => otpauthUri({ issuer: 'a', account: 'b:c', secret: RFC_SEEDS.SHA1, period: 30, digits: 6, algorithm: 'SHA1' }), { code: 'PC_CONFIG_INVALID', message: /must not contain ":"/ });
  });
});
