/**
 * The sign-in steps as core operations (no HTTP): first factor, second factor, enrolment and
 * password change. The portal routes are a thin layer over these. Every failure looks the same
 * from outside; the reason goes to the audit log only.
 */
import type { CompiledApp, CompiledConfig } from '../config/types.js';
import { PortcullisError, isPortcullisError } from '../errors.js';
import { decide } from '../policy/decide.js';
import type { Runtime } from '../runtime.js';
import type { UserRecord } from './users.js';
import type { Assessment } from './guidance.js';
import { LRUCache } from 'lru-cache';
import type { Factor } from '../store/ports.js';
import { checkCredential, samePasswordFingerprint, signInAllowed } from './credential.js';
import { signInAdmits } from '../policy/admission.js';
import { editUsersFile, setPassword } from './users.js';
import { networkKeyFor } from './throttle.js';
import { generateSecret, otpauthUri, verifyCode } from './totp.js';
import { generateRecoveryCodes, hashRecoveryCode, normaliseRecoveryCode } from './recovery.js';
import { accountKey, fileUserLike, knownUser } from '../directory/source.js';

export type NextStep = 'mfa' | 'enrol' | 'password' | 'none';

export type FirstFactor =
  /**
   * `offerEnrol`: `totp.enrol.prompt` is on, and this user could enrol here now. `mustChange`:
   * the password must be changed (weak under `on_weak: change`, or marked sprayed); the change
   * is the session's step after `next` when `next` is not already 'password'.
   */
  | { kind: 'ok'; user: UserRecord; next: NextStep; weak: boolean; offerEnrol: boolean; mustChange: boolean }
  /** Wrong password, unknown or disabled user, or a right password that leads nowhere from here. */
  | { kind: 'fail' }
  | { kind: 'throttled'; retryAfterSec: number }
  | { kind: 'busy' }
  | { kind: 'network' };

export { signInAllowed };

/** Path of the target (from `rd`): it only picks which factor to ask for first, never whether. */
function targetPath(rd: string | null): string {
  if (!rd) return '/';
  try {
    const u = new URL(rd, 'http://x');
    return decodeURIComponent(u.pathname);
  } catch {
    return '/';
  }
}

/**
 * The first factor (the login form). Admission, throttling, verification and audit are the one
 * credential check (src/auth/credential.ts); what follows decides where a right password leads,
 * from the client's network and the user alone. Wherever it cannot lead anywhere (no rule admits
 * this user from here; a second factor is needed and none can be enrolled here; a weak password
 * that may not be used) the answer is exactly that of a wrong password.
 *
 * During the attack posture (src/auth/attack.ts) a network unfamiliar to the account needs a
 * second factor even where the rule says `password`: a user with one is asked for it, a user
 * without one may enrol one where enrolment is allowed, and anyone else is refused like a wrong
 * password (a distinct message after a right password would confirm it to the attacker); the
 * real reason goes to the audit and the owner is told (`password_refused_correct`). A password
 * marked sprayed reaches here only from a familiar network (elsewhere it is refused before any
 * hash): it leads to a password change, as a weak one under `on_weak: change` does.
 */
