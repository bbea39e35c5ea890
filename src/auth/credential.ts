/**
 * The one credential check. The login form, the password-change page and HTTP Basic (app
 * passwords) all check a secret the same way, in the same order:
 *
 *   network admission -> atomic reservation -> verify -> record -> audit
 *
 * The first landing had three copies of this, and they drifted: the password page had no network
 * check and no throttle reservation, which is how a stolen session could change a password from a
 * network that can never sign in. One function now, so a new entry path cannot forget a step.
 *
 * A correct secret that cannot lead anywhere from here (enrolment refused, a weak password under
 * `on_weak: deny`, a disabled account) must look exactly like a wrong one: `refuse()` settles the
 * reservation as a failure (the same store writes as a wrong password), writes the real reason to
 * the audit and tells the owner and the admin (`password_refused_correct`). Every attempt reads
 * the same state before verifying (familiarity, second factor), so the two paths also take the
 * same time.
 *
 * A password marked sprayed (`login_limits.same_password`, see throttle.ts) is refused in the
 * reservation, before any hash, when the network is unfamiliar to the account: the client gets
 * the wrong-password answer, the audit `login_failed` / 'sprayed password'. Only sign-ins are
 * refused so (the login form and Basic): the current password on the change page and a
 * re-entered password come from a signed-in session, and changing a sprayed password must stay
 * possible. Every wrong password counts towards the mark, on every path; the failure that marks
 * it writes one `password_sprayed` event.
 */
import { createHash } from 'node:crypto';
import { sameSecret } from '../util/constant-time.js';
import { networkKey } from '../net/ip.js';
import type { CompiledApp, CompiledConfig } from '../config/types.js';
import { formatDuration } from '../config/duration.js';
import type { AuditEventName } from '../audit/events.js';
import { lockdownRefuses, signInAdmits } from '../policy/admission.js';
import type { Runtime } from '../runtime.js';
import type { UserRecord } from './users.js';
import { passkeyRuleAdmits } from '../policy/admission.js';
import { assertionFingerprint, assertionId, verifyPasswordless } from './passwordless.js';
import { isPortcullisError } from '../errors.js';
import { accountKey, fileUserLike, knownUser, lookupUser } from '../directory/source.js';
import { bindUnanswered, isDirectoryKey, type LdapDirectory } from '../directory/ldap.js';

/**
 * The network a failure is counted under for the attack posture: the /24 of an IPv4 address, the
 * /48 of an IPv6 one (one site's allocation), so rotating addresses inside one network gains nothing.
 */
const ATTACK_IPV6_PREFIX = 48;

/** The SecretBox purpose of app-password digests (stored and compared). */
export const APP_PASSWORD_PURPOSE = 'app-password';
/** The SecretBox purpose of the fingerprint of a password alone (`same_password`). */
export const SAME_PASSWORD_PURPOSE = 'same-password';
/** Bytes of that fingerprint kept (128 bits: no two passwords collide in practice). */
const SAME_PASSWORD_BYTES = 16;

/** form: the login form; password-change: the current password on the change page; reauth: re-entered before changing one's own factors; basic: an app password. */
export type CredentialVia = 'form' | 'password-change' | 'reauth' | 'basic';

export interface CredentialRequest {
  app: CompiledApp;
  ip: string;
  username: string;
  /** The password or app password as typed. */
  secret: string;
  via: CredentialVia;
}

export interface Accepted {
  kind: 'ok';
  user: UserRecord;
  /** Whether the client's network is one the user has completed a sign-in from. */
  familiar: boolean;
  /** Whether the user has a second factor enrolled (not read for app passwords: false there). */
  hasTotp: boolean;
  /** The password is marked sprayed (only possible from a familiar network on a sign-in). */
  sprayed: boolean;
  /** The directory says this (right) password has expired or must be changed. */
  mustChange: boolean;
  /** The directory entry's DN (directory users), for a password change. */
  directoryDn: string | null;
  /** The secret was right and leads somewhere: forget the failure counts, audit the success. */
  accept(): Promise<void>;
  /**
   * The secret was right but leads nowhere from here: answer as for a wrong one, count it as a
   * failure, and record and notify the real reason.
   */
  refuse(reason: string): Promise<void>;
}

