import type { CompiledApp } from '../config/types.js';
import type { Runtime } from '../runtime.js';
import type { Identity, IdentityHeaders } from './types.js';

/**
 * Identity headers for the app, with the signed assertion reused from the cache: signing costs
 * ~100 µs, so a token is signed at most once per session, app and client address per minute.
 */
export function identityHeaders(rt: Runtime, app: CompiledApp, id: Identity, ip: string): IdentityHeaders | Promise<IdentityHeaders> {
  const u = id.user;
  const key = `${id.session ? id.session.idHash : `basic:${u.name}`}|${app.name}|${ip}|${id.amr.join(',')}`;
  const now = rt.clock.now();
  const token = rt.assertions.get(key, now);
  // the common case, a cached token, stays synchronous (no promise on the hot path)
  if (token) return { user: u.name, groups: u.groups, email: u.email, name: u.displayName, assertion: token };
  return signFresh(rt, app, id, ip, key, now);
}

async function signFresh(rt: Runtime, app: CompiledApp, id: Identity, ip: string, key: string, now: number): Promise<IdentityHeaders> {
  const u = id.user;
  const signed = await rt.signer.sign({
      aud: app.name,
      sub: u.name,
      ...(u.email ? { email: u.email } : {}),
      ...(u.displayName ? { name: u.displayName } : {}),
      groups: [...u.groups],
      amr: [...id.amr],
      ip,
    });
  rt.assertions.set(key, signed.token, signed.exp, now);
  return { user: u.name, groups: u.groups, email: u.email, name: u.displayName, assertion: signed.token };
}
