/**
 * Passkeys and security keys (WebAuthn) as a second factor, over `@simplewebauthn/server`. No
 * HTTP here: the portal (src/portal/passkey.ts) is a thin layer over these operations.
 *
 * - Every ceremony's challenge is 32 random bytes, kept in the session record it was made for
 *   (`passkeyChallenge`), lapsing after 5 minutes, and single-use: the first answer consumes it
 *   (a claim in the rate store makes that atomic across parallel requests and instances). An
 *   answer to a challenge of another session finds a different challenge in its own.
 * - The expected origins and RP ID come from `webauthn:` on every ceremony, never from the request.
 * - An assertion is reserved in the throttle like a TOTP code (`reserveMfa`: one verification per
 *   session at a time, failures counted against `login_limits.mfa`).
 * - The signature counter must move forward when either side is nonzero; one that does not is a
 *   cloned authenticator: refused, audited (`passkey_failed`), the credential kept for the admin.
 * - Registering a passkey follows the enrolment rule of TOTP: a first second factor only from
 *   `enrol.networks`; with an existing factor, from anywhere once the password and that factor
 *   were proved minutes ago ({@link registrationGate}).
 */
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type { CompiledConfig, WebauthnConfig } from '../config/types.js';
import type { Runtime } from '../runtime.js';
import type { OpenSession } from '../session/sessions.js';
import type { PasskeyRecord, SessionRecord } from '../store/ports.js';
import { REAUTH_MS } from './login.js';
import { userHandle } from './passwordless.js';
import { knownUser } from '../directory/source.js';

/** At most this many passkeys per user. */
export const MAX_PASSKEYS_PER_USER = 10;
/** How long a ceremony's challenge stays good. */
export const CHALLENGE_MS = 5 * 60_000;
const NAME_MAX = 64;
/** ES256, EdDSA, RS256: what authenticators in use today sign with. */
const ALGORITHMS = [-7, -8, -257];

const TRANSPORTS: ReadonlySet<string> = new Set(['ble', 'cable', 'hybrid', 'internal', 'nfc', 'smart-card', 'usb']);

export type CeremonyKind = 'register' | 'authenticate';

/** A passkey as the account page, the admin API and the CLI show it (no key material). */
export interface PasskeyView {
  id: string;
  name: string;
  createdAt: number;
  lastUsedAt: number | null;
  transports: readonly string[];
}

export function passkeyView(p: PasskeyRecord): PasskeyView {
  return { id: p.id, name: p.name, createdAt: p.createdAt, lastUsedAt: p.lastUsedAt ?? null, transports: [...p.transports] };
}

export async function hasPasskey(rt: Pick<Runtime, 'stores'>, user: string): Promise<boolean> {
  return (await rt.stores.state.listPasskeys(user)).length > 0;
}

/** Whether the user has any second factor (an authenticator app or a passkey). */
export async function hasSecondFactor(rt: Pick<Runtime, 'stores'>, user: string): Promise<{ totp: boolean; passkey: boolean }> {
  const [t, p] = await Promise.all([rt.stores.state.getTotp(user), rt.stores.state.listPasskeys(user)]);
  return { totp: t !== null, passkey: p.length > 0 };
}

/** A name the user gave a key: trimmed, printable, at most 64 characters; a default when empty. */
export function cleanName(raw: string | undefined, fallback: string): string {
  // eslint-disable-next-line no-control-regex
  const s = (raw ?? '').replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' ').replace(/\s+/g, ' ').trim().slice(0, NAME_MAX);
  return s || fallback;
}

/**
 * Whether this session may register (or rename, or remove) a passkey now:
 * - `network`: outside `enrol.networks` and the user has no passkey yet. A first passkey comes
 *   only from the enrol networks, even for a user with TOTP: a code (or a recovery code) can be
 *   relayed by a real-time phishing proxy, so it must not be able to mint the phishing-resistant
 *   factor that `passkey` rules ask for;
 * - `reauth`: the password was not proved within the last few minutes (outside the enrol
 *   networks: not re-entered on the management page itself; the sign-in does not count, so a
 *   stolen cookie is not enough);
 * - `factor`: in the enrol networks, the user has a second factor, not proved within the last few minutes;
 * - `hwk`: outside the enrol networks, an existing passkey was not proved within the last few minutes;
 * - `step`: the session is in a sign-in step other than enrolment;
 * - `ok`.
 */