export type CredentialResult =
  | Accepted
  /** Wrong secret, unknown or disabled user (one answer for all of them). */
  | { kind: 'fail' }
  | { kind: 'throttled'; retryAfterSec: number }
  /** The hash budget is spent (503). */
  | { kind: 'busy' }
  /** No sign-in from this network (or lockdown): refused before any secret is looked at. */
  | { kind: 'network' };

/** Lockdown respected, then the rules: see src/policy/admission.ts. */
export function signInAllowed(rt: Pick<Runtime, 'lockdown'>, cfg: CompiledConfig, app: CompiledApp, ip: string): boolean {
  return !lockdownRefuses(rt.lockdown, cfg, ip) && signInAdmits(app, { ip });
}

/** The keyed fingerprint of a typed secret, for "the same wrong password counts once". */
export function secretFingerprint(rt: Pick<Runtime, 'box'>, via: CredentialVia, user: string, secret: string): string {
  return rt.box.hmac(via === 'basic' ? APP_PASSWORD_PURPOSE : 'password-fingerprint', `${user}\u0000${secret}`);
}


/**
 * The keyed fingerprint of a typed secret alone, whatever the account: a truncated HMAC with a
 * key derived from the secret key. Kept only in the rate store, with a TTL; never logged.
 */
export function samePasswordFingerprint(rt: Pick<Runtime, 'box'>, secret: string): string {
  return Buffer.from(rt.box.hmac(SAME_PASSWORD_PURPOSE, secret), 'base64url').subarray(0, SAME_PASSWORD_BYTES).toString('base64url');
}

