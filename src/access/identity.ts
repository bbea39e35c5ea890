import type { CompiledApp } from '../config/types.js';
import type { Runtime } from '../runtime.js';
import type { UserRecord } from '../auth/users.js';
import type { Identity, IdentityHeaders, PreparedIdentity } from './types.js';
import { reusableUntil } from '../auth/assertion.js';

/**
 * Header values must not carry CR/LF or other controls; user data is sanitised defensively. Text
 * outside Latin-1 (a display name in Greek) is sent as its UTF-8 bytes, as nginx would.
 */
export function safe(v: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = v.replace(/[\u0000-\u001f\u007f]/g, '');
  // eslint-disable-next-line no-control-regex
  return /^[\u0000-\u007f]*$/.test(clean) ? clean : Buffer.from(clean, 'utf8').toString('latin1');
}

/**
 * The identity header values of a user, sanitised once per user record (a reload makes new
 * records, so a changed name or group list is never served from here).
 */
const prepared = new WeakMap<UserRecord, PreparedIdentity>();

export function preparedIdentity(u: UserRecord): PreparedIdentity {
  let p = prepared.get(u);
  if (!p) {
    p = { user: safe(u.name), groups: safe(u.groups.join(',')), email: u.email ? safe(u.email) : '', name: u.displayName ? safe(u.displayName) : '' };
    prepared.set(u, p);
  }
  return p;
}

/**
 * The last identity headers made for a session (by its id hash), with the record, app, client
 * address and user they were made for and the window in which their assertion may be reused: a
 * signed-in user's next request on the same app from the same address gets the same (frozen)
 * object without building the cache key. A new record (touch, step-up, rotation) or a new user
 * or app record (reload) misses. At most IDENTITIES_REMEMBERED sessions, forgotten all at once
 * when full (the assertion cache below still answers), so the table is bounded as that cache is.
 */
interface LastIdentity {
  rec: object;
  app: CompiledApp;
  ip: string;
  user: UserRecord;
  from: number;
  until: number;
  headers: IdentityHeaders;
}
export const IDENTITIES_REMEMBERED = 10_000;
const lastBySession = new Map<string, LastIdentity>();

/** How many sessions' identity headers are remembered now (tests). */
export function rememberedIdentities(): number {
  return lastBySession.size;
}

/**
 * Identity headers for the app, with the signed assertion reused from the cache: signing costs
 * ~100 µs, so a token is signed at most once per session, app and client address per minute.
 * An app with `assertion: false` gets no assertion (null), and nothing is signed for it.
 */
export function identityHeaders(rt: Pick<Runtime, 'assertions' | 'clock' | 'signer'>, app: CompiledApp, id: Identity, ip: string): IdentityHeaders | Promise<IdentityHeaders> {
  const u = id.user;
  const values = preparedIdentity(u);
  if (app.assertion === false) return { prepared: values, assertion: null };
  const now = rt.clock.now();
  const session = id.session;
  if (session) {
    const last = lastBySession.get(session.idHash);
    if (last && last.rec === session.rec && last.app === app && last.ip === ip && last.user === u && now >= last.from && now < last.until) return last.headers;
  }
  // every input of the claims: a reload that changes the user's groups, e-mail or name must not
  // leave the old ones in a reused token (the rules already see the new ones)
  // joined with newlines: no part can hold one (safe() strips control characters from the
  // prepared values; ids, names, addresses and factors never have them), so no two differ in key
  const key = `${session ? session.idHash : `basic:${u.name}`}\n${app.name}\n${ip}\n${id.amr.join(',')}\n${values.groups}\n${values.email}\n${values.name}`;
  const cached = rt.assertions.entry(key, now);
  // the common case, a cached token, stays synchronous (no promise on the hot path)
  if (cached) return remember(session, app, ip, u, cached.from, cached.until, { prepared: values, assertion: cached.token });
  return signFresh(rt, app, id, ip, key, now, values);
}

function remember(session: Identity['session'], app: CompiledApp, ip: string, user: UserRecord, from: number, until: number, headers: IdentityHeaders): IdentityHeaders {
  Object.freeze(headers);
  if (session) {
    if (lastBySession.size >= IDENTITIES_REMEMBERED && !lastBySession.has(session.idHash)) lastBySession.clear();
    lastBySession.set(session.idHash, { rec: session.rec, app, ip, user, from, until, headers });
  }
  return headers;
}

async function signFresh(rt: Pick<Runtime, 'assertions' | 'signer'>, app: CompiledApp, id: Identity, ip: string, key: string, now: number, values: PreparedIdentity): Promise<IdentityHeaders> {
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
  return remember(id.session, app, ip, u, now, reusableUntil(now, signed.exp), { prepared: values, assertion: signed.token });
}
