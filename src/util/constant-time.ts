/**
 * The one constant-time comparison of secrets (tokens, CSRF values, app-password digests): both
 * sides are hashed first, so neither their contents nor their lengths shape the time taken.
 * False when either side is missing or empty.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export function sameSecret(a: string | undefined | null, b: string | undefined | null): boolean {
  if (typeof a !== 'string' || typeof b !== 'string' || a.length === 0 || b.length === 0) return false;
  const x = createHash('sha256').update(a, 'utf8').digest();
  const y = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(x, y);
}