export async function registrationGate(
  rt: Pick<Runtime, 'clock' | 'stores'>,
  cfg: CompiledConfig,
  s: OpenSession,
  ip: string,
): Promise<'ok' | 'network' | 'reauth' | 'factor' | 'hwk' | 'step' | 'off'> {
  if (!cfg.webauthn) return 'off';
  if (s.rec.pending !== 'none' && s.rec.pending !== 'enrol') return 'step';
  const f = await hasSecondFactor(rt, s.rec.user);
  const now = rt.clock.now();
  const fresh = (t: number | undefined) => t !== undefined && now - t >= 0 && now - t < REAUTH_MS;
  if (!cfg.totp.enrolNetworks.contains(ip)) {
    if (!f.passkey) return 'network';
    if (s.rec.pending !== 'none') return 'step';
    if (!fresh(s.rec.reenteredAt)) return 'reauth';
    if (!fresh(s.rec.hwkAt)) return 'hwk';
    return 'ok';
  }
  const has = f.totp || f.passkey;
  if (!fresh(s.rec.reauthAt)) return 'reauth';
  if (has && !fresh(s.rec.factorAt)) return 'factor';
  return 'ok';
}


async function setChallenge(rt: Pick<Runtime, 'clock' | 'sessions'>, s: OpenSession, kind: CeremonyKind, challenge: string): Promise<OpenSession> {
  return rt.sessions.update(s, { passkeyChallenge: { challenge, kind, expiresAt: rt.clock.now() + CHALLENGE_MS } });
}

/**
 * Take the session's challenge for `kind`: null when there is none, it is for the other
 * ceremony, it has lapsed, or another request took it first. Either way it is gone afterwards.
 */
async function takeChallenge(rt: Pick<Runtime, 'clock' | 'sessions' | 'stores'>, s: OpenSession, kind: CeremonyKind): Promise<{ challenge: string | null; session: OpenSession }> {
  const c: SessionRecord['passkeyChallenge'] = s.rec.passkeyChallenge;
  if (!c) return { challenge: null, session: s };
  const session = await rt.sessions.update(s, { passkeyChallenge: undefined });
  const now = rt.clock.now();
  if (c.kind !== kind || now >= c.expiresAt) return { challenge: null, session };
  // two requests that read the record before either cleared it: only the first claim wins
  const first = await rt.stores.rates.claim(`passkey-challenge:${c.challenge}`, CHALLENGE_MS, now);
  return { challenge: first ? c.challenge : null, session };
}

function config(cfg: CompiledConfig): WebauthnConfig {
  if (!cfg.webauthn) throw new Error('webauthn is not configured');
  return cfg.webauthn;
}

/** Options for navigator.credentials.create(), the challenge stored in the session. */
export async function registrationOptions(
  rt: Pick<Runtime, 'box' | 'clock' | 'directory' | 'random' | 'sessions' | 'stores' | 'users'>,
  cfg: CompiledConfig,
  s: OpenSession,
): Promise<{ options: PublicKeyCredentialCreationOptionsJSON; session: OpenSession }> {
  const wa = config(cfg);
  // a directory user's state is keyed `ldap:<stable id>`: the authenticator shows the name
  const user = knownUser(rt, s.rec.user);
  const existing = await rt.stores.state.listPasskeys(s.rec.user);
  const options = await generateRegistrationOptions({
    rpName: wa.rpName,
    rpID: wa.rpId,
    userName: user?.name ?? s.rec.user,
    userID: userHandle(rt, s.rec.user),
    userDisplayName: user?.displayName ?? s.rec.user,
    challenge: new Uint8Array(rt.random.bytes(32)),
    timeout: CHALLENGE_MS,
    attestationType: 'none',
    excludeCredentials: existing.map((p) => ({ id: p.id, transports: p.transports })),
    authenticatorSelection: {
      // a discoverable credential is what lets a passkey sign in alone, where that is allowed
      residentKey: wa.passwordless ? 'required' : 'preferred',
      userVerification: 'preferred',
    },
    supportedAlgorithmIDs: ALGORITHMS,
  });
  return { options, session: await setChallenge(rt, s, 'register', options.challenge) };
}

export type RegistrationResult =
  | { kind: 'ok'; session: OpenSession; passkey: PasskeyView }
  | { kind: 'fail'; session: OpenSession }
  | { kind: 'full'; session: OpenSession };

/**
 * Check the authenticator's answer to the session's registration challenge and store the new
 * credential (public key sealed). The caller has checked {@link registrationGate}.
 */