export async function checkCredential(rt: Pick<Runtime, 'attack' | 'audit' | 'box' | 'clock' | 'directory' | 'hashBudget' | 'hasher' | 'lockdown' | 'random' | 'stores' | 'throttle' | 'users'>, cfg: CompiledConfig, a: CredentialRequest): Promise<CredentialResult> {
  const name = a.via === 'basic' ? a.username : a.username.trim();
  const base = { ip: a.ip, app: a.app.name, user: name };
  const what = a.via === 'basic' ? 'app password' : a.via === 'password-change' ? 'current password on password change' : a.via === 'reauth' ? 'password re-entered' : 'password';
  if (!signInAllowed(rt, cfg, a.app, a.ip)) {
    rt.audit.record({ ...base, event: 'network_denied', outcome: 'denied', reason: `${what} from a network no sign-in rule admits` });
    return { kind: 'network' };
  }
  const fileUser = rt.users.get(name);
  // the directory is asked only for names the users file does not hold (file users first), also
  // ignoring case: `Alice` must not reach a directory alice when the file holds alice
  const shadowed = !fileUser && rt.directory ? fileUserLike(rt.users, name) : undefined;
  const directory = !fileUser && !shadowed && rt.directory ? rt.directory : null;
  // what the gateway last knew of a directory user (for the state tag); the directory itself is
  // asked only after the reservation, so a throttled or blocked client never causes a search
  const user = fileUser ?? (directory ? (directory.cached(name) ?? undefined) : undefined);
  // what a typed secret is compared and counted as; the attempt's fingerprint also names the
  // state that decides the answer (stored hash, disabled, attack posture), so a guess remembered
  // as answered (see reservePassword's `repeat`) is forgotten the moment that state changes: a
  // re-enabled user or a changed password is checked again at once
  const digest = secretFingerprint(rt, a.via, name, a.secret);
  const fingerprint = `${digest}.${stateTag(user, rt.attack.active)}`;
  // read for every attempt, whoever it names, so a right password costs what a wrong one does
  // (an app password never leads to a second factor: Basic, sent with every request, skips that read)
  const [familiar, totp] = await Promise.all([rt.throttle.isFamiliar(name, a.ip), a.via === 'basic' ? null : rt.stores.state.getTotp(name)]);
  // an argon2 thread is taken before the attempt is reserved, so a reserved attempt is always
  // verified (never taken back for lack of a thread, which could uncount a parallel attempt)
  const release = a.via === 'basic' ? () => undefined : rt.hashBudget.tryAcquire();
  if (!release) {
    // every attempt is recorded, also those refused before any hash was computed
    rt.audit.record({ ...base, event: 'login_failed', outcome: 'denied', reason: 'busy (hash budget spent)' });
    return { kind: 'busy' };
  }
  let ticket;
  let v: Verified;
  try {
    // app passwords are checked in microseconds (an HMAC): no cap on checks in flight, so a
    // user's phone and tablet syncing at the same moment are not refused
    const r = await rt.throttle.reservePassword({
      ip: a.ip,
      user: name,
      passwordFingerprint: fingerprint,
      familiar,
      inFlightCap: a.via !== 'basic',
      sameFingerprint: samePasswordFingerprint(rt, a.secret),
      enforceSprayed: a.via === 'form' || a.via === 'basic',
    });
    if (!r.allowed && r.kind === 'sprayed') {
      // before any hash, answered as a wrong password
      rt.audit.record({ ...base, event: 'login_failed', outcome: 'denied', reason: a.via === 'form' ? 'sprayed password' : `sprayed password (${what})` });
      return { kind: 'fail' };
    }
    if (!r.allowed) {
      if (r.kind === 'repeat') {
        rt.audit.record({ ...base, event: 'login_failed', outcome: 'failure', reason: `the same wrong ${what} again (not checked again)` });
        return { kind: 'fail' };
      }
      rt.audit.record({ ...base, event: 'login_failed', outcome: 'denied', reason: `throttled (${r.kind}): ${what}` });
      return { kind: 'throttled', retryAfterSec: r.retryAfterSec };
    }
    ticket = r.ticket;
    try {
      v = !directory
        ? { ok: await verify(rt, a, name, user, digest), user, ...(shadowed ? { reason: `unknown user (differs only in case from the users-file user ${shadowed.name}; the directory is not asked)` } : {}) }
        : a.via === 'basic'
          ? await verifyDirectoryAppPassword(rt, directory, a, name)
          : await verifyDirectory(rt, directory, a, name, familiar);
    } catch (e) {
      // the directory unreachable: the attempt is taken back and the caller answers 503 (fail closed)
      await ticket.cancel();
      if (isPortcullisError(e, 'PC_DIRECTORY_UNAVAILABLE')) {
        rt.audit.record({ ...base, event: 'login_failed', outcome: 'denied', reason: `directory unavailable (${what})` });
        // Basic answers 503 through the gate as for a spent budget; the portal's error page says 503 too
        if (a.via === 'basic') return { kind: 'busy' };
      }
      throw e;
    }
  } finally {
    release();
  }

  const failed = async (event: AuditEventName, reason: string, outcome: 'failure' | 'denied' = 'failure') => {
    // a right password refused is remembered like a wrong one: repeats of both are answered
    // without a hash, so the time of a repeat cannot tell them apart
    const [f] = await Promise.all([ticket.failed(), rt.attack.recordFailure(networkKey(a.ip, ATTACK_IPV6_PREFIX))]);
    rt.audit.record({ ...base, event, outcome, reason });
    if (f.lockedOut) rt.audit.record({ ...base, event: 'locked_out', outcome: 'denied', reason: familiar ? 'familiar networks' : 'unfamiliar networks' });
    if (f.ipBlocked) rt.audit.record({ ...base, event: 'ip_blocked', outcome: 'denied', reason: 'too many failures from this source' });
    if (f.sprayed) {
      const sp = cfg.loginLimits.samePassword;
      rt.audit.record({ event: 'password_sprayed', ip: a.ip, app: a.app.name, outcome: 'denied', reason: sprayedReason(f.sprayed.count, f.sprayed.accounts, sp.windowMs, sp.blockMs) });
    }
  };

  const found = v.user;
  if (!v.ok && v.suspended) {
    // a right app password suspended for now: answered as a wrong one, but neither counted nor
    // remembered as one (it must work again as soon as the suspension ends)
    await ticket.cancel();
    rt.audit.record({ ...base, event: 'login_failed', outcome: 'denied', reason: v.suspended });
    return { kind: 'fail' };
  }
  if (!v.ok || !found) {
    const why = v.reason ?? (!found ? 'unknown user' : 'wrong');
    await failed('login_failed', why === 'wrong' ? `wrong ${what}` : a.via === 'form' ? why : `${why} (${what})`);
    return { kind: 'fail' };
  }
  if (found.disabled) {
    await failed('password_refused_correct', a.via === 'form' ? 'user disabled' : `user disabled (${what})`, 'denied');
    return { kind: 'fail' };
  }
  // a directory user's second factor and familiar networks are kept under its account key (the
  // typed name may differ in case, be a userPrincipalName, or be an old name)
  const key = accountKey(found);
  const hasTotp = key === name ? totp !== null : a.via === 'basic' ? false : (await rt.stores.state.getTotp(key)) !== null;
  const isFamiliar = key === name ? familiar : await rt.throttle.isFamiliar(key, a.ip);
  return {
    kind: 'ok',
    user: found,
    familiar: isFamiliar,
    hasTotp,
    sprayed: ticket.sprayed,
    mustChange: v.mustChange ?? false,
    directoryDn: v.dn ?? null,
    accept: async () => {
      // an app password proves nothing about the account password: it forgets no failures
      await ticket.succeeded({ reset: a.via !== 'basic' });
      // Basic clients send the app password with every request: not a sign-in each time
      if (a.via === 'form') rt.audit.record({ ...base, user: found.name, event: 'login_succeeded', outcome: 'success' });
    },
    refuse: async (reason: string) => {
      await failed('password_refused_correct', reason, 'denied');
    },
  };
}

