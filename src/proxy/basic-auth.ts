/**
 * App passwords over HTTP Basic, for clients that cannot do TOTP (ActiveSync, CalDAV). They are
 * random 160-bit secrets, so they are stored as keyed HMAC-SHA256 (like API tokens) rather than
 * argon2: verification is cheap enough for a client that sends them on every request, and a
 * stolen store still does not reveal them. Network rules still apply: the gate has decided the
 * rule before we get here. Failures feed the same throttle as the login form.
 */
import { timingSafeEqual } from 'node:crypto';
import type { CompiledApp, CompiledConfig } from '../config/types.js';
import type { Runtime } from '../runtime.js';
import type { UserRecord } from '../auth/users.js';
import type { GateRequest, GateResult } from './gate.js';
import { networkKeyFor } from '../auth/throttle.js';

export const APP_PASSWORD_PURPOSE = 'app-password';

export type BasicResult = { kind: 'ok'; user: UserRecord } | { kind: 'fail'; result: GateResult };

export function parseBasic(header: string): { user: string; pass: string } | null {
  const m = /^basic\s+([A-Za-z0-9+/=]{1,1024})\s*$/i.exec(header);
  if (!m) return null;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon <= 0) return null;
  return { user: text.slice(0, colon), pass: text.slice(colon + 1) };
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export async function checkBasicAuth(rt: Runtime, cfg: CompiledConfig, req: GateRequest, app: CompiledApp): Promise<BasicResult> {
  const creds = parseBasic(req.authorization ?? '');
  const challenge: BasicResult = { kind: 'fail', result: { kind: 'signin', app, basic: true, rd: req.target } };
  if (!creds) return challenge;
  const name = creds.user;
  const t = await rt.throttle.check({ ip: req.ip, user: name });
  if (!t.allowed) return { kind: 'fail', result: { kind: 'error', code: 'PC_THROTTLED', app, reason: `throttled (${t.kind})` } };
  const digest = rt.box.hmac(APP_PASSWORD_PURPOSE, `${name}\u0000${creds.pass}`);
  const user = rt.users.get(name);
  // the store is asked whether or not the user exists, so a remote store's round trip does not
  // tell a known user name from an unknown one
  const stored = await rt.stores.state.listAppPasswords(name);
  const records = user && !user.disabled ? stored : [];
  let ok = false;
  for (const r of records) if (same(r.hash, digest)) ok = true;
  if (!ok || !user) {
    const familiar = (await rt.stores.state.knownNetworks(name)).includes(networkKeyFor(req.ip, cfg.loginLimits.ipv6Prefix));
    await rt.throttle.recordFailure({ ip: req.ip, user: name, passwordFingerprint: digest, familiar });
    rt.audit.record({ event: 'login_failed', ip: req.ip, user: name, app: app.name, outcome: 'failure', reason: 'app password' });
    return challenge;
  }
  return { kind: 'ok', user };
}
