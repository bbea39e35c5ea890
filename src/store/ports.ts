/**
 * Narrow store ports. The core (auth, session, policy) depends only on these; `memory.ts`
 * and `redis.ts` implement them. Every table an attacker can grow is bounded in the memory
 * implementation and carries a TTL in Redis.
 */

/** `hwk`: a passkey or security key (WebAuthn), RFC 8176. */
export type Factor = 'pwd' | 'otp' | 'hwk';

export interface SessionRecord {
  user: string;
  /** Factors completed, in order: ['pwd'], ['pwd', 'otp'], ['pwd', 'hwk'] or ['hwk'] (passwordless). */
  amr: Factor[];
  /** What the holder must do next before the session opens apps. */
  pending: 'none' | 'mfa' | 'enrol' | 'password';
  createdAt: number;
  lastSeenAt: number;
  /** Client address at sign-in. */
  ip: string;
  /** Per-session CSRF secret (random, base64url). */
  csrf: string;
  /** Where to go once the pending step is done. */
  rd?: string | undefined;
  /** During enrolment: the candidate TOTP secret, sealed (SecretBox, aad `enrol:<user>`). */
  enrolSecret?: string | undefined;
  /** Set when the password met the policy only at `on_weak: change`: the change is pending. */
  mustChangePassword?: boolean | undefined;
  /**
   * When the holder last proved the password (sign-in or re-entry): changing the session's own
   * factors (enrol, replace, remove an authenticator) needs a proof at most a few minutes old.
   */
  reauthAt?: number | undefined;
  /** When the holder last proved a second factor in this session (replacing or removing one needs it fresh). */
  factorAt?: number | undefined;
  /** `session.domain` when the session's cookie covers that domain; absent for a per-host cookie. */
  scope?: string | undefined;
  /**
   * The WebAuthn ceremony in flight for this session (src/auth/passkey.ts): its challenge
   * (base64url), what it is for, and when it lapses. Single-use: the first answer consumes it.
   */
  /** When the holder last proved a passkey (hwk) in this session: managing passkeys outside `enrol.networks` needs it fresh. */
  hwkAt?: number | undefined;
  /** When the holder last re-entered the password on a factor-management page (not at sign-in). */
  reenteredAt?: number | undefined;
  passkeyChallenge?: { challenge: string; kind: 'register' | 'authenticate'; expiresAt: number } | undefined;
}

export interface SessionStore {
  get(idHash: string): Promise<SessionRecord | null>;
  /**
   * The same answer as `get`, given at once: only a store that holds its records in this process
   * has it (the memory store). The signed-in request path then makes no promise for the session.
   */
  getNow?(idHash: string): SessionRecord | null;
  /** Create or replace; `ttlMs` is the time until the record may be dropped. */
  set(idHash: string, rec: SessionRecord, ttlMs: number): Promise<void>;
  delete(idHash: string): Promise<boolean>;
  list(user?: string): Promise<Array<{ idHash: string; rec: SessionRecord }>>;
  /**
   * Replace an existing record only: false (and nothing written) when the session is gone. A
   * touch or step update must never bring back a session that was revoked meanwhile.
   */
  replace(idHash: string, rec: SessionRecord, ttlMs: number): Promise<boolean>;
  /** Removes every session of `user`; returns how many. */
  deleteByUser(user: string): Promise<number>;
  deleteAll(): Promise<number>;
  /** Called with an id hash whenever a session is deleted anywhere (local or, with Redis, another instance). */
  onRevoked(listener: (idHash: string | '*', user?: string) => void): void;
}

export interface RateStore {
  /**
   * Record one event under `key` in a fixed window of `windowMs` that starts at the first event.
   * With `member`, counts distinct members instead (password spraying: distinct user names).
   * Returns the count in the current window after this event.
   */
  hit(key: string, windowMs: number, now: number, member?: string): Promise<number>;
  /** The current count (0 when absent or expired). */
  count(key: string, now: number): Promise<number>;
  reset(key: string): Promise<void>;
  /** Block `key` until `until` (ms epoch). */
  block(key: string, until: number, reason: string): Promise<void>;
  /** Block expiry if blocked now, else null. */
  blockedUntil(key: string, now: number): Promise<{ until: number; reason: string } | null>;
  unblock(key: string): Promise<boolean>;
  listBlocks(now: number): Promise<Array<{ key: string; until: number; reason: string }>>;
  /** Atomically claim `key` for `ttlMs`; true only for the first claimant (TOTP step replay). */
  claim(key: string, ttlMs: number, now: number): Promise<boolean>;
  /**
   * One atomic step (no other operation on these keys in between, on any instance): refuse when
   * any key in `blocks` is blocked now, or when a counter is already at its `max` and this attempt
   * would add to it (a new member, or any event for a plain counter); otherwise count the attempt
   * in every counter, as `hit` would. This is how an attempt is reserved before a password or code
   * is verified, so parallel attempts can never evaluate more than the limits allow.
   */
  reserve(req: ReserveRequest, now: number): Promise<ReserveResult>;
  /** Take back what `reserve` added to one counter (a member, or one plain event). */
  unhit(key: string, now: number, member?: string): Promise<void>;
  /**
   * A counting semaphore: take one of `max` slots under `key` for at most `ttlMs` (a crashed
   * holder's slot lapses). False when all are taken. Bounds work in flight (one code verification
   * per session at a time, a few password verifications per user).
   */
  acquire(key: string, max: number, ttlMs: number, now: number): Promise<boolean>;
  releaseSlot(key: string): Promise<void>;
}