export async function finishRegistration(
  rt: Pick<Runtime, 'audit' | 'box' | 'clock' | 'sessions' | 'stores'>,
  cfg: CompiledConfig,
  a: { session: OpenSession; response: unknown; name: string | undefined; ip: string; app: string },
): Promise<RegistrationResult> {
  const wa = config(cfg);
  const user = a.session.rec.user;
  const base = { ip: a.ip, user, app: a.app };
  const { challenge, session } = await takeChallenge(rt, a.session, 'register');
  const failed = (reason: string): RegistrationResult => {
    rt.audit.record({ ...base, event: 'passkey_failed', outcome: 'denied', reason: `registration: ${reason}` });
    return { kind: 'fail', session };
  };
  if (!challenge) return failed('no live challenge for this session (expired, used, or never issued here)');
  let info;
  try {
    const v = await verifyRegistrationResponse({
      response: a.response as RegistrationResponseJSON,
      expectedChallenge: challenge,
      expectedOrigin: [...wa.origins],
      expectedRPID: wa.rpId,
      requireUserVerification: false,
      supportedAlgorithmIDs: ALGORITHMS,
    });
    if (!v.verified) return failed('not verified');
    info = v.registrationInfo;
  } catch (e) {
    return failed(errorReason(e));
  }
  const existing = await rt.stores.state.listPasskeys(user);
  const now = rt.clock.now();
  const id = info.credential.id;
  const rec: PasskeyRecord = {
    id,
    publicKey: rt.box.seal(Buffer.from(info.credential.publicKey).toString('base64url'), `passkey:${user}:${id}`),
    counter: info.credential.counter,
    // the client names the transports: only the known names are kept
    transports: [...new Set((info.credential.transports ?? []).filter((t) => TRANSPORTS.has(t)))],
    name: cleanName(a.name, `Passkey ${existing.length + 1}`),
    createdAt: now,
  };
  if (!(await rt.stores.state.addPasskey(user, rec, MAX_PASSKEYS_PER_USER))) {
    rt.audit.record({ ...base, event: 'passkey_failed', outcome: 'denied', reason: `registration: already registered, or ${MAX_PASSKEYS_PER_USER} passkeys already` });
    return { kind: 'full', session };
  }
  rt.audit.record({ ...base, event: 'passkey_enrolled', outcome: 'success', reason: existing.length === 0 ? 'first passkey' : 'another passkey' });
  return { kind: 'ok', session, passkey: passkeyView(rec) };
}

/** Options for navigator.credentials.get(): the user's own credentials only. */
export async function authenticationOptions(
  rt: Pick<Runtime, 'clock' | 'random' | 'sessions' | 'stores'>,
  cfg: CompiledConfig,
  s: OpenSession,
): Promise<{ options: PublicKeyCredentialRequestOptionsJSON; session: OpenSession } | null> {
  const wa = config(cfg);
  const keys = await rt.stores.state.listPasskeys(s.rec.user);
  if (keys.length === 0) return null;
  const options = await generateAuthenticationOptions({
    rpID: wa.rpId,
    allowCredentials: keys.map((p) => ({ id: p.id, transports: p.transports })),
    challenge: new Uint8Array(rt.random.bytes(32)),
    timeout: CHALLENGE_MS,
    userVerification: 'preferred',
  });
  return { options, session: await setChallenge(rt, s, 'authenticate', options.challenge) };
}

export type AuthenticationResult =
  | { kind: 'ok'; session: OpenSession }
  | { kind: 'fail'; session: OpenSession }
  | { kind: 'throttled'; retryAfterSec: number; session: OpenSession };

/**
 * Check an assertion against the session's challenge and the user's stored credential. Reserved
 * in the throttle first (as a TOTP code is); success resets the user's MFA failures.
 */
