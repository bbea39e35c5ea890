/**
 * The access decision for one request, independent of any HTTP framework. The proxy handler, the
 * WebSocket upgrade handler and the forward-auth endpoints all come through here, so the three
 * can never disagree.
 */
import { hostUnderDomain, type CompiledApp, type CompiledConfig } from '../config/types.js';
import type { AuditEventName } from '../audit/events.js';
import { normaliseRequestTarget } from '../net/path.js';
import { decide, type Decision, type Subject } from '../policy/decide.js';
import { factorsMeet, lockdownRefuses } from '../policy/admission.js';
import type { Runtime } from '../runtime.js';
import type { UserRecord } from '../auth/users.js';
import { checkBasicAuth } from './basic-auth.js';
import type { GateRequest, GateResult, Identity } from './types.js';
import { lookupUserNow } from '../directory/source.js';
import type { OpenSession } from '../session/sessions.js';
import { isPortcullisError } from '../errors.js';

export type { GateRequest, GateResult, Identity } from './types.js';

const REFUSED_METHODS = new Set(['CONNECT', 'TRACE']);

/** Lower-case host without port; null if the header is unusable. */
export function hostOnly(host: string | undefined): string | null {
  if (!host || host.length > 255) return null;
  let h = host.toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end < 0) return null;
    const rest = h.slice(end + 1);
    if (rest && !/^:\d{1,5}$/.test(rest)) return null;
    return h.slice(1, end);
  }
  const colon = h.indexOf(':');
  if (colon >= 0) {
    if (!/^\d{1,5}$/.test(h.slice(colon + 1))) return null;
    h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

export function appForHost(cfg: CompiledConfig, host: string | undefined): CompiledApp | null {
  const h = hostOnly(host);
  return h === null ? null : cfg.appsByHost.get(h) ?? null;
}

export function lockedOut(rt: Pick<Runtime, 'lockdown'>, cfg: CompiledConfig, ip: string): boolean {
  return lockdownRefuses(rt.lockdown, cfg, ip);
}

export function subjectOf(u: UserRecord): Subject {
  return { name: u.name, groups: u.groups };
}

function audit(rt: Pick<Runtime, 'audit'>, event: AuditEventName, req: GateRequest, app: CompiledApp | null, reason: string, user?: string): void {
  rt.audit.record({ event, ip: req.ip, app: app?.name, user, outcome: 'denied', reason, ...(req.requestId ? { request_id: req.requestId } : {}) });
}

type GateDeps = Pick<Runtime, 'attack' | 'audit' | 'box' | 'clock' | 'directory' | 'hashBudget' | 'hasher' | 'lockdown' | 'random' | 'sessions' | 'stores' | 'throttle' | 'users'>;

/**
 * The decision for one request. Answered at once (no promise) when nothing has to wait: a
 * signed-in request whose session is cached here or held by the memory store, of a users-file
 * user, which is every request of the hot path; a promise when the session, the directory or an
 * app password has to be asked. Either way the same steps, in the same order.
 */
export function gate(rt: GateDeps, cfg: CompiledConfig, req: GateRequest): GateResult | Promise<GateResult> {
  if (REFUSED_METHODS.has(req.method)) return { kind: 'error', code: 'PC_METHOD_REFUSED', app: null, reason: `method ${req.method}` };
  const app = appForHost(cfg, req.host);
  if (!app) return { kind: 'error', code: 'PC_HOST_UNKNOWN', app: null, reason: 'unknown host' };
  const p = normaliseRequestTarget(req.target, { windows: app.caseInsensitivePaths });
  if (!p.ok) return { kind: 'error', code: 'PC_PATH_UNSAFE', app, reason: p.reason };
  if (p.path.startsWith('/.portcullis/') || p.path === '/.portcullis') {
    return { kind: 'error', code: 'PC_NOT_FOUND', app, reason: 'reserved path' };
  }
  if (lockedOut(rt, cfg, req.ip)) {
    audit(rt, 'network_denied', req, app, 'lockdown');
    return { kind: 'error', code: 'PC_LOCKDOWN', app, reason: 'lockdown' };
  }

  const anon = decide(app, { method: req.method, path: p.path, ip: req.ip, subject: null });
  if (anon.policy === 'bypass') return { kind: 'proxy', app, rawTarget: req.target, identity: null, decision: anon };
  if (anon.policy === 'deny') return denied(rt, req, app, anon);

  // password or mfa (or a groups rule that needs to know the user): find out who this is
  const asked: Asked = { cfg, req, app, path: p.path, anon, basic: app.basicAuthPaths.length > 0 && app.basicAuthPaths.some((m) => m.test(p.path)) };
  if (asked.basic && req.authorization && /^basic /i.test(req.authorization)) {
    return checkBasicAuth(rt, cfg, req, app).then((r) => (r.kind !== 'ok' ? r.result : admit(rt, asked, { user: r.user, amr: ['pwd'], session: null })));
  }
  const s = rt.sessions.lookupNow(req.sessionId, req.sessionScope);
  return s instanceof Promise ? s.then((x) => withSession(rt, asked, x)) : withSession(rt, asked, s);
}

/** What `gate` has worked out before it knows who is asking. */
interface Asked {
  cfg: CompiledConfig;
  req: GateRequest;
  app: CompiledApp;
  /** The normalised path. */
  path: string;
  /** The decision for nobody in particular. */
  anon: Decision;
  /** Whether Basic (app passwords) is accepted on this path. */
  basic: boolean;
}

/** The session's user: the users file, else the directory (see `lookupUserNow`). */
function withSession(rt: GateDeps, a: Asked, s: OpenSession | null): GateResult | Promise<GateResult> {
  if (!s) return admit(rt, a, null);
  // the users file, else the directory (its record at most `ldap.cache` old; while it is
  // unreachable an established session keeps the last record it had)
  const user = lookupUserNow(rt, s.rec.user);
  if (!(user instanceof Promise)) return withUser(rt, a, s, user);
  return user.then(
    (u) => withUser(rt, a, s, u),
    (e: unknown) => {
      // a directory user never seen by this process while the directory is down: fail closed
      if (isPortcullisError(e, 'PC_DIRECTORY_UNAVAILABLE')) return { kind: 'error', code: 'PC_DIRECTORY_UNAVAILABLE', app: a.app, reason: 'directory unavailable' } as const;
      throw e;
    },
  );
}

function withUser(rt: GateDeps, a: Asked, s: OpenSession, user: UserRecord | undefined): GateResult | Promise<GateResult> {
  if (!user || user.disabled) return rt.sessions.destroy(s).then(() => admit(rt, a, null));
  if (s.rec.pending !== 'none') {
    return { kind: 'step', app: a.app, location: `${portalFor(a.cfg, a.req.host, a.req.proto) ?? ''}${stepLocation(s.rec.pending)}`, decision: a.anon };
  }
  return admit(rt, a, { user, amr: s.rec.amr, session: s });
}

/** The rules again with the user known: proxy, step up, or refuse. */
function admit(rt: Pick<Runtime, 'audit'>, a: Asked, identity: Identity | null): GateResult {
  const { cfg, req, app, anon } = a;
  if (!identity) return { kind: 'signin', app, basic: a.basic, rd: req.target, decision: anon };

  const d = anon.needsSubject
    ? decide(app, { method: req.method, path: a.path, ip: req.ip, subject: subjectOf(identity.user) })
    : anon;
  if (d.policy === 'deny') return denied(rt, req, app, d, identity.user.name);
  if ((d.policy === 'mfa' || d.policy === 'passkey') && !factorsMeet(d.policy, identity.amr)) {
    if (!identity.session) {
      // app passwords are a single factor; an mfa or passkey rule cannot be met over Basic
      audit(rt, 'access_denied', req, app, `${d.reason}; app passwords cannot satisfy ${d.policy}`, identity.user.name);
      return { kind: 'error', code: 'PC_ACCESS_DENIED', app, reason: `${d.policy} required`, decision: d };
    }
    const portal = portalFor(cfg, req.host, req.proto);
    const here = portal ? `${req.proto}://${req.host}${req.target}` : req.target;
    // a `passkey` rule: a TOTP session is stepped up to the passkey, not asked for another code
    const page = d.policy === 'passkey' ? '/.portcullis/passkey' : '/.portcullis/mfa';
    return { kind: 'step', app, location: `${portal ?? ''}${page}?rd=${encodeURIComponent(here)}`, decision: d };
  }
  return { kind: 'proxy', app, rawTarget: req.target, identity, decision: d };
}

function denied(rt: Pick<Runtime, 'audit'>, req: GateRequest, app: CompiledApp, d: Decision, user?: string): GateResult {
  if (d.networkDenied) {
    audit(rt, 'network_denied', req, app, d.reason, user);
    return { kind: 'error', code: 'PC_NETWORK_DENIED', app, reason: d.reason, decision: d };
  }
  audit(rt, 'access_denied', req, app, d.reason, user);
  return { kind: 'error', code: 'PC_ACCESS_DENIED', app, reason: d.reason, decision: d };
}

/**
 * The portal's origin when `host` signs in there (`session.domain` covers it, over https), else
 * null: its sign-in pages are its own.
 */
export function portalFor(cfg: CompiledConfig, host: string | undefined, proto: 'http' | 'https'): string | null {
  const p = cfg.session.portal;
  if (!p || proto !== 'https' || cfg.session.domain === null) return null;
  const h = hostOnly(host);
  return h !== null && hostUnderDomain(h, cfg.session.domain) ? p.origin : null;
}

/**
 * Where a browser signs in to reach `target` on `host`: the portal with an absolute `rd` when
 * `session.domain` covers the host; else this host's own login page, `rd` absolute only when
 * `absolute` (forward-auth, where the page is reached through another proxy).
 */
export function loginLocation(cfg: CompiledConfig, o: { proto: 'http' | 'https'; host: string; target: string }, absolute: boolean): string {
  const portal = portalFor(cfg, o.host, o.proto);
  const here = `${o.proto}://${o.host}${o.target}`;
  if (portal) return `${portal}/.portcullis/login?rd=${encodeURIComponent(here)}`;
  if (absolute) return `${o.proto}://${o.host}/.portcullis/login?rd=${encodeURIComponent(here)}`;
  return `/.portcullis/login?rd=${encodeURIComponent(o.target)}`;
}

export function stepLocation(pending: 'mfa' | 'enrol' | 'password' | 'none'): string {
  switch (pending) {
    case 'mfa':
      return '/.portcullis/mfa';
    case 'enrol':
      return '/.portcullis/enrol';
    case 'password':
      return '/.portcullis/password';
    default:
      return '/';
  }
}
