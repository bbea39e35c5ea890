/**
 * Passwordless sign-in with a passkey alone (`webauthn.passwordless: true`): the WebAuthn half.
 * Admission, the throttle reservation, the record and the audit are the one credential check
 * (`checkPasskey` in src/auth/credential.ts); this module only issues and checks the ceremony.
 *
 * - No session exists yet, so the challenge is bound to a **pre-session**: a random id in a
 *   short-lived httpOnly cookie. The challenge itself carries its issue time and a keyed MAC over
 *   (pre-session, nonce, time): an answer to a challenge issued to another pre-session, or older
 *   than 5 minutes, fails the MAC or the clock before any signature is looked at. Nothing is
 *   stored per GET, so fetching options cannot fill the store.
 * - Single use: the first answer claims the challenge in the rate store (atomic across requests
 *   and instances); a replayed assertion finds it claimed.
 * - The credential is discoverable: the options name no credential (the authenticator offers the
 *   user's resident passkeys), and the answer must carry the user handle portcullis gave that
 *   user at registration (a non-discoverable credential returns none).
 * - User verification is required (`requireUserVerification: true`, options ask `required`): the
 *   passkey alone is then two factors (the device and its PIN or biometric).
 * - Origin and RP ID from `webauthn:`; the signature counter checked as for the second factor.
 */
import { timingSafeEqual } from 'node:crypto';
import {
  generateAuthenticationOptions,
  verifyAuthenticationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialRequestOptionsJSON,
} from '@simplewebauthn/server';
import type { CompiledConfig } from '../config/types.js';
import type { Runtime } from '../runtime.js';
import { sameSecret } from '../util/constant-time.js';

/** How long a pre-session (and its challenges) stays good. */
export const PRE_SESSION_MS = 5 * 60_000;
const NONCE = 16;
const MAC = 16;

/** A stable, opaque user handle for the authenticator: no user name inside. */
export function userHandle(rt: Pick<Runtime, 'box'>, user: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(rt.box.hmac('webauthn-user-handle', user), 'base64url').subarray(0, 32));
}

/** The key a pre-session cookie's value stands for (the value itself is never stored or logged). */
export function preSessionKey(rt: Pick<Runtime, 'box'>, cookieValue: string): string {
  return rt.box.hmac('passwordless-pre-session', cookieValue);
}

function mac(rt: Pick<Runtime, 'box'>, preKey: string, body: Buffer): Buffer {
  return Buffer.from(rt.box.hmac('passwordless-challenge', `${preKey}.${body.toString('base64url')}`), 'base64url').subarray(0, MAC);
}

/** Options for navigator.credentials.get() with no credential named: discoverable, UV required. */
export async function passwordlessOptions(rt: Pick<Runtime, 'box' | 'clock' | 'random'>, cfg: CompiledConfig, preKey: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const wa = cfg.webauthn;
  if (!wa) throw new Error('webauthn is not configured');
  const time = Buffer.alloc(8);
  time.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(rt.clock.now()))));
  const body = Buffer.concat([rt.random.bytes(NONCE), time]);
  const challenge = Buffer.concat([body, mac(rt, preKey, body)]);
  return generateAuthenticationOptions({
    rpID: wa.rpId,
    allowCredentials: [],
    challenge: new Uint8Array(challenge),
    timeout: PRE_SESSION_MS,
    userVerification: 'required',
  });
}

/** The credential id an answer names (not yet checked), or ''. */
export function assertionId(response: unknown): string {
  const id = (response as { id?: unknown } | null)?.id;
  return typeof id === 'string' && id.length > 0 && id.length <= 1024 ? id : '';
}

/** Check a challenge's MAC and age against this pre-session; null when good, else why not. */
function challengeProblem(rt: Pick<Runtime, 'box' | 'clock'>, preKey: string, challenge: string): string | null {
  const raw = Buffer.from(challenge, 'base64url');
  if (raw.length !== NONCE + 8 + MAC || raw.toString('base64url') !== challenge) return 'malformed challenge';
  const body = raw.subarray(0, NONCE + 8);
  if (!timingSafeEqual(raw.subarray(NONCE + 8), mac(rt, preKey, body))) return 'challenge issued to another pre-session (or forged)';
  const issued = Number(body.readBigUInt64BE(NONCE));
  const now = rt.clock.now();
  if (issued > now || now - issued >= PRE_SESSION_MS) return 'challenge expired';
  return null;
}

