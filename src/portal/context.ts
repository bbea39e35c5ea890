/**
 * What every portal page and step shares: the request's context (`Ctx`: config, client, the app
 * whose rules admit it), the cookie options, the session lookup, admission, the CSRF and Origin
 * checks, and the ways to answer (a page, an error page, a redirect to the next step). Built once
 * per portal by `portalContext`.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { appForHost, stepLocation } from '../access/gate.js';
import { signInAllowed } from '../auth/login.js';
import type { CompiledApp, CompiledConfig } from '../config/types.js';
import { ERRORS } from '../errors.js';
import { errorPage, PAGE_HEADERS } from '../http/html.js';
import { clientInfo, readSessionCookie, sessionScopeOf, type ClientInfo } from '../http/request-context.js';
import { resolveClient } from '../net/client-ip.js';
import { peerAddress } from '../net/listener.js';
import { signInAdmits } from '../policy/admission.js';
import type { Runtime } from '../runtime.js';
import type { OpenSession } from '../session/sessions.js';
import { sameSecret } from '../util/constant-time.js';
import { formExpiredPage } from './pages.js';
import { appOfRd, domainCsp, portalHostApp, toPortal } from './portal-host.js';
import { safeRedirect } from './redirect.js';
import { formOf, type Form } from '../util/form.js';
import { knownUser, lookupUser } from '../directory/source.js';

export const GENERIC_CODE_ERROR = 'That code is not valid. Try the next one your app shows.';

export type { Form };
export { formOf };

export interface Ctx {
  cfg: CompiledConfig;
  info: ClientInfo;
  /**
   * The app whose rules admit this client: the host's own; on the `session.portal` host (no
   * app's), the app of `rd` (the request's, else the session's), or the first app.
   */
  app: CompiledApp;
  /** On the portal host, whether the request named its own `rd` (else the session's decides). */
  portalRd: 'given' | 'none' | null;
}

export interface CookieOpts {
  path: string;
  httpOnly: boolean;
  secure: boolean;
  sameSite: 'lax';
  maxAge?: number;
  domain?: string;
}

export interface PortalContext {
  rt: Runtime;
  send(reply: FastifyReply, status: number, body: string, extra?: Record<string, string>): FastifyReply;
  /** An error page with this status (and the message, when given). */
  fail(reply: FastifyReply, status: number, message?: string, extra?: Record<string, string>): FastifyReply;
  /** Host -> app (on the portal host: rd -> app), or a 421 already sent. */
  ctx(req: FastifyRequest, reply: FastifyReply): Ctx | null;
  /** The name of the double-submit cookie that guards the login form. */
  csrfCookie(c: Ctx): string;
  cookieOpts(c: Ctx, maxAgeSec?: number): CookieOpts;
  /** The session cookie's attributes: the above, and `Domain=<session.domain>` where it covers this host. */
  sessionCookieOpts(c: Ctx): CookieOpts;
  /** A refused form: audited and logged with its reason; the page says what to do. */
  csrfRefused(reply: FastifyReply, c: Ctx, reason: string, user?: string): FastifyReply;
  /** The form's token and the Origin: null when both are right, else the reason. */
  csrfProblem(req: FastifyRequest, c: Ctx, token: string | undefined, expected: string | undefined): string | null;
  /** The live session, unless its user has since been removed or disabled (then it ends here). */
  session(req: FastifyRequest, c: Ctx): Promise<OpenSession | null>;
  setSession(reply: FastifyReply, c: Ctx, s: OpenSession): void;
  rdOf(c: Ctx, raw: string | undefined): string | null;
  storeDown(reply: FastifyReply): FastifyReply;
  /** Where a finished step leads: the pending next step, or the target. */
  afterStep(s: OpenSession): string;
  /** Whether this client may be on a sign-in page here; else a 403 already sent (and audited). */
  admitted(reply: FastifyReply, c: Ctx, user?: string): boolean;
  /** Whether a signed-in session's factors fall short of every rule that admits it from here. */
  shortOfFactors(c: Ctx, s: OpenSession): boolean;
  /** 303 to the second factor, coming back to `page`. */
  stepUpTo(reply: FastifyReply, c: Ctx, s: OpenSession, page: string): FastifyReply;
  /** The app and the (possibly half-signed-in) session, or null with a response already sent. */
  signedIn(req: FastifyRequest, reply: FastifyReply): Promise<{ c: Ctx; s: OpenSession } | null>;
  /** A POST within a session: the form parsed, its CSRF token and the Origin checked. */
  sessionForm(req: FastifyRequest, reply: FastifyReply): Promise<{ c: Ctx; s: OpenSession; f: Form } | null>;
}

