/**
 * The login regulator: decides, before any password hash is computed, whether an attempt may
 * proceed, and records the outcome afterwards. Pure logic over the RateStore / StateStore ports.
 *
 * What is counted (SPEC `login_limits`):
 * - Per source (an IPv4 address, or an IPv6 /ipv6_prefix): `per_ip.max_failures` failures in
 *   `window` block the source for `block`.
 * - Per user, in two buckets, like Entra smart lockout: failures from networks the user has
 *   signed in from before (familiar) and from anywhere else (unfamiliar) are counted apart.
 *   `per_user.max_failures` locks only the bucket that reached it, for `lockout`, so an
 *   attacker elsewhere cannot lock the user out of their usual network.
 * - Spraying: one source failing for `spray.distinct_users` distinct users within `window`
 *   is blocked for `block`.
 * - Ceiling (NIST SP 800-63B 5.2.2: no more than 100 consecutive failed attempts on one
 *   account; `per_user.ceiling`): distinct wrong passwords per account and bucket, across every
 *   source, since the last success. At the 100th that bucket refuses every password attempt for
 *   `ceiling.window` (24 h by default) or until an admin runs `portcullis unblock --user`; the
 *   count then starts again. Counted per bucket, so failures from elsewhere never lock a user
 *   out of a familiar network. So an account sees at most 100 wrong guesses a day from
 *   unfamiliar networks however many sources the attacker rotates through.
 * - The same wrong password tried again for the same user within the window counts once
 *   (a phone retrying a stale password must not block the office): per-user buckets and the
 *   ceiling count distinct password fingerprints, the per-source count distinct
 *   (user, fingerprint) pairs.
 * - MFA: wrong codes are counted per (user, source) and per user; past `mfa.max_failures` per
 *   (user, source), or twice that per user, further codes are refused for `mfa.window`.
 * - The same password (`same_password`, what Entra's smart lockout and password protection
 *   watch): a wrong password, the same typed string whatever the account, failing against
 *   `accounts` distinct accounts within `window` is marked sprayed for `block`. The caller passes
 *   a keyed fingerprint of the password alone (`sameFingerprint`, a truncated HMAC: the rate
 *   store keeps it with a TTL, nothing else does beyond a bounded in-process list of the
 *   accounts it was tried on, for the audit). While marked, `reservePassword` refuses it from
 *   networks unfamiliar to the account in the same atomic step as the other blocks, before any
 *   hash; from a familiar network the attempt proceeds and the ticket says `sprayed` (a right
 *   password then leads to a password change). One account retrying its own old password is one
 *   member, never a spray.
 *
 * Success (NIST 5.2.2) forgets the source's failure count, the user's bucket for that kind of
 * network, and the ceiling count. It does not forget the spray count: an attacker holding one
 * valid account could otherwise launder a spray by signing in between rounds.
 *
 * Attacker-supplied strings never become unbounded keys or members: user names are normalised
 * and long ones hashed, fingerprints truncated to 32 characters, and every table lives in a
 * bounded store.
 * Every sign-in path (login form, password change, Basic app passwords, second factor, recovery
 * codes, enrolment codes) goes through a reservation: `reservePassword` / `reserveMfa` check the
 * blocks and count the attempt in one atomic store step (one Lua script on Redis) *before* the
 * password or code is verified, and the ticket they return is settled afterwards (`failed`: a
 * block when the counts reached a limit; `succeeded`: the counts forgotten as NIST 5.2.2 says).
 * So N parallel attempts evaluate at most as many guesses as the limits allow, on one instance or
 * many. Work in flight is bounded too: one code verification per session at a time, and a few
 * password or code verifications per user and kind of network.
 *
 * `check` / `checkMfa` (read-only views) and `recordFailure` (state set up by tools, tests and
 * the bench) are not atomic with a verification; no request path uses them.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../clock.js';
import type { LoginLimits } from '../config/types.js';
import { schemaAt } from '../config/schema.js';
import { PortcullisError } from '../errors.js';
import { networkKey, sourceKey } from '../net/ip.js';
import type { RateStore, StateStore } from '../store/ports.js';

export type ThrottleKind = 'ip' | 'user' | 'spray' | 'ceiling' | 'sprayed';

export type ThrottleDecision = { allowed: true } | { allowed: false; retryAfterSec: number; kind: ThrottleKind };

export type Bucket = 'familiar' | 'unfamiliar';

export interface BlockInfo {
  kind: ThrottleKind | 'mfa';
  /** The source key (IPv4 address or IPv6 network) for source blocks and per-source MFA blocks. */
  source?: string;
  /** The (normalised) user name for account locks and MFA blocks. */
  user?: string;
  /** Which bucket is locked, for kind `user`. */
  bucket?: Bucket;
  until: number;
  retryAfterSec: number;
}

