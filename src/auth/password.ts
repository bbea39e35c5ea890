/**
 * Password hashing with argon2id (@node-rs/argon2).
 *
 * - The async `hash`/`verify` of @node-rs/argon2 are napi-rs `AsyncTask`s whose `compute` runs
 *   on the libuv thread pool, so a verification never blocks the event loop (a test checks
 *   that timers keep firing during one). How many run at once is bounded by the caller
 *   (`login_limits.maxConcurrentHashes`) and by the pool size (UV_THREADPOOL_SIZE).
 * - Passwords are NFKC-normalised before hashing, as NIST SP 800-63B 5.1.1.2 recommends, so
 *   the same password typed on two keyboards (composed vs decomposed accents, full-width
 *   digits) verifies.
 * - Passwords longer than MAX_PASSWORD_LENGTH are refused: nobody types them, and an attacker
 *   would use them to make every guess cost more.
 * - `verify(null, pw)` (unknown or disabled user) and `verify(<malformed>, pw)` run a full
 *   verification against a dummy hash made with the same parameters, so the response time does
 *   not tell an unknown user name from a wrong password.
 */
import { hash as argon2Hash, parseOptions, verify as argon2Verify } from '@node-rs/argon2';
import type { Algorithm, Options } from '@node-rs/argon2';
import { PortcullisError } from '../errors.js';

export interface Argon2Params {
  /** Memory in KiB. */
  memoryCost: number;
  /** Passes over memory. */
  timeCost: number;
  /** Lanes. */
  parallelism: number;
}

/**
 * 64 MiB, 3 passes, 1 lane.
 *
 * OWASP's floor is m=19 MiB, t=2, p=1 (its equivalent settings trade memory for passes). We
 * spend about 3.4 times its memory and 5 times its memory-time product: the memory size of
 * RFC 9106's second recommended option (64 MiB, t=3), with one lane because a gateway gets its
 * parallelism from concurrent logins, not from splitting one hash. That costs about 60-70 ms of
 * one core per verification on current x86 servers, and 64 MiB per verification in flight
 * (4 in flight with the default libuv pool: 256 MiB), which `maxConcurrentHashes` caps.
 */
export const PRODUCTION_PARAMS: Readonly<Argon2Params> = Object.freeze({ memoryCost: 65536, timeCost: 3, parallelism: 1 });

/** Cheap parameters for tests only (sub-millisecond). Never use them for real passwords. */
export const TEST_PARAMS: Readonly<Argon2Params> = Object.freeze({ memoryCost: 256, timeCost: 1, parallelism: 1 });

/**
 * The parameters for this process: production, unless `PORTCULLIS_ARGON2=test` (set by the
 * test suite so that thousands of hashes stay fast). Any other value is refused rather than
 * silently ignored.
 */
export function paramsFromEnv(env: NodeJS.ProcessEnv): Readonly<Argon2Params> {
  const v = env['PORTCULLIS_ARGON2'];
  if (v === undefined || v === '' || v === 'production') return PRODUCTION_PARAMS;
  if (v === 'test') return TEST_PARAMS;
  throw new PortcullisError('PC_CONFIG_INVALID', `PORTCULLIS_ARGON2 must be "test" or "production", not ${JSON.stringify(v)}`);
}

/** Longest password accepted, in characters (after normalisation). */
export const MAX_PASSWORD_LENGTH = 1024;

/**
 * Bounds on the parameters of a stored hash. A hash written by hand into the users file with
 * m=4 GiB would let one login attempt exhaust the server's memory; such hashes are treated as
 * malformed (and refused when the users file is loaded).
 */
const MAX_STORED = { memoryCost: 1 << 20 /* 1 GiB */, timeCost: 64, parallelism: 16 } as const;

// `Algorithm` is an ambient const enum, which isolated modules cannot read; 2 is Argon2id.
const ARGON2ID = 2 as Algorithm;
const VERSION_0X13 = 1;

