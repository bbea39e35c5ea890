import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { cryptoRandom } from '../../src/clock.js';
import { isPortcullisError } from '../../src/errors.js';
import { SecretBox } from '../../src/auth/secret-box.js';
import { generateRecoveryCodes, hashRecoveryCode, normaliseRecoveryCode, RECOVERY_ALPHABET } from '../../src/auth/recovery.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const KEY = Buffer.alloc(32, 7);
const box = new SecretBox(KEY);
const unopenable = (e: unknown) => isPortcullisError(e, 'PC_CONFIG_INVALID');

const dirs: TmpDir[] = [];
after(async () => {
  for (const d of dirs) await d.cleanup();
});
async function tmp(): Promise<string> {
  const d = await tmpDir('portcullis-box-');
  dirs.push(d);
  return d.dir;
}

describe('SecretBox seal/open', () => {
  it('round-trips, in the v1 format, with a fresh IV every time', () => {
    const s1 = box.seal('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', 'totp:alice');
    const s2 = box.seal('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', 'totp:alice');
    assert.match(s1, /^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
    assert.notEqual(s1, s2);
    assert.equal(box.open(s1, 'totp:alice'), 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');
    assert.equal(box.open(s2, 'totp:alice'), 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');
    assert.ok(!s1.includes('GEZDGNBV'));
  });

  it("will not open a secret moved to another user's record or purpose", () => {
    const s = box.seal('secret', 'totp:alice');
    assert.throws(() => box.open(s, 'totp:bob'), unopenable);
    assert.throws(() => box.open(s, 'app-password:alice'), unopenable);
  });

  it('will not open a tampered, truncated or foreign value', () => {
    const s = box.seal('secret', 'totp:alice');
    const [v, iv, ct, tag] = s.split('.') as [string, string, string, string];
    const flip = (b64: string) => {
      const b = Buffer.from(b64, 'base64url');
      b[0]! ^= 1;
      return b.toString('base64url');
    };
    for (const bad of [
      `${v}.${flip(iv)}.${ct}.${tag}`,
      `${v}.${iv}.${flip(ct)}.${tag}`,
      `${v}.${iv}.${ct}.${flip(tag)}`,
      `${v}.${iv}.${ct}.${tag.slice(0, 10)}`,
      `v2.${iv}.${ct}.${tag}`,
      `${v}.${iv}.${ct}`,
      `${s}.x`,
      `${v}.${iv}.${ct}.${tag}=`,
      '',
      'secret',
    ]) {
      assert.throws(() => box.open(bad, 'totp:alice'), unopenable, bad);
    }
    assert.throws(() => new SecretBox(Buffer.alloc(32, 8)).open(s, 'totp:alice'), unopenable);
  });

  it('uses the random source it is given for IVs', () => {
    const fixed = new SecretBox(KEY, { bytes: (n) => Buffer.alloc(n, 1) });
    assert.equal(fixed.seal('x', 'p'), fixed.seal('x', 'p'));
    assert.equal(fixed.seal('x', 'p').split('.')[1], Buffer.alloc(12, 1).toString('base64url'));
  });

  it('refuses a key that is not 32 bytes', () => {
    assert.throws(() => new SecretBox(Buffer.alloc(16)), unopenable);
  });
});

describe('SecretBox hmac', () => {
  it('is deterministic per key and separated by purpose', () => {
    assert.equal(box.hmac('recovery:alice', 'abc'), box.hmac('recovery:alice', 'abc'));
    assert.notEqual(box.hmac('recovery:alice', 'abc'), box.hmac('recovery:bob', 'abc'));
    assert.notEqual(box.hmac('recovery:alice', 'abc'), new SecretBox(Buffer.alloc(32, 8)).hmac('recovery:alice', 'abc'));
    assert.match(box.hmac('recovery:alice', 'abc'), /^[A-Za-z0-9_-]{43}$/);
  });

  it('refuses a purpose that could be confused with the value', () => {
    assert.throws(() => box.hmac('recovery\nalice', 'abc'), { code: 'PC_CONFIG_INVALID', message: /invalid secret-box purpose/ });
    assert.throws(() => box.hmac('', 'abc'), { code: 'PC_CONFIG_INVALID', message: /invalid secret-box purpose/ });
  });
});

describe('SecretBox.fromDataDir', () => {
  it('creates data_dir/secret.key (0600) once and reuses it', async () => {
    const dir = join(await tmp(), 'data');
    const a = await SecretBox.fromDataDir(dir, {});
    const st = await stat(join(dir, 'secret.key'));
    assert.equal(st.mode & 0o777, 0o600);
    const b = await SecretBox.fromDataDir(dir, {});
    assert.equal(b.open(a.seal('kept across restarts', 'totp:alice'), 'totp:alice'), 'kept across restarts');
  });

  it('two processes starting at once end up with the same key', async () => {
    const dir = await tmp();
    const [a, b] = await Promise.all([SecretBox.fromDataDir(dir, {}), SecretBox.fromDataDir(dir, {})]);
    assert.equal(b.open(a.seal('x', 'p'), 'p'), 'x');
  });

  it('prefers PORTCULLIS_SECRET_KEY (hex or base64) and then writes no key file', async () => {
    const dir = await tmp();
    const raw = Buffer.alloc(32, 9);
    const hex = await SecretBox.fromDataDir(dir, { PORTCULLIS_SECRET_KEY: raw.toString('hex') });
    const b64 = await SecretBox.fromDataDir(dir, { PORTCULLIS_SECRET_KEY: raw.toString('base64') });
    const b64url = await SecretBox.fromDataDir(dir, { PORTCULLIS_SECRET_KEY: raw.toString('base64url') });
    const direct = new SecretBox(raw);
    for (const b of [hex, b64, b64url]) assert.equal(direct.open(b.seal('x', 'p'), 'p'), 'x');
    await assert.rejects(stat(join(dir, 'secret.key')), /ENOENT/);
  });

  it('refuses a malformed env key without echoing it', async () => {
    const dir = await tmp();
    for (const bad of ['hunter2-not-a-key', Buffer.alloc(16, 1).toString('hex'), Buffer.alloc(31, 1).toString('base64')]) {
      await assert.rejects(SecretBox.fromDataDir(dir, { PORTCULLIS_SECRET_KEY: bad }), (e) => unopenable(e) && !(e as Error).message.includes(bad));
    }
  });

  it('refuses a key file others can read, and a damaged one', async () => {
    const dir = await tmp();
    await SecretBox.fromDataDir(dir, {});
    const file = join(dir, 'secret.key');
    await chmod(file, 0o644);
    await assert.rejects(SecretBox.fromDataDir(dir, {}), (e) => unopenable(e) && /chmod 600/.test((e as Error).message));
    await chmod(file, 0o600);
    await writeFile(file, 'short\n');
    await assert.rejects(SecretBox.fromDataDir(dir, {}), unopenable);
  });

  it('stores the key as base64 text', async () => {
    const dir = await tmp();
    await SecretBox.fromDataDir(dir, {}, cryptoRandom);
    assert.equal(Buffer.from((await readFile(join(dir, 'secret.key'), 'utf8')).trim(), 'base64').length, 32);
  });
});

describe('recovery codes', () => {
  it('makes n distinct xxxxx-xxxxx codes from the unambiguous alphabet', () => {
    const codes = generateRecoveryCodes(cryptoRandom);
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10);
    for (const c of codes) {
      assert.match(c, /^[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}$/);
      assert.ok(!/[ilou]/.test(c));
    }
    assert.equal(generateRecoveryCodes(cryptoRandom, 3).length, 3);
    // 10 characters of a 32-symbol alphabet: 50 bits.
    assert.equal(RECOVERY_ALPHABET.length, 32);
  });

  it('maps every random byte value to a symbol uniformly', () => {
    // A deterministic stand-in for a CSPRNG (SHA-256 in counter mode), so the counts are fixed.
    let ctr = 0;
    const stream = { bytes: (n: number) => createHash('sha256').update(String(ctr++)).digest().subarray(0, n) };
    const counts = new Map<string, number>();
    for (const c of generateRecoveryCodes(stream, 100)) for (const ch of c.replace('-', '')) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    assert.equal(counts.size, 32, 'every symbol occurs');
    // 1000 symbols over 32: about 31 each.
    assert.ok([...counts.values()].every((n) => n >= 15 && n <= 50), JSON.stringify([...counts]));
  });

  it('fails instead of looping when the random source repeats itself', () => {
    assert.throws(() => generateRecoveryCodes({ bytes: (n) => Buffer.alloc(n, 3) }, 2), RangeError);
  });

  it('accepts what a user types back: case, spaces, dashes, o/i/l for 0/1', () => {
    const code = '01abc-defgh';
    const h = hashRecoveryCode(box, 'alice', code);
    for (const typed of ['01ABC-DEFGH', '01abcdefgh', ' 01abc defgh ', 'O1abc-defgh', 'oIabc-defgh', '0labc–defgh']) {
      assert.equal(hashRecoveryCode(box, 'alice', typed), h, typed);
    }
    assert.equal(normaliseRecoveryCode('01abc-defgh'), '01abcdefgh');
  });

  it("binds the hash to the user and the key, and rejects malformed codes", () => {
    const h = hashRecoveryCode(box, 'alice', '01abc-defgh');
    assert.notEqual(hashRecoveryCode(box, 'bob', '01abc-defgh'), h);
    assert.notEqual(hashRecoveryCode(new SecretBox(Buffer.alloc(32, 8)), 'alice', '01abc-defgh'), h);
    assert.notEqual(hashRecoveryCode(box, 'alice', '01abc-defgj'), h);
    for (const bad of ['', '01abc-defg', '01abc-defghj', '01abc-defgu', '01abc!defgh', 'x'.repeat(100)]) {
      assert.equal(normaliseRecoveryCode(bad), null, bad);
      assert.notEqual(hashRecoveryCode(box, 'alice', bad), h);
    }
    assert.equal(hashRecoveryCode(box, 'alice', 'bad'), hashRecoveryCode(box, 'alice', 'also bad'), 'malformed codes all miss the same way');
  });
});