/** A reserved password attempt; settle it exactly once. */
export interface PasswordTicket {
  readonly bucket: Bucket;
  /** The password is marked sprayed (the attempt was let through: a familiar network). */
  readonly sprayed: boolean;
  /**
   * A wrong password: blocks imposed when the counts reached a limit; `sprayed` when this failure
   * marked the password as sprayed (reported once, whichever instance saw it). Unless `knownWrong`
   * is false, the guess is remembered for this source and answered as wrong without hashing if
   * repeated.
   */
  failed(opts?: { knownWrong?: boolean }): Promise<{ lockedOut: boolean; ipBlocked: boolean; sprayed?: SprayMark }>;
  /**
   * A right password. `reset` (a sign-in with the account password): the user's counts for this
   * kind of network are forgotten, as NIST 5.2.2 says; the source's count keeps everyone else's
   * failures (only this attempt's own entry is taken back), so an attacker's own account cannot
   * launder a source. Without `reset` (an app password, which proves nothing about the account
   * password): only this attempt's own entries are taken back. Never the spray counts.
   */
  succeeded(opts?: { reset?: boolean }): Promise<void>;
  /** The attempt was not evaluated after all: give back what it counted. */
  cancel(): Promise<void>;
}

export type PasswordAttempt =
  | { allowed: true; ticket: PasswordTicket }
  | { allowed: false; retryAfterSec: number; kind: ThrottleKind }
  /**
   * This source tried this very (user, password) a moment ago and it was wrong: answered as wrong
   * again without hashing or counting, so repeating one guess cannot spend the hash budget.
   */
  | { allowed: false; retryAfterSec: 0; kind: 'repeat' };

/** A password just marked as sprayed. */
export interface SprayMark {
  /** Distinct accounts it failed against in the window (the store's count, every instance). */
  count: number;
  /** The accounts (normalised names) this instance saw it tried on, at most `SprayWitness.maxAccounts`. */
  accounts: string[];
  until: number;
}

/**
 * The accounts each wrong password was tried on, as far as this instance saw them, for the
 * `password_sprayed` audit event: a bounded LRU (at most `maxPasswords` fingerprints, each with
 * at most `maxAccounts` names), so a flood of distinct passwords costs a fixed amount of memory.
 * It outlives a reload (the new throttle is handed the old witness).
 */
export class SprayWitness {
  private readonly seen: LRUCache<string, string[]>;
  constructor(
    readonly maxPasswords = 10_000,
    readonly maxAccounts = 50,
  ) {
    this.seen = new LRUCache<string, string[]>({ max: maxPasswords });
  }
  note(fingerprint: string, user: string): void {
    let l = this.seen.get(fingerprint);
    if (!l) {
      l = [];
      this.seen.set(fingerprint, l);
    }
    if (l.length < this.maxAccounts && !l.includes(user)) l.push(user);
  }
  /** The accounts seen for a fingerprint, forgotten here once taken. */
  take(fingerprint: string): string[] {
    const l = this.seen.get(fingerprint) ?? [];
    this.seen.delete(fingerprint);
    return l;
  }
  /** Fingerprints held, and names held in all (each bounded). */
  get sizes(): { passwords: number; accounts: number } {
    let accounts = 0;
    for (const l of this.seen.values()) accounts += l.length;
    return { passwords: this.seen.size, accounts };
  }
}

/** A reserved second-factor attempt (TOTP, recovery or enrolment code); settle it exactly once. */
export interface MfaTicket {
  failed(): Promise<{ throttled: boolean }>;
  succeeded(): Promise<void>;
}

export type MfaAttempt = { allowed: true; ticket: MfaTicket } | { allowed: false; retryAfterSec: number; kind: ThrottleKind };

/** Verifications in flight at once per user and kind of network (password) or per user (codes). */
export const MAX_IN_FLIGHT_PER_USER = 2;
/** A slot held longer than this (a crashed instance) lapses. */
const SLOT_TTL_MS = 60_000;

export interface CeilingOptions {
  /** Distinct wrong passwords per account before it refuses attempts (default 100). */
  maxFailures?: number;
  /** How long the count lasts from its first failure (default 24 h). */
  windowMs?: number;
  /** How long the account refuses attempts once the ceiling is reached (default 24 h). */
  blockMs?: number;
}