export interface ReserveCounter {
  key: string;
  windowMs: number;
  /** Count distinct members (a password fingerprint, a user name) rather than events. */
  member?: string | undefined;
  /** The attempt is refused when the count is already this high and the attempt would add to it. */
  max: number;
}

export interface ReserveRequest {
  blocks: readonly string[];
  counters: readonly ReserveCounter[];
  /** Refuse (with `seen`) when `member` is already counted under `key` (a guess already known wrong). */
  seen?: { key: string; member: string } | undefined;
}

export type ReserveResult =
  /** `counts[i]` is counter i after this attempt; `added[i]` whether this attempt added to it. */
  | { ok: true; counts: number[]; added: boolean[] }
  /** A block in force (`block` set), counter `full` at its limit, or the `seen` member present. */
  | { ok: false; block?: { key: string; until: number; reason: string }; full?: number; seen?: boolean }

export interface TotpRecord {
  /** AES-256-GCM sealed base32 secret. */
  secret: string;
  enrolledAt: number;
  /** 'enrolled' through the portal, 'provisioned' by `portcullis totp set`. */
  source: 'enrolled' | 'provisioned';
}

export interface AppPasswordRecord {
  label: string;
  /** Keyed HMAC-SHA256 of `user NUL password` (app passwords are random 160-bit secrets). */
  hash: string;
  createdAt: number;
  lastUsedAt?: number | undefined;
}

/** A registered passkey or security key (WebAuthn credential). */
export interface PasskeyRecord {
  /** The credential id (base64url), as the authenticator gave it; unique per user. */
  id: string;
  /** The COSE public key (base64url), sealed with the SecretBox (aad `passkey:<user>:<id>`). */
  publicKey: string;
  /** The signature counter last seen (0 for authenticators that keep none). */
  counter: number;
  transports: string[];
  /** The user's own label for it ("YubiKey 5", "Laptop"). */
  name: string;
  createdAt: number;
  lastUsedAt?: number | undefined;
}

/** Durable per-user credentials and gateway state (files in data_dir, or Redis). */
export interface StateStore {
  getTotp(user: string): Promise<TotpRecord | null>;
  setTotp(user: string, rec: TotpRecord | null): Promise<void>;
  /** Replace the user's recovery codes (stored as hashes). */
  setRecoveryCodes(user: string, hashes: string[]): Promise<void>;
  /** Atomically remove `hash` from the user's codes; true if it was there. */
  consumeRecoveryCode(user: string, hash: string): Promise<boolean>;
  countRecoveryCodes(user: string): Promise<number>;
  listAppPasswords(user: string): Promise<AppPasswordRecord[]>;
  addAppPassword(user: string, rec: AppPasswordRecord): Promise<void>;
  revokeAppPassword(user: string, label: string): Promise<boolean>;
  listPasskeys(user: string): Promise<PasskeyRecord[]>;
  /** Add a credential: false (nothing written) when its id is already registered or the user has `max` already. */
  addPasskey(user: string, rec: PasskeyRecord, max: number): Promise<boolean>;
  /**
   * Record a use, atomically: refused ('cloned', nothing written) when both the stored and the new
   * counter are nonzero and the new one is not above the stored one; 'gone' when the credential
   * was removed meanwhile.
   */
  usePasskey(user: string, id: string, counter: number, now: number): Promise<'ok' | 'cloned' | 'gone'>;
  renamePasskey(user: string, id: string, name: string): Promise<boolean>;
  removePasskey(user: string, id: string): Promise<boolean>;
  /**
   * The user a credential id is registered to, or null (passwordless sign-in: the assertion names
   * the credential, not the user). A credential id belongs to one user at most: `addPasskey`
   * refuses an id another user registered. Bounded by the credentials stored.
   */
  passkeyOwner(id: string): Promise<string | null>;
  /** Network keys (e.g. `192.0.2.0/24`, `2001:db8::/64`) the user has signed in from. */
  knownNetworks(user: string): Promise<string[]>;
  addKnownNetwork(user: string, key: string): Promise<boolean>;
  getLockdown(): Promise<LockdownState | null>;
  setLockdown(state: LockdownState): Promise<void>;
  /** Forget every credential of a removed user. */
  forgetUser(user: string): Promise<void>;
}

/** Lockdown as stored and broadcast: on or off, since when, set by whom. */
export interface LockdownState {
  on: boolean;
  since: number;
  by: string;
}

export interface Stores {
  sessions: SessionStore;
  rates: RateStore;
  state: StateStore;
  /**
   * Lockdown changes made elsewhere (another instance sharing the store), as they happen; also
   * the current state again after a reconnect, since a change may have been missed meanwhile.
   * Absent on stores no other instance shares (memory).
   */
  onLockdown?(listener: (state: LockdownState) => void): void;
  /** Whether the backing store answers now (memory: always). */
  healthy(): boolean;
  close(): Promise<void>;
}
