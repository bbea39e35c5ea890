/**
 * App passwords over HTTP Basic, for clients that cannot do TOTP (ActiveSync, CalDAV). They are
 * random 160-bit secrets, so they are stored as keyed HMAC-SHA256 (like API tokens) rather than
 * argon2: verification is cheap enough for a client that sends them on every request, and a
 * stolen store still does not reveal them. The gate has decided the rule before we get here; the
 * check itself is the one every sign-in path uses (src/auth/credential.ts): admission, an atomic
 * reservation in the login throttle, verification, record, audit.
 */
import type { CompiledApp, CompiledConfig } from '../config/types.js';
import type { Runtime } from '../runtime.js';
import type { UserRecord } from '../auth/users.js';
import { APP_PASSWORD_PURPOSE, checkCredential } from '../auth/credential.js';
import type { GateRequest, GateResult } from './types.js';

export { APP_PASSWORD_PURPOSE };

export type BasicResult = { kind: 'ok'; user: UserRecord } | { kind: 'fail'; result: GateResult };

export function parseBasic(header: string): { user: string; pass: string } | null {
  const m = /^basic\s+([A-Za-z0-9+/=]{1,1024})\s*$/i.exec(header);
  if (!m) return null;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon <= 0) return null;
  return { user: text.slice(0, colon), pass: text.slice(colon + 1) };
}

export async function checkBasicAuth(rt: Pick<Runtime, 'attack' | 'audit' | 'box' | 'clock' | 'directory' | 'hashBudget' | 'hasher' | 'lockdown' | 'random' | 'stores' | 'throttle' | 'users'>, cfg: CompiledConfig, req: GateRequest, app: CompiledApp): Promise<BasicResult> {
  const creds = parseBasic(req.authorization ?? '');
  const challenge: BasicResult = { kind: 'fail', result: { kind: 'signin', app, basic: true, rd: req.target } };
  if (!creds) return challenge;
  const r = await checkCredential(rt, cfg, { app, ip: req.ip, username: creds.user, secret: creds.pass, via: 'basic' });
  switch (r.kind) {
    case 'ok':
      await r.accept();
      return { kind: 'ok', user: r.user };
    case 'throttled':
      return { kind: 'fail', result: { kind: 'error', code: 'PC_THROTTLED', app, reason: 'throttled' } };
    case 'busy':
      return { kind: 'fail', result: { kind: 'error', code: 'PC_BUSY', app, reason: 'busy' } };
    case 'network':
      return { kind: 'fail', result: { kind: 'error', code: 'PC_NETWORK_DENIED', app, reason: 'no sign-in from this network' } };
    case 'fail':
      return challenge;
  }
}