export async function firstFactor(
  rt: Pick<Runtime, 'attack' | 'audit' | 'box' | 'clock' | 'directory' | 'guidance' | 'hashBudget' | 'hasher' | 'lockdown' | 'random' | 'stores' | 'throttle' | 'users'>,
  cfg: CompiledConfig,
  a: { app: CompiledApp; ip: string; username: string; password: string; rd: string | null },
): Promise<FirstFactor> {
  const c = await checkCredential(rt, cfg, { app: a.app, ip: a.ip, username: a.username, secret: a.password, via: 'form' });
  if (c.kind !== 'ok') return c;
  const { user } = c;
  // a second factor: an authenticator app, or a passkey (where passkeys are configured)
  const hasTotp = c.hasTotp || (cfg.webauthn !== null && (await rt.stores.state.listPasskeys(accountKey(user))).length > 0);
  const base = { ip: a.ip, app: a.app.name, user: user.name };

  const who = { ip: a.ip, groups: user.groups };
  if (!signInAdmits(a.app, who)) {
    await c.refuse('no rule admits this user from this network');
    return { kind: 'fail' };
  }
  const oneFactorEnough = signInAdmits(a.app, { ...who, factors: ['pwd'] });
  const canEnrol = cfg.totp.enrolNetworks.contains(a.ip);
  if (!hasTotp && !oneFactorEnough && !canEnrol) {
    await c.refuse('a second factor is required and none can be enrolled from this network');
    return { kind: 'fail' };
  }
  const posture = rt.attack.active && !c.familiar;
  if (posture && !hasTotp && !canEnrol) {
    await c.refuse('attack posture: a network unfamiliar to the account needs a second factor, and the account has none');
    return { kind: 'fail' };
  }

  const verdict = assess(rt, user, a.password);
  const weak = !verdict.ok;
  if (weak) {
    // A weak password may lead only to a password change the attacker cannot hijack: after a
    // second factor, or from a network the user has signed in from before. Otherwise, and always
    // under on_weak: deny, the sign-in is refused like any failure (the admin is notified).
    const onWeak = cfg.passwordPolicy.onWeak;
    const changeAllowed = onWeak === 'change' && (hasTotp || c.familiar);
    const refused = onWeak === 'deny' || (onWeak === 'change' && !changeAllowed);
    rt.audit.record({ ...base, event: 'weak_password', outcome: refused ? 'denied' : 'info', reason: verdict.reasons.join(',') });
    if (refused) {
      await c.refuse(onWeak === 'deny' ? 'password below policy (on_weak: deny)' : 'password below policy; change refused from an unfamiliar network without a second factor');
      return { kind: 'fail' };
    }
  }
  if (c.mustChange) {
    // the directory says the password has expired (or must be changed): it leads only to the
    // change page, and only where a thief could not follow (the `on_weak: change` rule)
    if (!hasTotp && !c.familiar) {
      await c.refuse('directory: password expired; change refused from an unfamiliar network without a second factor');
      return { kind: 'fail' };
    }
    rt.audit.record({ ...base, event: 'weak_password', outcome: 'info', reason: 'directory: password expired' });
  }
  if (c.sprayed) {
    // the user's own password is being sprayed at other accounts: it must change now
    rt.audit.record({ ...base, event: 'weak_password', outcome: 'info', reason: 'sprayed' });
  }
  await c.accept();

  // Ask for what is needed, no more: `password` is one factor. The target (`rd`) only tells
  // whether the first request will need a second factor, to ask for it now rather than at once
  // after; any later request that meets an `mfa` rule steps up (the gate sends it to the mfa page).
  const change = (weak && cfg.passwordPolicy.onWeak === 'change') || c.sprayed || c.mustChange;
  const d = decide(a.app, { method: 'GET', path: targetPath(a.rd), ip: a.ip, subject: { name: user.name, groups: user.groups } });
  const targetNeedsMfa = d.policy === 'mfa' || d.policy === 'passkey';
  const ok = (next: NextStep): FirstFactor => ({
    kind: 'ok',
    user,
    next,
    weak,
    offerEnrol: next === 'none' && !hasTotp && canEnrol && cfg.totp.enrolPrompt,
    mustChange: change,
  });
  if (hasTotp) {
    // a weak password is changed only after the second factor from a network that is not familiar
    const secondNow = cfg.totp.always || !oneFactorEnough || targetNeedsMfa || (change && !c.familiar) || posture;
    if (secondNow) return ok('mfa');
    return ok(change ? 'password' : 'none');
  }
  if (!oneFactorEnough || (targetNeedsMfa && canEnrol) || posture) return ok('enrol');
  return ok(change ? 'password' : 'none');
}