export interface LoginThrottleDeps {
  limits: LoginLimits;
  rates: RateStore;
  state: StateStore;
  clock: Clock;
  /** The source an address is counted under (no spaces); default: `sourceKey(ip, limits.ipv6Prefix)`. */
  keyFor?: (ip: string) => string;
  ceiling?: CeilingOptions;
  /** The accounts each wrong password was tried on (kept across reloads); default: a new one. */
  witness?: SprayWitness;
}

const HOUR = 3_600_000;
export const DEFAULT_CEILING = { maxFailures: 100, windowMs: 24 * HOUR, blockMs: 24 * HOUR } as const;
/** Per-user MFA failures allowed, as a multiple of `mfa.max_failures` (which is per user and source). */
const MFA_USER_FACTOR = 2;
/** User names longer than this are keyed by their hash. */
const MAX_USER_KEY = 128;

/** Key namespace in the rate store; everything the throttle writes starts with it. */
const NS = 'lt:';
const K = {
  ipBlock: (src: string) => `${NS}b:ip:${src}`,
  ipFails: (src: string) => `${NS}f:ip:${src}`,
  sprayUsers: (src: string) => `${NS}f:spray:${src}`,
  userLock: (b: Bucket, u: string) => `${NS}b:${b === 'familiar' ? 'uf' : 'uu'}:${u}`,
  userFails: (b: Bucket, u: string) => `${NS}f:${b === 'familiar' ? 'uf' : 'uu'}:${u}`,
  ceilingLock: (b: Bucket, u: string) => `${NS}b:${b === 'familiar' ? 'cf' : 'cu'}:${u}`,
  ceilingFails: (b: Bucket, u: string) => `${NS}f:${b === 'familiar' ? 'cf' : 'cu'}:${u}`,
  pwSlot: (b: Bucket, u: string) => `${NS}s:${b === 'familiar' ? 'pf' : 'pu'}:${u}`,
  mfaSlot: (u: string) => `${NS}s:m:${u}`,
  mfaSessionSlot: (session: string) => `${NS}s:ms:${session}`,
  knownWrong: (src: string) => `${NS}f:kw:${src}`,
  mfaUserBlock: (u: string) => `${NS}b:m:${u}`,
  mfaUserFails: (u: string) => `${NS}f:m:${u}`,
  // source keys never contain a space; user names may, so they come last
  mfaPairBlock: (src: string, u: string) => `${NS}b:ms:${src} ${u}`,
  mfaPairFails: (src: string, u: string) => `${NS}f:ms:${src} ${u}`,
  samePassword: (fp: string) => `${NS}f:pw:${fp}`,
  sprayed: (fp: string) => `${NS}b:pw:${fp}`,
  sprayedClaim: (fp: string) => `${NS}c:pw:${fp}`,
};
const SPRAYED_PREFIX = `${NS}b:pw:`;

/** The network a source belongs to for familiarity (see net/ip.ts networkKey). */
export const networkKeyFor = networkKey;

/** The user component of throttle keys: case- and compatibility-folded, long names hashed. */
export function userKeyFor(user: string): string {
  // folded as a directory compares names (RFC 4518): characters mapped to nothing dropped, and
  // U+0130 (whose lower case is i + U+0307) taken as i, spaces insignificant at the ends and
  // collapsed inside, so variants of one name share one bucket
  const u = user.normalize('NFKC').toLowerCase().replace(/[\u00ad\u034f\u1806\u180b-\u180e\u200b-\u200d\u2060\ufe00-\ufe0f\ufeff\ufffc]/g, '').replace(/i\u0307/g, 'i').replace(/ +/g, ' ').replace(/^ | $/g, '');
  if (u.length <= MAX_USER_KEY && !/[\u0000-\u001f\u007f]/.test(u)) return u;
  return `#${createHash('sha256').update(u).digest().toString('base64url', 0, 24)}`;
}

/** A fixed-size member id (128 bits) for distinct counting of a (user, password) pair. */
function pairMember(userKey: string, fingerprint: string): string {
  // encode only the 16 bytes kept: a flat 22-character string, not a slice pinning a longer one
  return createHash('sha256').update(`${userKey}\u0000${fingerprint}`).digest().toString('base64url', 0, 16);
}

/** The caller's fingerprint is a keyed HMAC, already uniform: a prefix is a bounded member. */
function fingerprintMember(fingerprint: string): string {
  return fingerprint.length <= 32 ? fingerprint : fingerprint.slice(0, 32);
}

export class LoginThrottle {
  private readonly limits: LoginLimits;
  private readonly rates: RateStore;
  private readonly state: StateStore;
  private readonly clock: Clock;
  private readonly keyFor: (ip: string) => string;
  private readonly ceiling: Required<CeilingOptions>;
  readonly witness: SprayWitness;