interface Verified {
  ok: boolean;
  user: UserRecord | undefined;
  /** The audit reason of a failure other than a plain wrong secret. */
  reason?: string;
  /** The directory says the (right) password must be changed now. */
  mustChange?: boolean;
  dn?: string;
  /** A right secret suspended for now (why): refused, not counted as a failure. */
  suspended?: string;
}

/**
 * A directory user's password, after the gateway's reservation (the throttles have decided):
 * search, account state, the account's bind budget, then one bind. What protects the directory's
 * own lockout (`ldap.lockout_threshold`):
 * - the bind budget is kept per directory account (its stable id), so `Alice`, `alice` and
 *   `alice@example.org` share it: failed binds since the last successful one, counted
 *   atomically before the bind, at most `lockout_threshold - 1` in all and fewer from networks
 *   unfamiliar to the account (a reserve is kept for the owner's own typos at the office);
 * - a wrong password already counted for this account is answered without a new bind;
 * - the directory's own count (pwdFailureTime values, badPwdCount) is read in the search, so
 *   failures made elsewhere (a Windows logon) are respected too;
 * - a locked, disabled or expired account is never bound.
 */
async function verifyDirectory(rt: Pick<Runtime, 'box' | 'clock' | 'random' | 'stores' | 'users'>, dir: LdapDirectory, a: CredentialRequest, name: string, familiar: boolean): Promise<Verified> {
  // a signed-in user's own password (change, re-entry) names the account by its key; a name typed
  // at the form or over Basic is always searched as a name (escaped), never as a key
  const entry = isDirectoryKey(name) && (a.via === 'password-change' || a.via === 'reauth') ? await dir.findByKey(name) : await dir.find(name);
  if (!entry) return { ok: false, user: undefined, reason: 'unknown user' };
  // an entry named as a users-file user (ignoring case) would act under the file user's name
  if (fileUserLike(rt.users, entry.record.name)) return { ok: false, user: undefined, reason: `directory: the entry ${entry.record.name} has the name of a users-file user (refused; the file user is never shadowed)` };
  const user = entry.record;
  if (entry.refused) return { ok: false, user, reason: entry.refused };
  if (a.secret === '') return { ok: false, user, reason: 'empty password (no bind)' };
  const threshold = dir.cfg.lockoutThreshold;
  const limit = familiar ? threshold - 1 : threshold - 1 - ownerReserve(threshold);
  if (entry.directoryFailures >= limit) {
    return { ok: false, user, reason: `directory: ${entry.directoryFailures} failed binds already counted by the directory; no bind (lockout at ${threshold})` };
  }
  const key = `ldap-bind:${entry.id}`;
  const member = rt.box.hmac('ldap-bind', `${entry.id}\u0000${entry.passwordTag}\u0000${a.secret}`).slice(0, 22);
  const now = rt.clock.now();
  // the directory's own count is part of the atomic reservation: parallel attempts that all read
  // the same count share what is left of the budget (limit - that count), they do not each get
  // it. The gateway's own recent failures are then counted twice (in the budget and in the
  // directory's count): the safe direction.
  const max = limit - entry.directoryFailures;
  const r = await rt.stores.rates.reserve({ blocks: [], counters: [{ key, windowMs: BIND_BUDGET_WINDOW_MS, member, max }], seen: { key, member } }, now);
  if (!r.ok) {
    // the same password for this account is in the budget: answered wrong before, or its bind is
    // in flight. Either way not bound again, and not counted or remembered as a new failure (a
    // right password submitted twice at once must not become a "known wrong" one)
    if (r.seen) return { ok: false, user, suspended: 'directory: the same password for this account again while it is in the bind budget (no bind)' };
    return { ok: false, user, reason: `directory: bind budget spent (${limit} failed binds${familiar ? '' : ' from unfamiliar networks'}, ${entry.directoryFailures} counted by the directory); no bind (lockout at ${threshold})` };
  }
  let out;
  try {
    out = await dir.bind(entry.dn, a.secret);
  } catch (e) {
    if (!bindUnanswered(e)) await rt.stores.rates.unhit(key, now, member).catch(() => undefined);
    else {
      // a bind sent and not answered may have been counted by the directory: it stays in the
      // budget, but under a member of its own, so the same (perhaps right) password can be tried
      // again once the directory answers, instead of being taken for a repeat for 24 h. Added
      // before the original is taken back: the count never drops in between.
      const stand = `${member}:unanswered:${rt.box.hmac('ldap-bind-unanswered', `${member}\u0000${now}\u0000${rt.random.bytes(8).toString('hex')}`).slice(0, 8)}`;
      await rt.stores.rates.hit(key, BIND_BUDGET_WINDOW_MS, now, stand).catch(() => undefined);
      await rt.stores.rates.unhit(key, now, member).catch(() => undefined);
    }
    throw e;
  }
  if (out.kind === 'wrong') return { ok: false, user, reason: 'wrong' };
  // a right password: the directory's count starts again, and so does the budget
  await rt.stores.rates.reset(key);
  return { ok: true, user, mustChange: out.kind === 'expired' || entry.mustChange, dn: entry.dn };
}

