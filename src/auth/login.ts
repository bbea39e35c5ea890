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
import { networkKeyFor } from './throttle.js';
import { generateSecret, otpauthUri, verifyCode } from './totp.js';
import { generateRecoveryCodes, hashRecoveryCode, normaliseRecoveryCode } from './recovery.js';

export type NextStep = 'mfa' | 'enrol' | 'password' | 'none';

export type FirstFactor =
  | { kind: 'ok'; user: UserRecord; next: NextStep; weak: boolean }
  | { kind: 'fail' }
  | { kind: 'throttled'; retryAfterSec: number }
  | { kind: 'busy' }
  | { kind: 'network' }
  /** The target needs a second factor, the user has none, and enrolment is not allowed from here. */
  | { kind: 'enrol-denied'; user: UserRecord };

/** Path of the target (from `rd`) used to decide which policy the sign-in is for. */
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
 * Whether this client may sign in to `app` at all: from a network where every rule would deny the
 * target, even the right password gets nowhere (the 2017 lesson: unknown networks are denied in
 * the first instance, before any password is tried).
 */
export function signInAllowed(rt: Runtime, cfg: CompiledConfig, app: CompiledApp, ip: string, rd: string | null): boolean {
  if (rt.lockdown.on && !cfg.lockdown.networks.contains(ip)) return false;
  const d = decide(app, { method: 'GET', path: targetPath(rd), ip, subject: null });
  return d.policy !== 'deny';
}

function fingerprint(rt: Runtime, user: string, password: string): string {
  return rt.box.hmac('password-fingerprint', `${user}\u0000${password}`);
}

export async function firstFactor(
  rt: Runtime,
  cfg: CompiledConfig,
  a: { app: CompiledApp; ip: string; username: string; password: string; rd: string | null },
): Promise<FirstFactor> {
  const name = a.username.trim();
  const base = { ip: a.ip, app: a.app.name };
  if (!signInAllowed(rt, cfg, a.app, a.ip, a.rd)) {
    rt.audit.record({ ...base, event: 'network_denied', user: name, outcome: 'denied', reason: 'sign-in from a network no rule admits' });
    return { kind: 'network' };
  }
  const t = await rt.throttle.check({ ip: a.ip, user: name });
  if (!t.allowed) {
    rt.audit.record({ ...base, event: 'login_failed', user: name, outcome: 'denied', reason: `throttled (${t.kind})` });
    return { kind: 'throttled', retryAfterSec: t.retryAfterSec };
  }
  const user = rt.users.get(name);
  const hash = user && !user.disabled ? user.passwordHash : null;
  let ok: boolean;
  try {
    ok = await rt.hashBudget.tryRun(() => rt.hasher.verify(hash, a.password));
  } catch (e) {
    if (isPortcullisError(e, 'PC_BUSY')) {
      // every attempt is recorded, also those refused before any hash was computed
      rt.audit.record({ ...base, event: 'login_failed', user: name, outcome: 'denied', reason: 'busy (hash budget spent)' });
      return { kind: 'busy' };
    }
    throw e;
  }
  if (!ok || !user) {
    const familiar = await rt.throttle.isFamiliar(name, a.ip);
    const r = await rt.throttle.recordFailure({ ip: a.ip, user: name, passwordFingerprint: fingerprint(rt, name, a.password), familiar });
    const reason = !user ? 'unknown user' : user.disabled ? 'user disabled' : 'wrong password';
    rt.audit.record({ ...base, event: 'login_failed', user: name, outcome: 'failure', reason });
    if (r.lockedOut) rt.audit.record({ ...base, event: 'locked_out', user: name, outcome: 'denied', reason: familiar ? 'familiar networks' : 'unfamiliar networks' });
    if (r.ipBlocked) rt.audit.record({ ...base, event: 'ip_blocked', user: name, outcome: 'denied', reason: 'too many failures from this source' });
    return { kind: 'fail' };
  }

  const hasTotp = (await rt.stores.state.getTotp(user.name)) !== null;
  const verdict = assess(rt, user, a.password);
  const weak = !verdict.ok;
  if (weak) {
    // A weak password may lead only to a password change the attacker cannot hijack: after a
    // second factor, or from a network the user has signed in from before. Otherwise, and always
    // under on_weak: deny, the sign-in is refused like any failure (the admin is notified).
    const onWeak = cfg.passwordPolicy.onWeak;
    const changeAllowed = onWeak === 'change' && (hasTotp || (await rt.throttle.isFamiliar(user.name, a.ip)));
    const refused = onWeak === 'deny' || (onWeak === 'change' && !changeAllowed);
    rt.audit.record({ ...base, event: 'weak_password', user: user.name, outcome: refused ? 'denied' : 'info', reason: verdict.reasons.join(',') });
    if (refused) {
      const why = onWeak === 'deny' ? 'password below policy (on_weak: deny)' : 'password below policy; change refused from an unfamiliar network without a second factor';
      rt.audit.record({ ...base, event: 'login_failed', user: user.name, outcome: 'failure', reason: why });
      return { kind: 'fail' };
    }
  }
  await rt.throttle.recordSuccess({ ip: a.ip, user: user.name });
  rt.audit.record({ ...base, event: 'login_succeeded', user: user.name, outcome: 'success' });

  const change = weak && cfg.passwordPolicy.onWeak === 'change';
  if (hasTotp) return { kind: 'ok', user, next: 'mfa', weak };
  const d = decide(a.app, { method: 'GET', path: targetPath(a.rd), ip: a.ip, subject: { name: user.name, groups: user.groups } });
  if (d.policy === 'mfa') {
    if (!cfg.totp.enrolNetworks.contains(a.ip)) return { kind: 'enrol-denied', user };
    return { kind: 'ok', user, next: 'enrol', weak };
  }
  return { kind: 'ok', user, next: change ? 'password' : 'none', weak };
}