  constructor(deps: LoginThrottleDeps) {
    validateLimits(deps.limits);
    this.limits = deps.limits;
    this.rates = deps.rates;
    this.state = deps.state;
    this.clock = deps.clock;
    const prefix = deps.limits.ipv6Prefix;
    this.keyFor = deps.keyFor ?? ((ip) => sourceKey(ip, prefix));
    this.witness = deps.witness ?? new SprayWitness();
    const fromLimits = deps.limits.perUser.ceiling;
    this.ceiling = {
      ...DEFAULT_CEILING,
      ...(fromLimits ? { maxFailures: fromLimits.maxFailures, windowMs: fromLimits.windowMs, blockMs: fromLimits.windowMs } : {}),
      ...stripUndefined(deps.ceiling ?? {}),
    };
    for (const [k, v] of Object.entries(this.ceiling)) {
      if (!Number.isSafeInteger(v) || v < 1) throw new PortcullisError('PC_CONFIG_INVALID', `ceiling.${k} must be a positive integer`);
    }
  }

  /** The source key an address is counted under. */
  sourceOf(ip: string): string {
    return this.keyFor(ip);
  }

  /** Whether `ip` lies in a network `user` has signed in from before. */
  async isFamiliar(user: string, ip: string): Promise<boolean> {
    const net = networkKeyFor(ip, this.limits.ipv6Prefix);
    return (await this.state.knownNetworks(user)).includes(net);
  }

  /** Whether a password attempt may proceed. Call before computing any hash. */
  async check(ctx: { ip: string; user: string }): Promise<ThrottleDecision> {
    const now = this.clock.now();
    const src = this.keyFor(ctx.ip);
    const u = userKeyFor(ctx.user);
    const [srcBlock, fam, unf, cfam, cunf] = await Promise.all([
      this.rates.blockedUntil(K.ipBlock(src), now),
      this.rates.blockedUntil(K.userLock('familiar', u), now),
      this.rates.blockedUntil(K.userLock('unfamiliar', u), now),
      this.rates.blockedUntil(K.ceilingLock('familiar', u), now),
      this.rates.blockedUntil(K.ceilingLock('unfamiliar', u), now),
    ]);
    const found: Array<{ until: number; kind: ThrottleKind }> = [];
    if (srcBlock) found.push({ until: srcBlock.until, kind: srcBlock.reason === 'spray' ? 'spray' : 'ip' });
    if (fam || unf || cfam || cunf) {
      // only now is familiarity worth a state lookup
      const familiar = await this.isFamiliar(ctx.user, ctx.ip);
      const lock = familiar ? fam : unf;
      if (lock) found.push({ until: lock.until, kind: 'user' });
      const ceiling = familiar ? cfam : cunf;
      if (ceiling) found.push({ until: ceiling.until, kind: 'ceiling' });
    }
    return this.decide(found, now);
  }

  /**
   * Record a wrong password. `passwordFingerprint` is a keyed HMAC of the attempted password
   * (the caller's key, base64url or hex), so repeats are recognised without storing anything
   * guessable; its first 32 characters must tell passwords apart (they do for any HMAC-SHA256);
   * `familiar` says whether the source is in a network the user signed in from before.
   */
  async recordFailure(ctx: {
    ip: string;
    user: string;
    passwordFingerprint: string;
    familiar: boolean;
  }): Promise<{ lockedOut: boolean; ipBlocked: boolean }> {
    const now = this.clock.now();
    const L = this.limits;
    const src = this.keyFor(ctx.ip);
    const u = userKeyFor(ctx.user);
    const bucket: Bucket = ctx.familiar ? 'familiar' : 'unfamiliar';
    const pw = fingerprintMember(ctx.passwordFingerprint);

    const [ipFails, sprayUsers, userFails, ceilingFails] = await Promise.all([
      this.rates.hit(K.ipFails(src), L.perIp.windowMs, now, pairMember(u, ctx.passwordFingerprint)),
      this.rates.hit(K.sprayUsers(src), L.spray.windowMs, now, u),
      this.rates.hit(K.userFails(bucket, u), L.perUser.windowMs, now, pw),
      this.rates.hit(K.ceilingFails(bucket, u), this.ceiling.windowMs, now, pw),
    ]);

    return this.imposeBlocks({ src, u, bucket, at: now, ipFails, sprayUsers, userFails, ceilingFails });
  }