export type PasswordChange =
  | { kind: 'ok' }
  | { kind: 'fail' }
  | { kind: 'throttled'; retryAfterSec: number }
  | { kind: 'busy' }
  | { kind: 'network' }
  | { kind: 'mismatch' }
  | { kind: 'same' }
  | { kind: 'weak'; reasons: readonly string[] };

/**
 * Change one's own password: the current one goes through the same credential check as a
 * sign-in (admission from this network, reservation, verification); the new one is held to the
 * policy and hashed within the hash budget; every session of the user ends (the caller opens a
 * fresh one for this browser).
 */
export async function changePassword(
  rt: Pick<Runtime, 'attack' | 'audit' | 'box' | 'clock' | 'directory' | 'guidance' | 'hashBudget' | 'hasher' | 'live' | 'lockdown' | 'random' | 'reloadUsers' | 'stores' | 'throttle' | 'users'>,
  cfg: CompiledConfig,
  a: { app: CompiledApp; ip: string; user: string; current: string; next: string; confirm: string },
): Promise<PasswordChange> {
  if (a.next !== a.confirm) return { kind: 'mismatch' };
  const c = await checkCredential(rt, cfg, { app: a.app, ip: a.ip, username: a.user, secret: a.current, via: 'password-change' });
  if (c.kind !== 'ok') return c;
  await c.accept();
  const user = c.user;
  if (a.next === a.current) return { kind: 'same' };
  const verdict = rt.guidance().assess(a.next, { user: user.name, email: user.email });
  if (!verdict.ok) return { kind: 'weak', reasons: verdict.reasons };
  // not to a password being sprayed at other accounts right now
  if (await rt.throttle.isSprayed(samePasswordFingerprint(rt, a.next))) return { kind: 'weak', reasons: ['sprayed'] };
  if (user.source === 'ldap') {
    // a directory user's password lives in the directory (held to the same policy above)
    if (!rt.directory || !c.directoryDn) throw new PortcullisError('PC_DIRECTORY_UNAVAILABLE');
    try {
      await rt.directory.changePassword(c.directoryDn, a.current, a.next);
    } catch (e) {
      if (isPortcullisError(e, 'PC_WEAK_PASSWORD')) {
        rt.audit.record({ event: 'weak_password', ip: a.ip, user: user.name, app: a.app.name, outcome: 'denied', reason: e.message });
        return { kind: 'weak', reasons: ['directory'] };
      }
      throw e;
    }
  } else {
    // hashing the new password counts against the same budget as verifications (503 past it)
    let hash: string;
    try {
      hash = await rt.hashBudget.tryRun(() => rt.hasher.hash(a.next));
    } catch (e) {
      if (isPortcullisError(e, 'PC_BUSY')) return { kind: 'busy' };
      throw e;
    }
    await editUsersFile(cfg.usersFile, (doc) => setPassword(doc, user.name, hash));
    await rt.reloadUsers();
  }
  // a new password ends every session of the user (ASVS 3.3.3): a thief's session must not
  // outlive the change
  const ended = await rt.stores.sessions.deleteByUser(accountKey(user));
  for (const conn of rt.live) if (conn.user === accountKey(user)) conn.close('password changed');
  if (ended > 0) rt.audit.record({ event: 'session_revoked', ip: a.ip, user: user.name, app: a.app.name, outcome: 'info', reason: 'password changed' });
  return { kind: 'ok' };
}

/**
 * The password guidance verdict, remembered per (policy, user, password) so that zxcvbn (a few
 * ms of CPU on the event loop) runs once per password rather than at every sign-in. Keys are
 * keyed HMACs; only correct passwords reach here, so an attacker cannot fill the table.
 */
const verdicts = new WeakMap<object, LRUCache<string, Assessment>>();