function clientChallenge(response: AuthenticationResponseJSON): string | null {
  try {
    const cd = JSON.parse(Buffer.from(String(response.response?.clientDataJSON ?? ''), 'base64url').toString('utf8')) as { challenge?: unknown };
    return typeof cd.challenge === 'string' ? cd.challenge : null;
  } catch {
    return null;
  }
}

export type PasswordlessCheck = { ok: true } | { ok: false; reason: string };

/**
 * Verify a passwordless assertion for `user` (the owner the store names for its credential id):
 * the challenge bound to this pre-session, fresh and unused; the user handle; the signature with
 * user verification; the counter. The caller holds a throttle reservation.
 */
export async function verifyPasswordless(
  rt: Pick<Runtime, 'box' | 'clock' | 'stores'>,
  cfg: CompiledConfig,
  a: { preKey: string; response: unknown; user: string },
): Promise<PasswordlessCheck> {
  const wa = cfg.webauthn;
  if (!wa) return { ok: false, reason: 'webauthn is not configured' };
  const fail = (reason: string): PasswordlessCheck => ({ ok: false, reason });
  const response = a.response as AuthenticationResponseJSON;
  const id = assertionId(response);
  const challenge = response && typeof response === 'object' ? clientChallenge(response) : null;
  if (!challenge) return fail('no challenge in the answer');
  const bad = challengeProblem(rt, a.preKey, challenge);
  if (bad) return fail(bad);
  // the first answer to a challenge consumes it, whatever its fate
  if (!(await rt.stores.rates.claim(`passwordless-challenge:${challenge}`, PRE_SESSION_MS, rt.clock.now()))) return fail('challenge already used (replayed assertion)');
  const stored = (await rt.stores.state.listPasskeys(a.user)).find((p) => p.id === id);
  if (!stored) return fail('not one of the user\'s passkeys');
  const handle = typeof response.response?.userHandle === 'string' ? response.response.userHandle : '';
  if (!handle) return fail('no user handle: not a discoverable credential');
  if (!sameSecret(handle, Buffer.from(userHandle(rt, a.user)).toString('base64url'))) return fail('user handle does not match the credential\'s owner');
  let publicKey: Uint8Array<ArrayBuffer>;
  try {
    publicKey = new Uint8Array(Buffer.from(rt.box.open(stored.publicKey, `passkey:${a.user}:${stored.id}`), 'base64url'));
  } catch {
    return fail('stored credential is not authentic');
  }
  let newCounter: number;
  try {
    const v = await verifyAuthenticationResponse({
      response,
      expectedChallenge: challenge,
      expectedOrigin: [...wa.origins],
      expectedRPID: wa.rpId,
      credential: { id: stored.id, publicKey, counter: stored.counter, transports: stored.transports as never },
      requireUserVerification: true,
    });
    if (!v.verified) return fail('signature not verified');
    newCounter = v.authenticationInfo.newCounter;
  } catch (e) {
    const m = (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ').slice(0, 200);
    if (/counter/i.test(m)) return fail(`cloned authenticator suspected: the signature counter did not move forward (credential ${stored.id.slice(0, 16)})`);
    return fail(m);
  }
  const used = await rt.stores.state.usePasskey(a.user, stored.id, newCounter, rt.clock.now());
  if (used === 'cloned') return fail(`cloned authenticator suspected: the signature counter did not move forward (credential ${stored.id.slice(0, 16)})`);
  if (used === 'gone') return fail('the passkey was removed meanwhile');
  return { ok: true };
}

/** A keyed fingerprint of one answer, for the throttle (each distinct answer counts once). */
export function assertionFingerprint(rt: Pick<Runtime, 'box'>, response: unknown): string {
  let s = '';
  try {
    s = JSON.stringify(response) ?? '';
  } catch {
    s = '';
  }
  return rt.box.hmac('passwordless-assertion', s.slice(0, 16_000));
}