/**
 * An app password of a directory user: the user looked up (cache first, at most `ldap.cache`
 * old; a cached record older than that is unusable, so an outage is a 503 once `cache` has
 * passed), the app password checked by the gateway under the account key (a rename keeps it). No
 * bind: an app password never reaches the directory. While the directory says the account's
 * password must be changed (ppolicy pwdReset, AD pwdLastSet=0, expired) its app passwords are
 * suspended: a right one is refused (audited), as for a disabled account.
 */
async function verifyDirectoryAppPassword(rt: Pick<Runtime, 'box' | 'hasher' | 'stores' | 'users'>, dir: LdapDirectory, a: CredentialRequest, name: string): Promise<Verified> {
  // a name typed over Basic is a name, never an account key
  const entry = isDirectoryKey(name) ? null : await dir.lookupEntry(name, false);
  const user = entry && !fileUserLike(rt.users, entry.record.name) ? entry.record : undefined;
  const key = user ? accountKey(user) : name;
  const ok = await verify(rt, a, key, user, secretFingerprint(rt, 'basic', key, a.secret));
  if (ok && entry?.mustChange) return { ok: false, user, suspended: 'app password suspended: the directory says the password must be changed' };
  return { ok, user };
}

/** How long a failed bind stays in an account's bind budget (unless a bind succeeds first). */
const BIND_BUDGET_WINDOW_MS = 24 * 3600_000;

/** Failed binds kept back from unfamiliar networks for the owner: a third of the budget, at most 3. */
export function ownerReserve(threshold: number): number {
  return Math.min(3, Math.floor((threshold - 1) / 3));
}