function assess(rt: Pick<Runtime, 'box' | 'guidance'>, user: UserRecord, password: string): Assessment {
  const g = rt.guidance();
  let cache = verdicts.get(g);
  if (!cache) {
    cache = new LRUCache<string, Assessment>({ max: 10_000 });
    verdicts.set(g, cache);
  }
  const key = rt.box.hmac('guidance-verdict', `${user.name}\u0000${user.email ?? ''}\u0000${password}`);
  let v = cache.get(key);
  if (!v) {
    v = g.assess(password, { user: user.name, email: user.email });
    cache.set(key, v);
  }
  return v;
}

export type SecondFactor = { kind: 'ok'; method: 'totp' | 'recovery' } | { kind: 'fail' } | { kind: 'throttled'; retryAfterSec: number };

/**
 * A TOTP code (each time step accepted once per user, across sessions and instances) or a
 * recovery code. The attempt is reserved in the throttle before the code is looked at, and one
 * session verifies one code at a time.
 */
export async function secondFactor(
  rt: Pick<Runtime, 'audit' | 'box' | 'clock' | 'stores' | 'throttle'>,
  cfg: CompiledConfig,
  a: { ip: string; user: string; code: string; app: string; session?: string | undefined },
): Promise<SecondFactor> {
  const base = { ip: a.ip, user: a.user, app: a.app };
  const t = await rt.throttle.reserveMfa({ ip: a.ip, user: a.user, session: a.session });
  if (!t.allowed) {
    rt.audit.record({ ...base, event: 'mfa_failed', outcome: 'denied', reason: 'throttled' });
    return { kind: 'throttled', retryAfterSec: t.retryAfterSec };
  }
  try {
    const rec = await rt.stores.state.getTotp(a.user);
    const code = a.code.replace(/\s+/g, '');
    // a code of the authenticator's length in digits is a TOTP code; anything else (an all-digit
    // recovery code typed without its dash included) is tried as a recovery code
    if (rec && /^\d+$/.test(code) && code.length === cfg.totp.digits) {
      const secret = rt.box.open(rec.secret, `totp:${a.user}`);
      const now = rt.clock.now();
      const c = cfg.totp;
      const step = verifyCode(secret, code, { now, period: c.period, digits: c.digits, algorithm: c.algorithm, skew: c.skew });
      if (step !== null) {
        const fresh = await rt.stores.rates.claim(`totp:${a.user}:${step}`, c.period * 1000 * (2 * c.skew + 2), now);
        if (fresh) {
          await t.ticket.succeeded();
          rt.audit.record({ ...base, event: 'mfa_succeeded', outcome: 'success', reason: 'totp' });
          return { kind: 'ok', method: 'totp' };
        }
        rt.audit.record({ ...base, event: 'totp_replayed', outcome: 'denied', reason: 'time step already used' });
      }
    } else if (normaliseRecoveryCode(code) !== null && (await rt.stores.state.consumeRecoveryCode(a.user, hashRecoveryCode(rt.box, a.user, code)))) {
      await t.ticket.succeeded();
      rt.audit.record({ ...base, event: 'mfa_succeeded', outcome: 'success', reason: 'recovery code' });
      return { kind: 'ok', method: 'recovery' };
    }
  } catch (e) {
    // a store error half way: the attempt counts, and the session's slot is given back
    await t.ticket.failed().catch(() => undefined);
    throw e;
  }
  await t.ticket.failed();
  rt.audit.record({ ...base, event: 'mfa_failed', outcome: 'failure' });
  return { kind: 'fail' };
}

/** A fresh candidate secret for enrolment, sealed for the session record. */
export function startEnrolment(rt: Pick<Runtime, 'box' | 'directory' | 'random' | 'users'>, cfg: CompiledConfig, user: string): { sealed: string; secret: string; uri: string } {
  const c = cfg.totp;
  const secret = generateSecret(rt.random, c.algorithm);
  // the authenticator shows the user's name (a directory user's key is its stable id)
  const uri = otpauthUri({ issuer: c.issuer, account: knownUser(rt, user)?.name ?? user, secret, period: c.period, digits: c.digits, algorithm: c.algorithm });
  return { sealed: rt.box.seal(secret, `enrol:${user}`), secret, uri };
}