  /**
   * After a failure: the blocks its counts call for (source or spray, the user's bucket, the
   * ceiling), each count reset once its block is in place. One place for both the reservation's
   * tickets and recordFailure.
   */
  private async imposeBlocks(c: {
    src: string;
    u: string;
    bucket: Bucket;
    at: number;
    ipFails: number;
    sprayUsers: number;
    userFails: number;
    ceilingFails: number;
  }): Promise<{ lockedOut: boolean; ipBlocked: boolean }> {
    const L = this.limits;
    const { src, u, bucket, at } = c;
    let ipBlocked = false;
    let lockedOut = false;
    const spraying = c.sprayUsers >= L.spray.distinctUsers;
    const guessing = c.ipFails >= L.perIp.maxFailures;
    if (spraying || guessing) {
      // both may trip at once: the longer block wins
      const useSpray = spraying && (!guessing || L.spray.blockMs >= L.perIp.blockMs);
      await this.rates.block(K.ipBlock(src), at + (useSpray ? L.spray.blockMs : L.perIp.blockMs), useSpray ? 'spray' : 'ip');
      await Promise.all([this.rates.reset(K.ipFails(src)), this.rates.reset(K.sprayUsers(src))]);
      ipBlocked = true;
    }
    if (c.userFails >= L.perUser.maxFailures) {
      await this.rates.block(K.userLock(bucket, u), at + L.perUser.lockoutMs, `user:${bucket}`);
      await this.rates.reset(K.userFails(bucket, u));
      lockedOut = true;
    }
    if (c.ceilingFails >= this.ceiling.maxFailures) {
      await this.rates.block(K.ceilingLock(bucket, u), at + this.ceiling.blockMs, `ceiling:${bucket}`);
      await this.rates.reset(K.ceilingFails(bucket, u));
      lockedOut = true;
    }
    return { lockedOut, ipBlocked };
  }

  /**
   * Reserve one password attempt before verifying it: refused while the source, the user's
   * bucket for this kind of network or its ceiling is blocked, or when a limit is already
   * reached by attempts in flight; otherwise counted at once, atomically. Throws when the store
   * cannot be reached (callers answer 503: the throttle never fails open).
   *
   * With `sameFingerprint` (the keyed fingerprint of the password alone), a password marked
   * sprayed is refused (`kind: 'sprayed'`) in the same step when the network is unfamiliar and
   * `enforceSprayed` is not false; otherwise the attempt proceeds and the ticket says `sprayed`.
   * Its failure is counted towards `same_password`.
   */
  async reservePassword(ctx: {
    ip: string;
    user: string;
    passwordFingerprint: string;
    familiar: boolean;
    inFlightCap?: boolean;
    sameFingerprint?: string | undefined;
    enforceSprayed?: boolean;
  }): Promise<PasswordAttempt> {
    const now = this.clock.now();
    const L = this.limits;
    const src = this.keyFor(ctx.ip);
    const u = userKeyFor(ctx.user);
    const pair = pairMember(u, ctx.passwordFingerprint);
    const knownWrong = K.knownWrong(src);
    const bucket: Bucket = ctx.familiar ? 'familiar' : 'unfamiliar';
    const pw = fingerprintMember(ctx.passwordFingerprint);
    const slot = ctx.inFlightCap === false ? null : K.pwSlot(bucket, u);
    if (slot && !(await this.rates.acquire(slot, MAX_IN_FLIGHT_PER_USER, SLOT_TTL_MS, now))) {
      return { allowed: false, retryAfterSec: 1, kind: 'user' };
    }
    const releaseSlot = () => (slot ? this.rates.releaseSlot(slot) : Promise.resolve());
    const counters = [
      { key: K.ipFails(src), windowMs: L.perIp.windowMs, member: pair, max: L.perIp.maxFailures },
      { key: K.sprayUsers(src), windowMs: L.spray.windowMs, member: u, max: L.spray.distinctUsers },
      { key: K.userFails(bucket, u), windowMs: L.perUser.windowMs, member: pw, max: L.perUser.maxFailures },
      { key: K.ceilingFails(bucket, u), windowMs: this.ceiling.windowMs, member: pw, max: this.ceiling.maxFailures },
    ];
    const same = ctx.sameFingerprint === undefined ? null : fingerprintMember(ctx.sameFingerprint);
    // the sprayed mark comes last: a blocked source or a locked account answers as it always did
    const blocks = [K.ipBlock(src), K.userLock(bucket, u), K.ceilingLock(bucket, u)];
    let sprayed = false;
    let r;
    try {
      const seen = { key: knownWrong, member: pair };
      r = await this.rates.reserve({ blocks: same ? [...blocks, K.sprayed(same)] : blocks, counters, seen }, now);
      if (!r.ok && same && r.block?.key === K.sprayed(same)) {
        sprayed = true;
        if (!ctx.familiar && ctx.enforceSprayed !== false) {
          await releaseSlot();
          return { allowed: false, retryAfterSec: retryAfter(r.block.until, now), kind: 'sprayed' };
        }
        // a familiar network: the attempt goes on (a right password leads to a change)
        r = await this.rates.reserve({ blocks, counters, seen }, now);
      }
    } catch (e) {
      await releaseSlot().catch(() => undefined);
      throw e;
    }
    if (!r.ok) {
      await releaseSlot();
      if (r.seen) return { allowed: false, retryAfterSec: 0, kind: 'repeat' };
      if (r.block) {
        const kind: ThrottleKind = r.block.key === K.ipBlock(src) ? (r.block.reason === 'spray' ? 'spray' : 'ip') : r.block.key === K.userLock(bucket, u) ? 'user' : 'ceiling';
        return { allowed: false, retryAfterSec: retryAfter(r.block.until, now), kind };
      }
      // a limit is reached by attempts still in flight: their outcome decides within moments
      const kinds: ThrottleKind[] = ['ip', 'spray', 'user', 'ceiling'];
      return { allowed: false, retryAfterSec: 1, kind: kinds[r.full ?? 0] ?? 'user' };
    }
    const [ipFails, sprayUsers, userFails, ceilingFails] = r.counts as [number, number, number, number];
    const added = r.added;
    let settled = false;
    const settle = async (): Promise<boolean> => {
      if (settled) return false;
      settled = true;
      await releaseSlot();
      return true;
    };
    return {
      allowed: true,
      ticket: {
        bucket,
        sprayed,
        failed: async (opts?: { knownWrong?: boolean }) => {
          if (!(await settle())) return { lockedOut: false, ipBlocked: false };
          const at = this.clock.now();
          const marking = same ? this.countSamePassword(same, u, at) : Promise.resolve(null);
          // the same guess from this source is not hashed again while the per-source window lasts
          if (opts?.knownWrong !== false) await this.rates.hit(knownWrong, L.perIp.windowMs, at, pair);
          const { lockedOut, ipBlocked } = await this.imposeBlocks({ src, u, bucket, at, ipFails, sprayUsers, userFails, ceilingFails });
          const mark = await marking;
          return mark ? { lockedOut, ipBlocked, sprayed: mark } : { lockedOut, ipBlocked };
        },
        succeeded: async (opts?: { reset?: boolean }) => {
          if (!(await settle())) return;
          const at = this.clock.now();
          const reset = opts?.reset !== false;
          await Promise.all(
            counters.map((c, i) => {
              if (reset && i >= 2) return this.rates.reset(c.key); // the user's bucket and ceiling
              return added[i] ? this.rates.unhit(c.key, at, c.member) : Promise.resolve();
            }),
          );
        },
        cancel: async () => {
          if (!(await settle())) return;
          const at = this.clock.now();
          await Promise.all(counters.map((c, i) => (added[i] ? this.rates.unhit(c.key, at, c.member) : Promise.resolve())));
        },
      },
    };
  }