export async function finishAuthentication(
  rt: Pick<Runtime, 'audit' | 'box' | 'clock' | 'sessions' | 'stores' | 'throttle'>,
  cfg: CompiledConfig,
  a: { session: OpenSession; response: unknown; ip: string; app: string },
): Promise<AuthenticationResult> {
  const wa = config(cfg);
  const user = a.session.rec.user;
  const base = { ip: a.ip, user, app: a.app };
  const t = await rt.throttle.reserveMfa({ ip: a.ip, user, session: a.session.idHash });
  if (!t.allowed) {
    rt.audit.record({ ...base, event: 'passkey_failed', outcome: 'denied', reason: 'throttled' });
    return { kind: 'throttled', retryAfterSec: t.retryAfterSec, session: a.session };
  }
  let session = a.session;
  const failed = async (reason: string): Promise<AuthenticationResult> => {
    await t.ticket.failed();
    rt.audit.record({ ...base, event: 'passkey_failed', outcome: 'failure', reason });
    return { kind: 'fail', session };
  };
  try {
    const taken = await takeChallenge(rt, a.session, 'authenticate');
    session = taken.session;
    if (!taken.challenge) return await failed('no live challenge for this session (expired, used, or never issued here)');
    const response = a.response as AuthenticationResponseJSON;
    const id = typeof response?.id === 'string' ? response.id : '';
    const stored = (await rt.stores.state.listPasskeys(user)).find((p) => p.id === id);
    if (!stored) return await failed('not one of the user\'s passkeys');
    let publicKey: Uint8Array<ArrayBuffer>;
    try {
      publicKey = new Uint8Array(Buffer.from(rt.box.open(stored.publicKey, `passkey:${user}:${stored.id}`), 'base64url'));
    } catch {
      return await failed('stored credential is not authentic');
    }
    let newCounter: number;
    try {
      const v = await verifyAuthenticationResponse({
        response,
        expectedChallenge: taken.challenge,
        expectedOrigin: [...wa.origins],
        expectedRPID: wa.rpId,
        credential: { id: stored.id, publicKey, counter: stored.counter, transports: stored.transports as never },
        requireUserVerification: false,
      });
      if (!v.verified) return await failed('signature not verified');
      newCounter = v.authenticationInfo.newCounter;
    } catch (e) {
      const reason = errorReason(e);
      if (/counter/i.test(reason)) return await failed(`cloned authenticator suspected: the signature counter did not move forward (credential ${stored.id.slice(0, 16)})`);
      return await failed(reason);
    }
    // the store compares again, atomically: two assertions with the same counter cannot both pass
    const used = await rt.stores.state.usePasskey(user, stored.id, newCounter, rt.clock.now());
    if (used === 'cloned') return await failed(`cloned authenticator suspected: the signature counter did not move forward (credential ${stored.id.slice(0, 16)})`);
    if (used === 'gone') return await failed('the passkey was removed meanwhile');
    await t.ticket.succeeded();
    rt.audit.record({ ...base, event: 'mfa_succeeded', outcome: 'success', reason: 'passkey' });
    return { kind: 'ok', session };
  } catch (e) {
    await t.ticket.failed().catch(() => undefined);
    throw e;
  }
}

/**
 * The user removes one of their own passkeys. The last second factor goes only where a first one
 * could be set up again (`enrol.networks`), as TOTP removal. The check and the removal run under
 * one per-user slot in the rate store, so two removals at once (on any instance) cannot each see
 * the other key still there and together remove the last factor from outside those networks.
 */
export async function removeOwnPasskey(
  rt: Pick<Runtime, 'audit' | 'clock' | 'stores'>,
  cfg: CompiledConfig,
  a: { user: string; id: string; ip: string; app: string },
): Promise<'ok' | 'gone' | 'last' | 'busy'> {
  const slot = `factor-change:${a.user}`;
  if (!(await rt.stores.rates.acquire(slot, 1, 30_000, rt.clock.now()))) return 'busy';
  try {
    const [keys, totp] = await Promise.all([rt.stores.state.listPasskeys(a.user), rt.stores.state.getTotp(a.user)]);
    const last = totp === null && keys.length === 1 && keys[0]!.id === a.id;
    if (last && !cfg.totp.enrolNetworks.contains(a.ip)) {
      rt.audit.record({ ip: a.ip, user: a.user, app: a.app, event: 'network_denied', outcome: 'denied', reason: 'removal of the last second factor outside enrol networks' });
      return 'last';
    }
    return (await removePasskey(rt, { ...a, by: 'by the user' })) ? 'ok' : 'gone';
  } finally {
    await rt.stores.rates.releaseSlot(slot).catch(() => undefined);
  }
}

/** Remove one of the user's passkeys (the caller checked who may). */
export async function removePasskey(rt: Pick<Runtime, 'audit' | 'stores'>, a: { user: string; id: string; ip: string; app?: string | undefined; by: string }): Promise<boolean> {
  const ok = await rt.stores.state.removePasskey(a.user, a.id);
  if (ok) rt.audit.record({ event: 'passkey_removed', ip: a.ip, user: a.user, app: a.app, outcome: 'success', reason: a.by });
  return ok;
}

/** A short reason from the library's error, for the audit (never key material). */
function errorReason(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.replace(/\s+/g, ' ').slice(0, 200);
}