/** NFKC form of `pw`, or null if it is empty or too long to be a password. */
export function normalisePassword(pw: string): string | null {
  // Check before normalising too: NFKC can expand a string, and normalising megabytes costs time.
  if (pw.length === 0 || pw.length > MAX_PASSWORD_LENGTH) return null;
  const n = pw.normalize('NFKC');
  return n.length > MAX_PASSWORD_LENGTH ? null : n;
}

/** True if `hash` is an argon2id PHC string this gateway will verify. */
export function isSupportedHash(hash: string): boolean {
  if (typeof hash !== 'string' || !hash.startsWith('$argon2id$') || hash.length > 512) return false;
  try {
    const p = parseOptions(hash);
    return (
      p.algorithm === ARGON2ID &&
      p.memoryCost <= MAX_STORED.memoryCost &&
      p.timeCost <= MAX_STORED.timeCost &&
      p.parallelism <= MAX_STORED.parallelism &&
      p.saltLen >= 8 &&
      p.outputLen >= 16
    );
  } catch {
    return false;
  }
}

export class PasswordHasher {
  readonly params: Readonly<Argon2Params>;
  private readonly options: Options;
  /** Made once, on first need or by `warmUp()`. */
  private dummy: Promise<string> | null = null;

  constructor(params: Argon2Params) {
    if (
      !Number.isInteger(params.memoryCost) ||
      !Number.isInteger(params.timeCost) ||
      !Number.isInteger(params.parallelism) ||
      params.parallelism < 1 ||
      params.timeCost < 1 ||
      params.memoryCost < 8 * params.parallelism
    ) {
      throw new PortcullisError('PC_CONFIG_INVALID', 'invalid argon2 parameters');
    }
    this.params = Object.freeze({ ...params });
    this.options = { algorithm: ARGON2ID, ...this.params };
  }

  /**
   * Make the dummy hash now. A server calls this at start so that the first unknown-user
   * attempt does not take twice as long as the rest (which would tell it apart).
   */
  async warmUp(): Promise<void> {
    await this.dummyHash();
  }

  /** Hash a new password. Throws PC_BAD_REQUEST for an empty or over-long password. */
  async hash(pw: string): Promise<string> {
    const n = normalisePassword(pw);
    if (n === null) {
      throw new PortcullisError(
        'PC_BAD_REQUEST',
        pw.length === 0 ? 'the password is empty' : `the password is longer than ${MAX_PASSWORD_LENGTH} characters`,
      );
    }
    return argon2Hash(n, this.options);
  }

  /**
   * True only if `pw` matches `hash`. A null, malformed or unsupported hash, and an empty or
   * over-long password, cost one full verification against a dummy hash and return false.
   */
  async verify(hash: string | null, pw: string): Promise<boolean> {
    const n = typeof pw === 'string' ? normalisePassword(pw) : null;
    if (hash === null || n === null || !isSupportedHash(hash)) {
      await this.burn(n ?? '');
      return false;
    }
    try {
      return await argon2Verify(hash, n);
    } catch {
      return false;
    }
  }

  /** True if `hash` was made with other parameters (or another algorithm) than this hasher's. */
  needsRehash(hash: string): boolean {
    try {
      const p = parseOptions(hash);
      return (
        p.algorithm !== ARGON2ID ||
        (p.version as number) !== VERSION_0X13 ||
        p.memoryCost !== this.params.memoryCost ||
        p.timeCost !== this.params.timeCost ||
        p.parallelism !== this.params.parallelism
      );
    } catch {
      return true;
    }
  }

  private dummyHash(): Promise<string> {
    // Its password need not be secret: a verification against it always answers false.
    this.dummy ??= argon2Hash('portcullis dummy password', this.options);
    return this.dummy;
  }

  /** One verification against a dummy hash with this hasher's parameters; the result is ignored. */
  private async burn(pw: string): Promise<void> {
    try {
      await argon2Verify(await this.dummyHash(), pw.length > 0 ? pw : '\u0000');
    } catch {
      // Ignored: only the time spent matters.
    }
  }
}