  /**
   * One wrong password `fp` for account `u`: counted per fingerprint with the account as member
   * (atomic in the store, so instances count together). At `same_password.accounts` distinct
   * accounts the password is marked sprayed; the one caller that wins the claim reports it.
   */
  private async countSamePassword(fp: string, u: string, at: number): Promise<SprayMark | null> {
    const sp = this.limits.samePassword;
    this.witness.note(fp, u);
    const n = await this.rates.hit(K.samePassword(fp), sp.windowMs, at, u);
    if (n < sp.accounts) return null;
    const until = at + sp.blockMs;
    await this.rates.block(K.sprayed(fp), until, 'sprayed');
    if (!(await this.rates.claim(K.sprayedClaim(fp), sp.blockMs, at))) return null;
    return { count: n, accounts: this.witness.take(fp), until };
  }

  /** Whether the password with this fingerprint (as for `reservePassword`) is marked sprayed now. */
  async isSprayed(sameFingerprint: string): Promise<boolean> {
    return (await this.rates.blockedUntil(K.sprayed(fingerprintMember(sameFingerprint)), this.clock.now())) !== null;
  }

  /** How many passwords are marked sprayed now (the fingerprints themselves are never shown). */
  async sprayedCount(): Promise<number> {
    return (await this.rates.listBlocks(this.clock.now())).filter((b) => b.key.startsWith(SPRAYED_PREFIX)).length;
  }

