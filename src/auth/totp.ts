/**
 * TOTP (RFC 6238) over otplib 13's functional API.
 *
 * otplib does the HOTP arithmetic, the base32 decoding and the constant-time comparison, and
 * its `verifySync` reports the matched time step (`timeStep`), which is what replay protection
 * needs: the caller claims `totp:<user>:<step>` once through `RateStore.claim`, so a code seen
 * by a shoulder-surfer or a phishing proxy cannot be used a second time within its window.
 *
 * Everything an attacker types is checked here before otplib sees it: ASCII digits only, the
 * exact length, spaces stripped, bounded input size. Time comes from the caller (a Clock), never
 * from Date.now(), so tests fix it.
 */
import { generateSync, generateURI, ScureBase32Plugin, verifySync } from 'otplib';
import type { Random } from '../clock.js';
import { PortcullisError } from '../errors.js';

export type TotpAlgorithm = 'SHA1' | 'SHA256' | 'SHA512';
export type TotpDigits = 6 | 7 | 8;

export interface TotpParams {
  /** Seconds per time step. */
  period: number;
  digits: TotpDigits;
  algorithm: TotpAlgorithm;
}

/** Secret sizes matching each HMAC's block-relevant output size (RFC 6238 reference seeds). */
export const SECRET_BYTES: Readonly<Record<TotpAlgorithm, number>> = Object.freeze({ SHA1: 20, SHA256: 32, SHA512: 64 });

/** RFC 4226 section 4 asks for at least 128 bits of shared secret. */
const MIN_SECRET_BYTES = 16;
const MAX_SECRET_BYTES = 64;
/** Far more than any legitimate paste of an 8-digit code with spaces. */
const MAX_CODE_INPUT = 32;
const MAX_SKEW = 10;

const base32 = new ScureBase32Plugin();

const ALGO: Record<TotpAlgorithm, 'sha1' | 'sha256' | 'sha512'> = { SHA1: 'sha1', SHA256: 'sha256', SHA512: 'sha512' };

/** A new random secret, base32 without padding, sized for `algorithm`. */
export function generateSecret(random: Random, algorithm: TotpAlgorithm = 'SHA1'): string {
  const n = SECRET_BYTES[algorithm];
  const bytes = random.bytes(n);
  if (bytes.length !== n) throw new PortcullisError('PC_CONFIG_INVALID', 'the random source returned too few bytes');
  return base32.encode(bytes);
}

/**
 * Canonical form of a base32 secret typed by an admin (`portcullis totp set --secret`): spaces
 * and dashes removed, upper case, no padding. Refuses anything that is not base32 or decodes to
 * fewer than 16 or more than 64 bytes (PC_BAD_REQUEST).
 */
export function normaliseSecret(input: string): string {
  const s = input.replace(/[\s-]/g, '').replace(/=+$/, '').toUpperCase();
  if (s.length === 0 || s.length > 128 || !/^[A-Z2-7]+$/.test(s)) {
    throw new PortcullisError('PC_BAD_REQUEST', 'the TOTP secret must be base32 (letters A-Z and digits 2-7)');
  }
  let bytes: Uint8Array;
  try {
    bytes = base32.decode(s);
  } catch {
    throw new PortcullisError('PC_BAD_REQUEST', 'the TOTP secret is not valid base32');
  }
  if (bytes.length < MIN_SECRET_BYTES || bytes.length > MAX_SECRET_BYTES) {
    throw new PortcullisError(
      'PC_BAD_REQUEST',
      `the TOTP secret must be ${MIN_SECRET_BYTES} to ${MAX_SECRET_BYTES} bytes (${Math.ceil((MIN_SECRET_BYTES * 8) / 5)} to ${Math.ceil((MAX_SECRET_BYTES * 8) / 5)} base32 characters); this one is ${bytes.length}`,
    );
  }
  return base32.encode(bytes);
}

/**
 * The `otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=...` URI authenticator apps scan.
 * Neither the issuer nor the account may contain ':' (it separates them in the label).
 */