export function portalContext(rt: Runtime): PortalContext {
  const send = (reply: FastifyReply, status: number, body: string, extra: Record<string, string> = {}) =>
    reply.code(status).headers({ ...PAGE_HEADERS, ...domainCsp(rt.config), ...extra }).send(body);

  const fail = (reply: FastifyReply, status: number, message?: string, extra: Record<string, string> = {}) =>
    send(reply, status, errorPage(status, message), extra);

  /** Host -> app (on the portal host: rd -> app), or a 421 already sent. */
  function ctx(req: FastifyRequest, reply: FastifyReply): Ctx | null {
    const cfg = rt.config;
    const info = clientInfo(req.raw, cfg);
    const own = appForHost(cfg, req.headers.host);
    if (own) return { cfg, info, app: own, portalRd: null };
    const portal = portalHostApp(cfg, req);
    if (portal) return { cfg, info, app: portal.app, portalRd: portal.portalRd };
    void fail(reply, 421);
    return null;
  }

  const csrfCookie = (c: Ctx) => (c.info.proto === 'https' ? '__Host-portcullis-csrf' : 'portcullis_dev_csrf');
  const cookieOpts = (c: Ctx, maxAgeSec?: number) => ({
    path: '/',
    httpOnly: true,
    secure: c.info.proto === 'https',
    sameSite: 'lax' as const,
    ...(maxAgeSec !== undefined ? { maxAge: maxAgeSec } : {}),
  });
  /** The session cookie's attributes: the above, and `Domain=<session.domain>` where it covers this host. */
  const sessionCookieOpts = (c: Ctx) => ({ ...cookieOpts(c), ...(c.info.cookieDomain ? { domain: c.info.cookieDomain } : {}) });

  /**
   * The origins this page is served under, as the browser sees them: behind a trusted proxy on
   * a non-default port the Host header may lack the port (`proxy_set_header Host $host`), so the
   * proxy's X-Forwarded-Host / -Proto / -Port (or Forwarded) are believed, from it alone.
   */
  function ownOrigins(req: FastifyRequest, c: Ctx): Set<string> {
    const out = new Set<string>();
    const add = (proto: string, hostport: string) => {
      if (!hostport) return;
      try {
        out.add(new URL(`${proto}://${hostport}`).origin);
      } catch {
        // not a host
      }
    };
    const hostHeader = String(req.headers.host ?? '');
    add(c.info.proto, hostHeader);
    const peer = peerAddress(req.raw.socket);
    if (c.cfg.trustedProxies.contains(peer)) {
      const fwd = resolveClient(peer, req.headers, c.cfg.trustedProxies, c.info.proto);
      const external = fwd.host ?? hostHeader;
      add(c.info.proto, external);
      const port = req.headers['x-forwarded-port'];
      if (typeof port === 'string' && /^\d{1,5}$/.test(port.trim())) add(c.info.proto, `${external.replace(/:\d+$/, '')}:${port.trim()}`);
    }
    return out;
  }

  /** null when the Origin (if sent) is this page's own; else why not. */
  function originProblem(req: FastifyRequest, c: Ctx): string | null {
    const origin = req.headers.origin;
    if (origin === undefined) return null;
    if (origin === 'null') return 'Origin: null';
    let o: string;
    try {
      o = new URL(origin).origin;
    } catch {
      return 'malformed Origin';
    }
    const own = ownOrigins(req, c);
    return own.has(o) ? null : `Origin ${o.slice(0, 200)} is not ${[...own].join(' or ')}`;
  }

  /** A refused form: audited and logged with its reason; the page says what to do. */
  function csrfRefused(reply: FastifyReply, c: Ctx, reason: string, user?: string): FastifyReply {
    rt.audit.record({ event: 'csrf_refused', ip: c.info.ip, user, app: c.app.name, outcome: 'denied', reason });
    rt.logger.warn({ ip: c.info.ip, app: c.app.name, reason }, 'form refused (CSRF check)');
    return send(reply, 403, formExpiredPage({ loginUrl: '/.portcullis/login' }));
  }

  /** The form's token and the Origin: null when both are right, else the reason. */
  function csrfProblem(req: FastifyRequest, c: Ctx, token: string | undefined, expected: string | undefined): string | null {
    const o = originProblem(req, c);
    if (o) return o;
    if (!sameSecret(token, expected)) return token ? 'form token does not match' : 'form token missing';
    return null;
  }

  /** The live session, unless its user has since been removed or disabled (then it ends here). */
  async function session(req: FastifyRequest, c: Ctx): Promise<OpenSession | null> {
    const s = await rt.sessions.lookup(readSessionCookie(req.headers.cookie, c.info.cookieName), sessionScopeOf(c.info));
    if (!s) return null;
    // on the portal host, a page that names no rd is judged for the app the sign-in is for
    if (c.portalRd === 'none' && s.rec.rd) c.app = appOfRd(c.cfg, s.rec.rd);
    const u = await lookupUser(rt, s.rec.user);
    if (u && !u.disabled) return s;
    await rt.sessions.destroy(s);
    return null;
  }

  function setSession(reply: FastifyReply, c: Ctx, s: OpenSession): void {
    reply.setCookie(c.info.cookieName, s.id, sessionCookieOpts(c));
  }

  function rdOf(c: Ctx, raw: string | undefined): string | null {
    return safeRedirect(raw, c.cfg);
  }

  function storeDown(reply: FastifyReply): FastifyReply {
    return fail(reply, 503, ERRORS.PC_STORE_UNAVAILABLE.message, { 'retry-after': '5' });
  }

  /** Where a finished step leads: the pending next step, or the target. */
  function afterStep(s: OpenSession): string {
    if (s.rec.pending !== 'none') return stepLocation(s.rec.pending);
    return s.rec.rd ?? '/';
  }

  /**
   * Every portal page past the login form is a sign-in step, so it is admitted exactly as the
   * login form is: from the client's network alone (and lockdown). A session obtained elsewhere
   * (or before lockdown) is no way in from a network where no one may sign in.
   */
  function admitted(reply: FastifyReply, c: Ctx, user?: string): boolean {
    if (signInAllowed(rt, c.cfg, c.app, c.info.ip)) return true;
    rt.audit.record({ event: 'network_denied', ip: c.info.ip, user, app: c.app.name, outcome: 'denied', reason: 'sign-in page from a network no sign-in rule admits' });
    void fail(reply, 403, ERRORS.PC_NETWORK_DENIED.message);
    return false;
  }

  /**
   * Whether a signed-in session's factors fall short of every rule that admits it from here
   * (a password-only session on a network where only `mfa` rules apply): such a session is
   * stepped up before it sees the account page, changes the password or ends other sessions.
   */
  function shortOfFactors(c: Ctx, s: OpenSession): boolean {
    const user = knownUser(rt, s.rec.user);
    return !signInAdmits(c.app, { ip: c.info.ip, groups: user?.groups ?? [], factors: s.rec.amr });
  }

  /**
   * Step a session up to the factor a rule here asks for: a code (or passkey) where an `mfa`
   * rule would admit it, else a passkey (only `passkey` rules admit it from here). Sending a
   * TOTP session to the code page where only `passkey` rules apply would bounce it straight back.
   */
  const stepUpTo = (reply: FastifyReply, c: Ctx, s: OpenSession, page: string) => {
    const user = knownUser(rt, s.rec.user);
    const withCode = signInAdmits(c.app, { ip: c.info.ip, groups: user?.groups ?? [], factors: ['pwd', 'otp'] });
    return reply.code(303).header('location', `/.portcullis/${withCode ? 'mfa' : 'passkey'}?rd=${encodeURIComponent(page)}`).send();
  };

  /** The app and the (possibly half-signed-in) session, or null with a response already sent. */
  async function signedIn(req: FastifyRequest, reply: FastifyReply): Promise<{ c: Ctx; s: OpenSession } | null> {
    const c = ctx(req, reply);
    if (!c) return null;
    if (req.method === 'GET' && toPortal(req, reply, c)) return null;
    const s = await session(req, c);
    if (!s) {
      void reply.redirect('/.portcullis/login', 303);
      return null;
    }
    if (!admitted(reply, c, s.rec.user)) return null;
    return { c, s };
  }

  /** A POST within a session: the form parsed, its CSRF token and the Origin checked. */
  async function sessionForm(req: FastifyRequest, reply: FastifyReply): Promise<{ c: Ctx; s: OpenSession; f: Form } | null> {
    const g = await signedIn(req, reply);
    if (!g) return null;
    const f = formOf(req.body);
    if (!f) {
      void fail(reply, 400);
      return null;
    }
    const bad = csrfProblem(req, g.c, f.csrf, g.s.rec.csrf);
    if (bad) {
      void csrfRefused(reply, g.c, bad, g.s.rec.user);
      return null;
    }
    return { ...g, f };
  }

  return {
    rt,
    send,
    fail,
    ctx,
    csrfCookie,
    cookieOpts,
    sessionCookieOpts,
    csrfRefused,
    csrfProblem,
    session,
    setSession,
    rdOf,
    storeDown,
    afterStep,
    admitted,
    shortOfFactors,
    stepUpTo,
    signedIn,
    sessionForm,
  };
}