  /**
   * Reserve one second-factor attempt: refused while the user (or the user from this source) is
   * blocked, when the limits are reached by attempts in flight, or while another code of the same
   * session is being verified. `session` is the session's id hash.
   */
  async reserveMfa(ctx: { ip: string; user: string; session?: string | undefined }): Promise<MfaAttempt> {
    const now = this.clock.now();
    const { maxFailures, windowMs } = this.limits.mfa;
    const src = this.keyFor(ctx.ip);
    const u = userKeyFor(ctx.user);
    const slots: string[] = [];
    const releaseAll = () => Promise.all(slots.map((k) => this.rates.releaseSlot(k))).then(() => undefined);
    try {
      if (ctx.session !== undefined) {
        if (!(await this.rates.acquire(K.mfaSessionSlot(ctx.session), 1, SLOT_TTL_MS, now))) return { allowed: false, retryAfterSec: 1, kind: 'user' };
        slots.push(K.mfaSessionSlot(ctx.session));
      }
      if (!(await this.rates.acquire(K.mfaSlot(u), MAX_IN_FLIGHT_PER_USER, SLOT_TTL_MS, now))) {
        await releaseAll();
        return { allowed: false, retryAfterSec: 1, kind: 'user' };
      }
      slots.push(K.mfaSlot(u));
      const r = await this.rates.reserve(
        {
          blocks: [K.mfaPairBlock(src, u), K.mfaUserBlock(u)],
          counters: [
            { key: K.mfaPairFails(src, u), windowMs, max: maxFailures },
            { key: K.mfaUserFails(u), windowMs, max: maxFailures * MFA_USER_FACTOR },
          ],
        },
        now,
      );
      if (!r.ok) {
        await releaseAll();
        return { allowed: false, retryAfterSec: r.block ? retryAfter(r.block.until, now) : 1, kind: 'user' };
      }
      const [pair, user] = r.counts as [number, number];
      let settled = false;
      const settle = async () => {
        if (settled) return false;
        settled = true;
        await releaseAll();
        return true;
      };
      return {
        allowed: true,
        ticket: {
          failed: async () => {
            if (!(await settle())) return { throttled: false };
            const at = this.clock.now();
            let throttled = false;
            if (pair >= maxFailures) {
              await this.rates.block(K.mfaPairBlock(src, u), at + windowMs, 'mfa');
              await this.rates.reset(K.mfaPairFails(src, u));
              throttled = true;
            }
            if (user >= maxFailures * MFA_USER_FACTOR) {
              await this.rates.block(K.mfaUserBlock(u), at + windowMs, 'mfa');
              await this.rates.reset(K.mfaUserFails(u));
              throttled = true;
            }
            return { throttled };
          },
          succeeded: async () => {
            if (!(await settle())) return;
            await Promise.all([this.rates.reset(K.mfaPairFails(src, u)), this.rates.reset(K.mfaUserFails(u))]);
          },
        },
      };
    } catch (e) {
      await releaseAll().catch(() => undefined);
      throw e;
    }
  }


  /** Whether a second-factor code may be tried now. */
  async checkMfa(ctx: { ip: string; user: string }): Promise<ThrottleDecision> {
    const now = this.clock.now();
    const src = this.keyFor(ctx.ip);
    const u = userKeyFor(ctx.user);
    const [pair, user] = await Promise.all([
      this.rates.blockedUntil(K.mfaPairBlock(src, u), now),
      this.rates.blockedUntil(K.mfaUserBlock(u), now),
    ]);
    const found: Array<{ until: number; kind: ThrottleKind }> = [];
    if (pair) found.push({ until: pair.until, kind: 'user' });
    if (user) found.push({ until: user.until, kind: 'user' });
    return this.decide(found, now);
  }



  /**
   * Lift every block on a user (both buckets, the ceiling, MFA) or on a source (password and
   * MFA blocks), and forget the matching counts. Returns how many blocks were lifted.
   */
  async unblock(target: { user: string } | { ip: string }): Promise<number> {
    const now = this.clock.now();
    let lifted = 0;
    if ('user' in target) {
      const u = userKeyFor(target.user);
      const blocks = [K.userLock('familiar', u), K.userLock('unfamiliar', u), K.ceilingLock('familiar', u), K.ceilingLock('unfamiliar', u), K.mfaUserBlock(u)];
      for (const b of await this.rates.listBlocks(now)) {
        const info = parseBlockKey(b.key);
        if (info?.kind === 'mfa' && info.user === u && info.source !== undefined) blocks.push(b.key);
      }
      for (const k of blocks) if (await this.rates.unblock(k)) lifted++;
      await Promise.all(
        [K.userFails('familiar', u), K.userFails('unfamiliar', u), K.ceilingFails('familiar', u), K.ceilingFails('unfamiliar', u), K.mfaUserFails(u)].map((k) =>
          this.rates.reset(k),
        ),
      );
      return lifted;
    }
    const src = this.keyFor(target.ip);
    const blocks = [K.ipBlock(src)];
    const counts = [K.ipFails(src), K.sprayUsers(src)];
    for (const b of await this.rates.listBlocks(now)) {
      const info = parseBlockKey(b.key);
      if (info?.kind === 'mfa' && info.source === src && info.user !== undefined) {
        blocks.push(b.key);
        counts.push(K.mfaPairFails(src, info.user));
      }
    }
    for (const k of blocks) if (await this.rates.unblock(k)) lifted++;
    await Promise.all(counts.map((k) => this.rates.reset(k)));
    return lifted;
  }