export function otpauthUri(o: { issuer: string; account: string; secret: string } & TotpParams): string {
  if (o.issuer.includes(':') || o.account.includes(':')) {
    throw new PortcullisError('PC_CONFIG_INVALID', 'the TOTP issuer and account name must not contain ":"');
  }
  checkParams(o);
  return generateURI({
    issuer: o.issuer,
    label: o.account,
    secret: o.secret,
    algorithm: ALGO[o.algorithm],
    digits: o.digits,
    period: o.period,
  });
}

/** The code for the time step containing `time` (ms since the epoch). */
export function generateCode(secret: string, o: { time: number } & TotpParams): string {
  checkParams(o);
  return wrap(() =>
    generateSync({
      secret,
      epoch: epochSeconds(o.time),
      period: o.period,
      digits: o.digits,
      algorithm: ALGO[o.algorithm],
    }),
  );
}

/**
 * The code with spaces removed, or null unless it is exactly `digits` ASCII digits.
 * Exported so callers can tell "malformed" from "wrong" without a verification.
 */
export function normaliseCode(code: string, digits: TotpDigits): string | null {
  if (typeof code !== 'string' || code.length > MAX_CODE_INPUT) return null;
  const c = code.replace(/[ \t\u00a0]/g, '');
  return c.length === digits && /^[0-9]+$/.test(c) ? c : null;
}

/**
 * The time step (counter) `code` matches within `skew` steps either side of `now` (ms), or null
 * if it matches none or is malformed. Comparison is constant-time. The caller must claim the
 * returned step (e.g. `rates.claim(`totp:${user}:${step}`, ...)`) and refuse a code whose step
 * was already claimed: this function alone does not prevent replay.
 */
export function verifyCode(
  secret: string,
  code: string,
  o: { now: number; skew: number } & TotpParams,
): number | null {
  checkParams(o);
  if (!Number.isInteger(o.skew) || o.skew < 0 || o.skew > MAX_SKEW) {
    throw new PortcullisError('PC_CONFIG_INVALID', `TOTP skew must be an integer from 0 to ${MAX_SKEW}`);
  }
  const c = normaliseCode(code, o.digits);
  if (c === null) return null;
  const r = wrap(() =>
    verifySync({
      secret,
      token: c,
      epoch: epochSeconds(o.now),
      period: o.period,
      digits: o.digits,
      algorithm: ALGO[o.algorithm],
      // otplib checks every step overlapping [epoch - tol, epoch + tol]; with tol = skew *
      // period that is exactly the current step and `skew` steps either side.
      epochTolerance: o.skew * o.period,
    }),
  );
  if (!r.valid) return null;
  // otplib's functional `verifySync` is typed for TOTP and HOTP alike; only TOTP results carry
  // `timeStep`, which equals the current step plus the reported drift.
  return 'timeStep' in r ? (r.timeStep as number) : Math.floor(epochSeconds(o.now) / o.period) + r.delta;
}

function epochSeconds(ms: number): number {
  if (!Number.isFinite(ms) || ms < 0) throw new PortcullisError('PC_CONFIG_INVALID', 'invalid time for TOTP');
  return Math.floor(ms / 1000);
}

function checkParams(o: TotpParams): void {
  if (!Number.isInteger(o.period) || o.period < 1 || o.period > 3600) {
    throw new PortcullisError('PC_CONFIG_INVALID', 'TOTP period must be an integer number of seconds from 1 to 3600');
  }
  if (o.digits !== 6 && o.digits !== 7 && o.digits !== 8) throw new PortcullisError('PC_CONFIG_INVALID', 'TOTP digits must be 6, 7 or 8');
  if (!(o.algorithm in ALGO)) throw new PortcullisError('PC_CONFIG_INVALID', 'TOTP algorithm must be SHA1, SHA256 or SHA512');
}

/** A stored secret otplib cannot use (bad base32, too short) is an operator problem, not a wrong code. */
function wrap<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof PortcullisError) throw e;
    // The library's message may quote part of the secret; name the failure only.
    throw new PortcullisError('PC_CONFIG_INVALID', `the TOTP secret or parameters were rejected (${(e as Error).name})`);
  }
}