export function enrolmentDetails(rt: Pick<Runtime, 'box' | 'directory' | 'users'>, cfg: CompiledConfig, user: string, sealed: string): { secret: string; uri: string } {
  const c = cfg.totp;
  const secret = rt.box.open(sealed, `enrol:${user}`);
  return { secret, uri: otpauthUri({ issuer: c.issuer, account: knownUser(rt, user)?.name ?? user, secret, period: c.period, digits: c.digits, algorithm: c.algorithm }) };
}

/**
 * Confirm enrolment with a code from the new device; on success store the secret (sealed) and
 * return ten single-use recovery codes to show once.
 */
export async function confirmEnrolment(
  rt: Pick<Runtime, 'audit' | 'box' | 'clock' | 'random' | 'stores' | 'throttle'>,
  cfg: CompiledConfig,
  a: { ip: string; user: string; sealed: string; code: string; app: string; session?: string | undefined; replace?: boolean },
): Promise<{ kind: 'ok'; recoveryCodes: string[] } | { kind: 'fail' } | { kind: 'network' } | { kind: 'exists' } | { kind: 'throttled'; retryAfterSec: number }> {
  const base = { ip: a.ip, user: a.user, app: a.app };
  if (!cfg.totp.enrolNetworks.contains(a.ip)) {
    rt.audit.record({ ...base, event: 'network_denied', outcome: 'denied', reason: 'TOTP enrolment outside totp.enrol.networks' });
    return { kind: 'network' };
  }
  const had = (await rt.stores.state.getTotp(a.user)) !== null;
  if (had && !a.replace) return { kind: 'exists' };
  const t = await rt.throttle.reserveMfa({ ip: a.ip, user: a.user, session: a.session });
  if (!t.allowed) return { kind: 'throttled', retryAfterSec: t.retryAfterSec };
  const c = cfg.totp;
  const secret = rt.box.open(a.sealed, `enrol:${a.user}`);
  const now = rt.clock.now();
  const step = verifyCode(secret, a.code, { now, period: c.period, digits: c.digits, algorithm: c.algorithm, skew: c.skew });
  // the time step is claimed as at sign-in: the code that confirmed enrolment cannot be replayed
  if (step === null || !(await rt.stores.rates.claim(`totp:${a.user}:${step}`, c.period * 1000 * (2 * c.skew + 2), now))) {
    await t.ticket.failed();
    rt.audit.record({ ...base, event: 'mfa_failed', outcome: 'failure', reason: 'enrolment code' });
    return { kind: 'fail' };
  }
  await t.ticket.succeeded();
  await rt.stores.state.setTotp(a.user, { secret: rt.box.seal(secret, `totp:${a.user}`), enrolledAt: now, source: 'enrolled' });
  const codes = generateRecoveryCodes(rt.random, 10);
  await rt.stores.state.setRecoveryCodes(a.user, codes.map((x) => hashRecoveryCode(rt.box, a.user, x)));
  rt.audit.record({ ...base, event: 'totp_enrolled', outcome: 'success', reason: had ? 'replaced the authenticator' : 'first authenticator' });
  return { kind: 'ok', recoveryCodes: codes };
}

/** How long a re-entered password allows changing one's own factors. */
export const REAUTH_MS = 5 * 60_000;

/**
 * Re-enter the password before changing one's own factors: the one credential check (admission,
 * reservation, verification), so a stolen session cannot use it as an unthrottled oracle.
 */