async function verify(rt: Pick<Runtime, 'hasher' | 'stores'>, a: CredentialRequest, name: string, user: UserRecord | undefined, digest: string): Promise<boolean> {
  if (a.via === 'basic') {
    // app passwords are random 160-bit secrets stored as keyed HMACs: the fingerprint is the
    // stored digest. The store is asked whether or not the user exists, so a remote store's round
    // trip does not tell a known user name from an unknown one.
    const stored = await rt.stores.state.listAppPasswords(name);
    let ok = false;
    for (const r of user ? stored : []) if (sameSecret(r.hash, digest)) ok = true;
    return ok;
  }
  // a disabled user's password is still checked (against the real hash): a right one is then
  // refused and reported rather than silently treated as wrong. The caller holds a hash-budget slot.
  const hash = user ? user.passwordHash : null;
  return rt.hasher.verify(hash, a.secret);
}

/** A short tag of what decides a right password's fate: the stored hash, disabled, the posture. */
function stateTag(user: UserRecord | undefined, posture: boolean): string {
  // (a directory user's "must change" too: it suspends app passwords, and its end re-checks them)
  const state = `${user ? user.passwordHash : ''}\u0000${user?.disabled ? 1 : 0}\u0000${posture ? 1 : 0}${user?.mustChange ? '\u0000c' : ''}`;
  return createHash('sha256').update(state).digest('base64url').slice(0, 8);
}


/** The audit keeps a field to 256 characters: the accounts listed are those that fit, then a count. */
const AUDIT_FIELD = 256;

/** `tried on 20 accounts within 1h; refused from unfamiliar networks for 1d: a, b, c (+3 more)` */
export function sprayedReason(count: number, accounts: readonly string[], windowMs: number, blockMs: number): string {
  const head = `tried on ${count} accounts within ${formatDuration(windowMs)}; refused from unfamiliar networks for ${formatDuration(blockMs)}: `;
  const shown: string[] = [];
  let len = head.length;
  for (const name of accounts) {
    const more = count - shown.length - 1;
    const tail = more > 0 ? ` (+${more} more)`.length : 0;
    if (len + (shown.length ? 2 : 0) + name.length + tail > AUDIT_FIELD) break;
    len += (shown.length ? 2 : 0) + name.length;
    shown.push(name);
  }
  const rest = count - shown.length;
  return `${head}${shown.join(', ')}${rest > 0 ? ` (+${rest} more)` : ''}`;
}

// ---- passwordless passkey sign-in (issue 13) ----

export interface PasskeyCredentialRequest {
  app: CompiledApp;
  ip: string;
  /** The pre-session the challenge was issued to (see src/auth/passwordless.ts). */
  preKey: string;
  /** The credential JSON the portal's script posted (unchecked). */
  response: unknown;
}

export type PasskeyCredentialResult =
  | { kind: 'ok'; user: UserRecord; familiar: boolean; accept(): Promise<void> }
  /** Any refusal after admission: one answer for all of them, as for a wrong password. */
  | { kind: 'fail' }
  | { kind: 'throttled'; retryAfterSec: number }
  /** Passwordless off, lockdown, or no `passkey` rule could admit this network. */
  | { kind: 'network' };

/** Whether a passkey alone may be tried from here: `passwordless` on, lockdown, then a `passkey` rule. */
export function passwordlessAllowed(rt: Pick<Runtime, 'lockdown'>, cfg: CompiledConfig, app: CompiledApp, ip: string): boolean {
  return !!cfg.webauthn?.passwordless && !lockdownRefuses(rt.lockdown, cfg, ip) && passkeyRuleAdmits(app, { ip });
}

/**
 * The credential check for a passkey alone, the same steps as {@link checkCredential}:
 *
 *   admission (passwordless on, lockdown, a `passkey` rule for this network) -> atomic
 *   reservation -> verify (src/auth/passwordless.ts) -> record -> audit
 *
 * No hash-budget slot (an ECDSA/EdDSA check costs microseconds). The reservation is the password
 * one: counted per source network (and the distinct accounts it tries), and per user, found from
 * the credential id (an id no one registered is counted as an account of its own, so spraying
 * made-up ids meets the per-source spray limit), with the same in-flight cap: parallel answers
 * for one account are refused while two are being checked. Failures count towards the attack
 * posture. A disabled user, a user no `passkey` rule admits from here, and every failed check give
 * the one generic failure; the reason goes to the audit (`passkey_failed`).
 */
