/**
 * Password hashing with argon2id (@node-rs/argon2).
 *
 * - A server's hasher (`new PasswordHasher(params, { threads: n })`, made by bootstrap.ts with
 *   n = `login_limits.hash_concurrency`) verifies and hashes on a HashPool: n worker threads of
 *   its own at the lowest scheduling priority, so a login flood only gets the CPU time that
 *   signed-in users leave (hash-pool.ts says why, with measurements). Past n jobs at once it
 *   refuses with PC_BUSY rather than queueing, and a job whose thread died fails with PC_BUSY.
 *   `close()` ends the threads.
 * - Without `threads` (the CLI, which hashes one password and exits), the async functions of
 *   @node-rs/argon2 run on the libuv thread pool: off the event loop, at normal priority.
 * - Passwords are NFKC-normalised before hashing, as NIST SP 800-63B 5.1.1.2 recommends, so
 *   the same password typed on two keyboards (composed vs decomposed accents, full-width
 *   digits) verifies.
 * - Passwords longer than MAX_PASSWORD_LENGTH are refused: nobody types them, and an attacker
 *   would use them to make every guess cost more.
 * - `verify(null, pw)` (unknown or disabled user) and `verify(<malformed>, pw)` run a full
 *   verification against a dummy hash made with the same parameters, on the same threads, so the
 *   response time does not tell an unknown user name from a wrong password, and a busy pool
 *   refuses both alike.
 */
import { hash as argon2Hash, parseOptions, verify as argon2Verify } from '@node-rs/argon2';
import type { Algorithm, Options } from '@node-rs/argon2';
import { PortcullisError } from '../errors.js';
import { HashPool, type HashPoolLog } from './hash-pool.js';

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
 * one core per verification on current x86 servers, and 64 MiB per verification in flight,
 * which `login_limits.hash_concurrency` (the number of hashing threads) caps.
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

export interface PasswordHasherOptions {
  /**
   * Verify and hash on this many worker threads of the hasher's own, at the lowest priority
   * (hash-pool.ts); at most this many at once, past it PC_BUSY. Absent: on the libuv pool.
   */
  threads?: number;
  /** Where the threads report trouble (a thread that died, priority that could not be lowered). */
  log?: HashPoolLog;
}

export class PasswordHasher {
  readonly params: Readonly<Argon2Params>;
  /** The hashing threads, when the hasher has them. */
  readonly pool: HashPool | null;
  private readonly options: Options;
  /** Made once, on first need or by `warmUp()`. */
  private dummy: Promise<string> | null = null;

  constructor(params: Argon2Params, opts: PasswordHasherOptions = {}) {
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
    this.pool = opts.threads === undefined ? null : new HashPool({ size: opts.threads, options: this.options, ...(opts.log ? { log: opts.log } : {}) });
  }

  /**
   * Make the dummy hash and start the hashing threads now. A server calls this at start so that
   * the first unknown-user attempt does not take twice as long as the rest (which would tell it
   * apart), and so that threads that cannot run argon2 stop the start instead of every login.
   */
  async warmUp(): Promise<void> {
    await Promise.all([this.dummyHash(), this.pool?.ready()]);
  }

  /** End the hashing threads (if any). Verifications still running, and later ones, fail with PC_BUSY. */
  async close(): Promise<void> {
    await this.pool?.close();
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
    return this.pool ? this.pool.hash(n) : argon2Hash(n, this.options);
  }

  /**
   * True only if `pw` matches `hash`. A null, malformed or unsupported hash, and an empty or
   * over-long password, cost one full verification against a dummy hash and return false.
   * With threads: PC_BUSY (for every kind of attempt alike) when none is free or the one
   * verifying died; never true then.
   */
  async verify(hash: string | null, pw: string): Promise<boolean> {
    const n = typeof pw === 'string' ? normalisePassword(pw) : null;
    if (hash === null || n === null || !isSupportedHash(hash)) {
      await this.burn(n ?? '');
      return false;
    }
    return this.check(hash, n);
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

  /** argon2 verification; a hash argon2 cannot parse matches nothing. Pool failures (PC_BUSY) propagate. */
  private async check(hash: string, pw: string): Promise<boolean> {
    if (this.pool) return this.pool.verify(hash, pw);
    try {
      return await argon2Verify(hash, pw);
    } catch {
      return false;
    }
  }

  private dummyHash(): Promise<string> {
    // Its password need not be secret: a verification against it always answers false. Made
    // once, in this process (not on the threads, which may all be busy when it is first needed).
    this.dummy ??= argon2Hash('portcullis dummy password', this.options).catch((e: unknown) => {
      this.dummy = null;
      throw e;
    });
    return this.dummy;
  }

  /**
   * One verification against a dummy hash with this hasher's parameters, on the same threads as
   * a real one; the result is ignored, but a busy or failed pool is not: the caller must see the
   * same PC_BUSY for an unknown user as for a known one.
   */
  private async burn(pw: string): Promise<void> {
    await this.check(await this.dummyHash(), pw.length > 0 ? pw : '\u0000');
  }
}
