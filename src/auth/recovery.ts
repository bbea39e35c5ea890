/**
 * One-time recovery codes, for a user who has lost their authenticator.
 *
 * A code is 10 characters of Crockford's base32 alphabet (digits and lower-case letters
 * without i, l, o, u), shown as `xxxxx-xxxxx`: 50 bits of entropy, uniform (each character
 * takes 5 bits of a random byte). What the user types back is forgiving: case, spaces and
 * dashes are ignored, and the letters people confuse with digits (o, i, l) read as 0 and 1.
 *
 * Only keyed hashes are stored (HMAC under the secret box's key, bound to the user), so a
 * leaked state store reveals no code, and a code cannot be tried offline without the key.
 * Online guessing is throttled by the MFA limit like a TOTP code.
 */
import type { Random } from '../clock.js';
import type { SecretBox } from './secret-box.js';

export const RECOVERY_ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const CODE_CHARS = 10;
const MAX_INPUT = 64;

/** `n` distinct new codes, formatted `xxxxx-xxxxx`, to show to the user once. */
export function generateRecoveryCodes(random: Random, n = 10): string[] {
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new RangeError('recovery code count must be 1..100');
  const codes = new Set<string>();
  // A working CSPRNG repeats a 50-bit code essentially never; a broken one must not hang us.
  for (let attempts = 0; codes.size < n; attempts++) {
    if (attempts >= n * 4) throw new RangeError('the random source keeps repeating itself');
    const b = random.bytes(CODE_CHARS);
    if (b.length !== CODE_CHARS) throw new RangeError('the random source returned too few bytes');
    let s = '';
    // 256 is a multiple of 32, so the low five bits of a uniform byte are uniform.
    for (const x of b) s += RECOVERY_ALPHABET[x & 31];
    codes.add(`${s.slice(0, 5)}-${s.slice(5)}`);
  }
  return [...codes];
}

/** The canonical 10-character form of a typed code, or null if it cannot be one. */
export function normaliseRecoveryCode(code: string): string | null {
  if (typeof code !== 'string' || code.length > MAX_INPUT) return null;
  const s = code
    .toLowerCase()
    .replace(/[\s\-\u2010-\u2015]/g, '')
    .replace(/o/g, '0')
    .replace(/[il]/g, '1');
  if (s.length !== CODE_CHARS) return null;
  for (const ch of s) if (!RECOVERY_ALPHABET.includes(ch)) return null;
  return s;
}

/**
 * The stored form of `code` for `user`. A malformed code hashes to a value no generated code
 * can have, so a lookup simply finds nothing; callers may check `normaliseRecoveryCode` first
 * to skip the lookup.
 */
export function hashRecoveryCode(box: SecretBox, user: string, code: string): string {
  const n = normaliseRecoveryCode(code);
  // '!' is outside the alphabet: the malformed branch cannot collide with a real code.
  return box.hmac(`recovery:${user}`, n ?? `!malformed`);
}