export async function checkPasskey(rt: Pick<Runtime, 'attack' | 'audit' | 'box' | 'clock' | 'directory' | 'lockdown' | 'stores' | 'throttle' | 'users'>, cfg: CompiledConfig, a: PasskeyCredentialRequest): Promise<PasskeyCredentialResult> {
  const base = { ip: a.ip, app: a.app.name };
  if (!passwordlessAllowed(rt, cfg, a.app, a.ip)) {
    rt.audit.record({ ...base, event: 'network_denied', outcome: 'denied', reason: 'passkey sign-in from a network no passkey rule admits (or passwordless off, or lockdown)' });
    return { kind: 'network' };
  }
  const id = assertionId(a.response);
  const owner = id ? await rt.stores.state.passkeyOwner(id) : null;
  // the owner is an account key: a users-file name, or `ldap:` + a directory user's stable id
  const known = owner !== null ? knownUser(rt, owner) : undefined;
  const audited = { ...base, user: owner ?? undefined };
  // counted under the owner; a credential id no one registered under an account named after it
  const account = owner ?? `\u0000passkey:${rt.box.hmac('passwordless-unknown-credential', id).slice(0, 16)}`;
  const familiar = owner !== null ? await rt.throttle.isFamiliar(owner, a.ip) : false;
  const r = await rt.throttle.reservePassword({
    ip: a.ip,
    user: account,
    passwordFingerprint: `${assertionFingerprint(rt, a.response)}.${stateTag(known, rt.attack.active)}`,
    familiar,
    inFlightCap: true,
    enforceSprayed: false,
  });
  if (!r.allowed) {
    if (r.kind === 'repeat') {
      rt.audit.record({ ...audited, event: 'passkey_failed', outcome: 'failure', reason: 'passwordless: the same refused answer again (not checked again)' });
      return { kind: 'fail' };
    }
    rt.audit.record({ ...audited, event: 'passkey_failed', outcome: 'denied', reason: `passwordless: throttled (${r.kind})` });
    return { kind: 'throttled', retryAfterSec: r.retryAfterSec };
  }
  const ticket = r.ticket;
  let check;
  let user: UserRecord | undefined;
  try {
    check = owner === null ? { ok: false as const, reason: id ? 'unknown credential' : 'no credential id' } : await verifyPasswordless(rt, cfg, { preKey: a.preKey, response: a.response, user: owner });
    // fresh from the directory for a directory user (disabled, groups): unreachable fails closed
    if (check.ok && owner !== null) user = await lookupUser(rt, owner);
  } catch (e) {
    await ticket.cancel();
    throw e;
  }
  const failed = async (reason: string, outcome: 'failure' | 'denied' = 'failure'): Promise<PasskeyCredentialResult> => {
    const [f] = await Promise.all([ticket.failed(), rt.attack.recordFailure(networkKey(a.ip, ATTACK_IPV6_PREFIX))]);
    rt.audit.record({ ...audited, event: 'passkey_failed', outcome, reason: `passwordless: ${reason}` });
    if (f.lockedOut && owner !== null) rt.audit.record({ ...audited, event: 'locked_out', outcome: 'denied', reason: familiar ? 'familiar networks' : 'unfamiliar networks' });
    if (f.ipBlocked) rt.audit.record({ ...base, event: 'ip_blocked', outcome: 'denied', reason: 'too many failures from this source' });
    return { kind: 'fail' };
  };
  if (!check.ok) return failed(check.reason);
  if (!user) return failed('the credential\'s owner is not a configured user', 'denied');
  if (user.disabled) return failed('user disabled', 'denied');
  if (!passkeyRuleAdmits(a.app, { ip: a.ip, groups: user.groups })) return failed('no passkey rule admits this user from this network', 'denied');
  return {
    kind: 'ok',
    user,
    familiar,
    accept: async () => {
      // a passkey proves nothing about the password: the password failures counted stay counted
      await ticket.succeeded({ reset: false });
      rt.audit.record({ ...base, user: user.name, event: 'login_succeeded', outcome: 'success', reason: 'passkey (passwordless)' });
    },
  };
}