export async function reauthenticate(
  rt: Pick<Runtime, 'attack' | 'audit' | 'box' | 'clock' | 'directory' | 'hashBudget' | 'hasher' | 'lockdown' | 'random' | 'stores' | 'throttle' | 'users'>,
  cfg: CompiledConfig,
  a: { app: CompiledApp; ip: string; user: string; password: string },
): Promise<'ok' | 'fail' | 'throttled' | 'busy' | 'network'> {
  const c = await checkCredential(rt, cfg, { app: a.app, ip: a.ip, username: a.user, secret: a.password, via: 'reauth' });
  if (c.kind !== 'ok') return c.kind;
  await c.accept();
  return 'ok';
}

/** Remove one's own authenticator (and its recovery codes): only from `enrol.networks`. */
export async function removeTotp(rt: Pick<Runtime, 'audit' | 'stores'>, cfg: CompiledConfig, a: { ip: string; user: string; app: string }): Promise<'ok' | 'none' | 'network'> {
  const base = { ip: a.ip, user: a.user, app: a.app };
  if (!cfg.totp.enrolNetworks.contains(a.ip)) {
    rt.audit.record({ ...base, event: 'network_denied', outcome: 'denied', reason: 'authenticator removal outside enrol networks' });
    return 'network';
  }
  if ((await rt.stores.state.getTotp(a.user)) === null) return 'none';
  await rt.stores.state.setTotp(a.user, null);
  await rt.stores.state.setRecoveryCodes(a.user, []);
  rt.audit.record({ ...base, event: 'totp_removed', outcome: 'success', reason: 'by the user' });
  return 'ok';
}

/**
 * Called once a session is complete (no step pending): record the network as familiar and tell
 * on a new one. Only a complete, allowed sign-in counts: the session's factors must meet some
 * rule that admits this user from this network (a session that can open nothing from here never
 * makes the network familiar, so it can never widen the user's lockout bucket or the
 * `on_weak: change` path to an attacker's network).
 */
export async function completeSignIn(
  rt: Pick<Runtime, 'audit' | 'directory' | 'lockdown' | 'stores' | 'users'>,
  cfg: CompiledConfig,
  a: { ip: string; user: string; app: string; amr: readonly Factor[] },
): Promise<void> {
  const app = cfg.apps.find((x) => x.name === a.app);
  const user = knownUser(rt, a.user);
  const allowed = !!app && !!user && signInAllowed(rt, cfg, app, a.ip) && signInAdmits(app, { ip: a.ip, groups: user.groups, factors: a.amr });
  if (!allowed) {
    rt.audit.record({ ip: a.ip, user: a.user, app: a.app, event: 'session_started', outcome: 'info', reason: 'network not recorded: no rule admits this session from here' });
    return;
  }
  const key = networkKeyFor(a.ip, cfg.loginLimits.ipv6Prefix);
  // a directory user's networks are kept under its account key; the throttle, which picks the
  // familiar or unfamiliar bucket before the directory is asked who a typed name is, reads them
  // under the name, so the name gets them too (an attacker elsewhere never locks the office out)
  // (never under a users-file user's name: such directory entries are refused at sign-in, and
  // this is the second line)
  if (user.source === 'ldap' && user.name !== a.user && !fileUserLike(rt.users, user.name)) await rt.stores.state.addKnownNetwork(user.name, key);
  const known = await rt.stores.state.knownNetworks(a.user);
  if (!known.includes(key)) {
    await rt.stores.state.addKnownNetwork(a.user, key);
    // the first sign-in ever is not news; every later new network is
    if (known.length > 0) rt.audit.record({ ip: a.ip, user: a.user, app: a.app, event: 'new_network_login', outcome: 'info', reason: key });
  }
  rt.audit.record({ ip: a.ip, user: a.user, app: a.app, event: 'session_started', outcome: 'success' });
}

export function assertStoreUp(rt: Pick<Runtime, 'stores'>): void {
  if (!rt.stores.healthy()) throw new PortcullisError('PC_STORE_UNAVAILABLE');
}