  /** Every block in force, soonest to lapse first. */
  async listBlocks(): Promise<BlockInfo[]> {
    const now = this.clock.now();
    const out: BlockInfo[] = [];
    for (const b of await this.rates.listBlocks(now)) {
      const info = parseBlockKey(b.key);
      if (!info) continue;
      if (info.kind === 'ip' && b.reason === 'spray') info.kind = 'spray';
      out.push({ ...info, until: b.until, retryAfterSec: retryAfter(b.until, now) });
    }
    return out.sort((a, b) => a.until - b.until);
  }

  private decide(found: Array<{ until: number; kind: ThrottleKind }>, now: number): ThrottleDecision {
    if (found.length === 0) return { allowed: true };
    // the block that lasts longest decides, so a client told to come back is not refused again
    const worst = found.reduce((a, b) => (b.until > a.until ? b : a));
    return { allowed: false, retryAfterSec: retryAfter(worst.until, now), kind: worst.kind };
  }
}

function retryAfter(until: number, now: number): number {
  return Math.max(1, Math.ceil((until - now) / 1000));
}

function parseBlockKey(key: string): Omit<BlockInfo, 'until' | 'retryAfterSec'> | null {
  if (!key.startsWith(`${NS}b:`)) return null;
  const rest = key.slice(NS.length + 2);
  const colon = rest.indexOf(':');
  if (colon < 0) return null;
  const tag = rest.slice(0, colon);
  const subject = rest.slice(colon + 1);
  switch (tag) {
    case 'ip':
      return { kind: 'ip', source: subject };
    case 'uf':
      return { kind: 'user', user: subject, bucket: 'familiar' };
    case 'uu':
      return { kind: 'user', user: subject, bucket: 'unfamiliar' };
    case 'cf':
      return { kind: 'ceiling', user: subject, bucket: 'familiar' };
    case 'cu':
      return { kind: 'ceiling', user: subject, bucket: 'unfamiliar' };
    case 'm':
      return { kind: 'mfa', user: subject };
    case 'ms': {
      const sp = subject.indexOf(' ');
      if (sp < 0) return null;
      return { kind: 'mfa', source: subject.slice(0, sp), user: subject.slice(sp + 1) };
    }
    default:
      return null;
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * The ranges the config schema gives (src/config/schema.ts, which the compiler enforces), checked
 * again for code that builds limits by hand (tests, the bench): a limit that would disable the
 * throttle throws. The bounds are read from the schema, never written here.
 */
function validateLimits(l: LoginLimits): void {
  const checks: Array<[string, number]> = [
    ['per_ip.max_failures', l.perIp.maxFailures],
    ['per_ip.window', l.perIp.windowMs],
    ['per_ip.block', l.perIp.blockMs],
    ['per_user.max_failures', l.perUser.maxFailures],
    ['per_user.window', l.perUser.windowMs],
    ['per_user.lockout', l.perUser.lockoutMs],
    ['spray.distinct_users', l.spray.distinctUsers],
    ['spray.window', l.spray.windowMs],
    ['spray.block', l.spray.blockMs],
    ['same_password.accounts', l.samePassword.accounts],
    ['same_password.window', l.samePassword.windowMs],
    ['same_password.block', l.samePassword.blockMs],
    ['mfa.max_failures', l.mfa.maxFailures],
    ['mfa.window', l.mfa.windowMs],
    ['ipv6_prefix', l.ipv6Prefix],
  ];
  for (const [name, v] of checks) {
    const s = schemaAt(`login_limits.${name}`);
    const min = s.type === 'integer' ? s.min! : 1;
    const max = s.type === 'integer' ? s.max! : Number.MAX_SAFE_INTEGER;
    if (!Number.isSafeInteger(v) || v < min || v > max) {
      throw new PortcullisError('PC_CONFIG_INVALID', `login_limits.${name} must be ${s.type === 'integer' ? `a whole number from ${min} to ${max}` : 'a positive integer'}`);
    }
  }
}