/**
 * The password guidance verdict, remembered per (policy, user, password) so that zxcvbn (a few
 * ms of CPU on the event loop) runs once per password rather than at every sign-in. Keys are
 * keyed HMACs; only correct passwords reach here, so an attacker cannot fill the table.
 */
const verdicts = new WeakMap<object, LRUCache<string, Assessment>>();

function assess(rt: Runtime, user: UserRecord, password: string): Assessment {
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

/** A TOTP code (each time step accepted once per user, across sessions and instances) or a recovery code. */
export async function secondFactor(rt: Runtime, cfg: CompiledConfig, a: { ip: string; user: string; code: string; app: string }): Promise<SecondFactor> {
  const base = { ip: a.ip, user: a.user, app: a.app };
  const t = await rt.throttle.checkMfa({ ip: a.ip, user: a.user });
  if (!t.allowed) {
    rt.audit.record({ ...base, event: 'mfa_failed', outcome: 'denied', reason: 'throttled' });
    return { kind: 'throttled', retryAfterSec: t.retryAfterSec };
  }
  const rec = await rt.stores.state.getTotp(a.user);
  const code = a.code.replace(/\s+/g, '');
  if (rec && /^\d+$/.test(code)) {
    const secret = rt.box.open(rec.secret, `totp:${a.user}`);
    const now = rt.clock.now();
    const c = cfg.totp;
    const step = verifyCode(secret, code, { now, period: c.period, digits: c.digits, algorithm: c.algorithm, skew: c.skew });
    if (step !== null) {
      const fresh = await rt.stores.rates.claim(`totp:${a.user}:${step}`, c.period * 1000 * (2 * c.skew + 2), now);
      if (fresh) {
        await rt.throttle.recordMfaSuccess({ ip: a.ip, user: a.user });
        rt.audit.record({ ...base, event: 'mfa_succeeded', outcome: 'success', reason: 'totp' });
        return { kind: 'ok', method: 'totp' };
      }
      rt.audit.record({ ...base, event: 'totp_replayed', outcome: 'denied', reason: 'time step already used' });
    }
  } else if (normaliseRecoveryCode(code) !== null && (await rt.stores.state.consumeRecoveryCode(a.user, hashRecoveryCode(rt.box, a.user, code)))) {
    await rt.throttle.recordMfaSuccess({ ip: a.ip, user: a.user });
    rt.audit.record({ ...base, event: 'mfa_succeeded', outcome: 'success', reason: 'recovery code' });
    return { kind: 'ok', method: 'recovery' };
  }
  await rt.throttle.recordMfaFailure({ ip: a.ip, user: a.user });
  rt.audit.record({ ...base, event: 'mfa_failed', outcome: 'failure' });
  return { kind: 'fail' };
}

/** A fresh candidate secret for enrolment, sealed for the session record. */
export function startEnrolment(rt: Runtime, cfg: CompiledConfig, user: string): { sealed: string; secret: string; uri: string } {
  const c = cfg.totp;
  const secret = generateSecret(rt.random, c.algorithm);
  const uri = otpauthUri({ issuer: c.issuer, account: user, secret, period: c.period, digits: c.digits, algorithm: c.algorithm });
  return { sealed: rt.box.seal(secret, `enrol:${user}`), secret, uri };
}

export function enrolmentDetails(rt: Runtime, cfg: CompiledConfig, user: string, sealed: string): { secret: string; uri: string } {
  const c = cfg.totp;
  const secret = rt.box.open(sealed, `enrol:${user}`);
  return { secret, uri: otpauthUri({ issuer: c.issuer, account: user, secret, period: c.period, digits: c.digits, algorithm: c.algorithm }) };
}

/**
 * Confirm enrolment with a code from the new device; on success store the secret (sealed) and
 * return ten single-use recovery codes to show once.
 */
export async function confirmEnrolment(
  rt: Runtime,
  cfg: CompiledConfig,
  a: { ip: string; user: string; sealed: string; code: string; app: string },
): Promise<{ kind: 'ok'; recoveryCodes: string[] } | { kind: 'fail' } | { kind: 'network' } | { kind: 'exists' } | { kind: 'throttled'; retryAfterSec: number }> {
  const base = { ip: a.ip, user: a.user, app: a.app };
  if (!cfg.totp.enrolNetworks.contains(a.ip)) {
    rt.audit.record({ ...base, event: 'network_denied', outcome: 'denied', reason: 'TOTP enrolment outside totp.enrol.networks' });
    return { kind: 'network' };
  }
  if ((await rt.stores.state.getTotp(a.user)) !== null) return { kind: 'exists' };
  const t = await rt.throttle.checkMfa({ ip: a.ip, user: a.user });
  if (!t.allowed) return { kind: 'throttled', retryAfterSec: t.retryAfterSec };
  const c = cfg.totp;
  const secret = rt.box.open(a.sealed, `enrol:${a.user}`);
  const now = rt.clock.now();
  const step = verifyCode(secret, a.code, { now, period: c.period, digits: c.digits, algorithm: c.algorithm, skew: c.skew });
  if (step === null || !(await rt.stores.rates.claim(`totp:${a.user}:${step}`, c.period * 1000 * (2 * c.skew + 2), now))) {
    await rt.throttle.recordMfaFailure({ ip: a.ip, user: a.user });
    rt.audit.record({ ...base, event: 'mfa_failed', outcome: 'failure', reason: 'enrolment code' });
    return { kind: 'fail' };
  }
  await rt.stores.state.setTotp(a.user, { secret: rt.box.seal(secret, `totp:${a.user}`), enrolledAt: now, source: 'enrolled' });
  const codes = generateRecoveryCodes(rt.random, 10);
  await rt.stores.state.setRecoveryCodes(a.user, codes.map((x) => hashRecoveryCode(rt.box, a.user, x)));
  rt.audit.record({ ...base, event: 'totp_enrolled', outcome: 'success' });
  return { kind: 'ok', recoveryCodes: codes };
}

/** Called once a session is complete (all factors): record the network; tell on a new one. */
export async function completeSignIn(rt: Runtime, cfg: CompiledConfig, a: { ip: string; user: string; app: string }): Promise<void> {
  const key = networkKeyFor(a.ip, cfg.loginLimits.ipv6Prefix);
  const known = await rt.stores.state.knownNetworks(a.user);
  if (!known.includes(key)) {
    await rt.stores.state.addKnownNetwork(a.user, key);
    // the first sign-in ever is not news; every later new network is
    if (known.length > 0) rt.audit.record({ ip: a.ip, user: a.user, app: a.app, event: 'new_network_login', outcome: 'info', reason: key });
  }
  rt.audit.record({ ip: a.ip, user: a.user, app: a.app, event: 'session_started', outcome: 'success' });
}

export function assertStoreUp(rt: Runtime): void {
  if (!rt.stores.healthy()) throw new PortcullisError('PC_STORE_UNAVAILABLE');
}
