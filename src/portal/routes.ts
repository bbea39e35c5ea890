/**
 * The sign-in portal under /.portcullis/: login, second factor, enrolment, password change,
 * logout. Thin HTTP glue over src/auth/login.ts. Every POST is CSRF-protected: before sign-in
 * by a double-submit cookie, after it by the session's own token; and the Origin, when sent,
 * must be this host.
 */
import { sameSecret } from '../util/constant-time.js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import QRCode from 'qrcode';
import type { CompiledApp, CompiledConfig } from '../config/types.js';
import { ERRORS } from '../errors.js';
import type { Runtime } from '../runtime.js';
import { clientInfo, readSessionCookie, sessionScopeOf, type ClientInfo } from '../http/request-context.js';
import { appForHost, hostOnly, portalFor, stepLocation } from '../access/gate.js';
import type { OpenSession } from '../session/sessions.js';
import {
  changePassword,
  completeSignIn,
  confirmEnrolment,
  enrolmentDetails,
  firstFactor,
  reauthenticate,
  REAUTH_MS,
  removeTotp,
  secondFactor,
  signInAllowed,
  startEnrolment,
} from '../auth/login.js';
import { CSP, errorPage, PAGE_HEADERS } from '../http/html.js';
import {
  accountPage,
  enrolOfferPage,
  enrolPage,
  formExpiredPage,
  loginPage,
  messagePage,
  mfaPage,
  passwordPage,
  reauthPage,
  recoveryCodesPage,
  removeTotpForm,
  signedOutPage,
} from './pages.js';
import { peerAddress } from '../net/listener.js';
import { signInAdmits } from '../policy/admission.js';
import { resolveClient } from '../net/client-ip.js';
import { safeRedirect } from './redirect.js';

const GENERIC_LOGIN_ERROR = 'Incorrect username or password.';
const GENERIC_CODE_ERROR = 'That code is not valid. Try the next one your app shows.';

type Form = Record<string, string | undefined>;

interface Ctx {
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

/**
 * The posted form, every field a single string; null when a field is repeated (`a=1&a=2` parses
 * to an array) or is not a string, which no form of ours produces: a 400, never a 500 further on.
 */
function formOf(body: unknown): Form | null {
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) return null;
  const out: Form = {};
  for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
    if (typeof v !== 'string') return null;
    out[k] = v;
  }
  return out;
}

const same = sameSecret;

export function portalRoutes(rt: Runtime) {
  return async function (app: FastifyInstance): Promise<void> {
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
      if (cfg.session.portal && hostOnly(req.headers.host) === cfg.session.portal.host && cfg.apps.length > 0) {
        const q = req.query as Form | undefined;
        const body = req.body !== null && typeof req.body === 'object' ? (req.body as Form) : undefined;
        const rd = typeof q?.rd === 'string' ? q.rd : typeof body?.rd === 'string' ? body.rd : undefined;
        return { cfg, info, app: appOfRd(cfg, rd), portalRd: rd !== undefined && rd !== '' ? 'given' : 'none' };
      }
      void fail(reply, 421);
      return null;
    }

    /** The app an absolute `rd` leads to; the first app when it names none. */
    function appOfRd(cfg: CompiledConfig, rd: string | undefined): CompiledApp {
      const safe = safeRedirect(rd, cfg);
      if (safe && !safe.startsWith('/')) {
        const a = cfg.appsByHost.get(new URL(safe).hostname.toLowerCase());
        if (a) return a;
      }
      return cfg.apps[0]!;
    }

    /**
     * Under `session.domain`, the sign-in pages of an app host live on the portal: a GET of one
     * here is sent there (303), `rd` made absolute so it leads back. True when it was sent.
     */
    function toPortal(req: FastifyRequest, reply: FastifyReply, c: Ctx): boolean {
      const portal = portalFor(c.cfg, req.headers.host, c.info.proto);
      if (!portal || c.portalRd !== null || hostOnly(req.headers.host) === c.cfg.session.portal?.host) return false;
      const url = new URL(req.raw.url ?? '/', 'http://portcullis.invalid');
      const rd = url.searchParams.get('rd');
      const safe = rd === null ? null : safeRedirect(rd, c.cfg);
      if (safe === null) url.searchParams.delete('rd');
      else url.searchParams.set('rd', safe.startsWith('/') ? `${c.info.proto}://${String(req.headers.host)}${safe}` : safe);
      void reply.code(303).header('location', `${portal}${url.pathname}${url.search}`).header('cache-control', 'no-store').send();
      return true;
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
      if (!same(token, expected)) return token ? 'form token does not match' : 'form token missing';
      return null;
    }

    /** The live session, unless its user has since been removed or disabled (then it ends here). */
    async function session(req: FastifyRequest, c: Ctx): Promise<OpenSession | null> {
      const s = await rt.sessions.lookup(readSessionCookie(req.headers.cookie, c.info.cookieName), sessionScopeOf(c.info));
      if (!s) return null;
      // on the portal host, a page that names no rd is judged for the app the sign-in is for
      if (c.portalRd === 'none' && s.rec.rd) c.app = appOfRd(c.cfg, s.rec.rd);
      const u = rt.users.get(s.rec.user);
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

    function loginCsrf(req: FastifyRequest, reply: FastifyReply, c: Ctx): string {
      let token = readSessionCookie(req.headers.cookie, csrfCookie(c));
      if (!token || !/^[A-Za-z0-9_-]{32}$/.test(token)) {
        token = rt.random.bytes(24).toString('base64url');
        reply.setCookie(csrfCookie(c), token, { ...cookieOpts(c), sameSite: 'strict' });
      }
      return token;
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
      const user = rt.users.get(s.rec.user);
      return !signInAdmits(c.app, { ip: c.info.ip, groups: user?.groups ?? [], factors: s.rec.amr });
    }

    const stepUpTo = (reply: FastifyReply, page: string) => reply.code(303).header('location', `/.portcullis/mfa?rd=${encodeURIComponent(page)}`).send();

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

    // ---------- login ----------
    app.get('/.portcullis/login', async (req, reply) => {
      const c = ctx(req, reply);
      if (!c || toPortal(req, reply, c)) return reply;
      const q = req.query as Form;
      const rd = rdOf(c, q.rd);
      // decided on the client's network alone, never on `rd` (a bypass target admits nobody)
      if (!admitted(reply, c)) return reply;
      return send(reply, 200, loginPage({ csrf: loginCsrf(req, reply, c), rd }));
    });

    app.post('/.portcullis/login', async (req, reply) => {
      const c = ctx(req, reply);
      if (!c) return reply;
      const f = formOf(req.body);
      if (!f) return fail(reply, 400);
      const rd = rdOf(c, f.rd);
      const bad = csrfProblem(req, c, f.csrf, readSessionCookie(req.headers.cookie, csrfCookie(c)));
      if (bad) return csrfRefused(reply, c, bad);
      const username = (f.username ?? '').slice(0, 256);
      const password = f.password ?? '';
      if (!rt.stores.healthy()) return storeDown(reply);
      const r = await firstFactor(rt, c.cfg, { app: c.app, ip: c.info.ip, username, password, rd });
      const again = (status: number, msg: string, extra: Record<string, string> = {}) =>
        send(reply, status, loginPage({ csrf: loginCsrf(req, reply, c), rd, error: msg, username }), extra);
      switch (r.kind) {
        case 'network':
          return fail(reply, 403, ERRORS.PC_NETWORK_DENIED.message);
        case 'throttled':
          return again(429, ERRORS.PC_THROTTLED.message, { 'retry-after': String(r.retryAfterSec) });
        case 'busy':
          return fail(reply, 503, ERRORS.PC_BUSY.message, { 'retry-after': '1' });
        case 'fail':
          return again(401, GENERIC_LOGIN_ERROR);
        case 'ok': {
          // a new session id at sign-in: whatever id the browser had is discarded (no fixation)
          const old = await session(req, c);
          if (old) await rt.sessions.destroy(old);
          const s = await rt.sessions.create({
            user: r.user.name,
            amr: ['pwd'],
            pending: r.next,
            ip: c.info.ip,
            rd: rd ?? '/',
            // a weak password under on_weak: change, or a sprayed one: the change comes after the second factor
            mustChangePassword: r.mustChange && r.next !== 'password',
            // the password was proved just now: enrolling right after needs no second entry
            reauthAt: rt.clock.now(),
            scope: c.info.cookieDomain,
          });
          if (r.next === 'none') await completeSignIn(rt, c.cfg, { ip: c.info.ip, user: r.user.name, app: c.app.name, amr: s.rec.amr });
          setSession(reply, c, s);
          const to = r.offerEnrol ? '/.portcullis/enrol?offer=1' : afterStep(s);
          return reply.code(303).header('location', to).header('cache-control', 'no-store').send();
        }
      }
    });

    // ---------- second factor ----------
    app.get('/.portcullis/mfa', async (req, reply) => {
      const g = await signedIn(req, reply);
      if (!g) return reply;
      const { c, s } = g;
      const q = req.query as Form;
      const rd = rdOf(c, q.rd);
      if (s.rec.pending === 'none' && s.rec.amr.includes('otp')) return reply.redirect(rd ?? s.rec.rd ?? '/', 303);
      if (s.rec.pending !== 'mfa' && s.rec.pending !== 'none') return reply.redirect(stepLocation(s.rec.pending), 303);
      if (!(await rt.stores.state.getTotp(s.rec.user))) {
        // step-up for a user with no device yet: self-service enrolment, where allowed, which asks
        // for the password again unless it was proved minutes ago (a stolen cookie is not enough)
        if (!c.cfg.totp.enrolNetworks.contains(c.info.ip)) return enrolRefused(reply, c, s.rec.user);
        if (s.rec.pending === 'mfa') {
          // a sign-in step whose user lost the device meanwhile: start again
          await rt.sessions.destroy(s);
          return reply.redirect('/.portcullis/login', 303);
        }
        if (rd && rd !== s.rec.rd) await rt.sessions.update(s, { rd });
        return reply.redirect('/.portcullis/enrol', 303);
      }
      if (rd && rd !== s.rec.rd) await rt.sessions.update(s, { rd });
      return send(reply, 200, mfaPage({ csrf: s.rec.csrf, recovery: q.recovery === '1' }));
    });

    app.post('/.portcullis/mfa', async (req, reply) => {
      const g = await sessionForm(req, reply);
      if (!g) return reply;
      const { c, s, f } = g;
      if (s.rec.pending !== 'mfa' && !(s.rec.pending === 'none' && !s.rec.amr.includes('otp'))) return reply.redirect(afterStep(s), 303);
      if (!rt.stores.healthy()) return storeDown(reply);
      const code = (f.code ?? '').slice(0, 64);
      const recovery = /[a-z]/i.test(code);
      const r = await secondFactor(rt, c.cfg, { ip: c.info.ip, user: s.rec.user, code, app: c.app.name, session: s.idHash });
      if (r.kind === 'throttled') return send(reply, 429, mfaPage({ csrf: s.rec.csrf, recovery, error: ERRORS.PC_THROTTLED.message }), { 'retry-after': String(r.retryAfterSec) });
      if (r.kind === 'fail') return send(reply, 401, mfaPage({ csrf: s.rec.csrf, recovery, error: GENERIC_CODE_ERROR }));
      // a new id once the second factor is done (no fixation across the privilege change)
      const n = await rt.sessions.rotate(s, {
        amr: ['pwd', 'otp'],
        pending: s.rec.mustChangePassword ? 'password' : 'none',
        factorAt: rt.clock.now(),
      });
      if (n.rec.pending === 'none') await completeSignIn(rt, c.cfg, { ip: c.info.ip, user: n.rec.user, app: c.app.name, amr: n.rec.amr });
      setSession(reply, c, n);
      return reply.code(303).header('location', afterStep(n)).header('cache-control', 'no-store').send();
    });

    // ---------- enrolment (a step of sign-in, or self-service from the account page) ----------
    const qrOf = (uri: string) => QRCode.toDataURL(uri, { errorCorrectionLevel: 'M', margin: 2, width: 200 });

    function enrolRefused(reply: FastifyReply, c: Ctx, user: string): FastifyReply {
      rt.audit.record({ event: 'network_denied', ip: c.info.ip, user, app: c.app.name, outcome: 'denied', reason: 'TOTP enrolment outside totp.enrol.networks' });
      return fail(reply, 403, `${ERRORS.PC_ENROL_DENIED.message}. Authenticators can be set up or changed only from your organisation's network.`);
    }

    /** The QR page for the session's candidate secret (made now if there is none yet). */
    async function showEnrol(reply: FastifyReply, c: Ctx, s: OpenSession, status = 200, err?: string): Promise<FastifyReply> {
      let sealed = s.rec.enrolSecret;
      let details: { secret: string; uri: string };
      if (!sealed) {
        const fresh = startEnrolment(rt, c.cfg, s.rec.user);
        sealed = fresh.sealed;
        s = await rt.sessions.update(s, { enrolSecret: sealed });
        details = fresh;
      } else details = enrolmentDetails(rt, c.cfg, s.rec.user, sealed);
      const has = s.rec.pending === 'none' && (await rt.stores.state.getTotp(s.rec.user)) !== null;
      return send(
        reply,
        status,
        enrolPage({
          csrf: s.rec.csrf,
          qrDataUrl: await qrOf(details.uri),
          uri: details.uri,
          secret: details.secret,
          issuer: c.cfg.totp.issuer,
          ...(err ? { error: err } : {}),
          ...(has ? { extra: removeTotpForm({ csrf: s.rec.csrf }) } : {}),
        }),
      );
    }

    /**
     * Whether this session may change the user's factors now: the password proved minutes ago,
     * and, when an authenticator exists (replace, remove), the second factor too.
     */
    const reauthFresh = (s: OpenSession, hasTotp: boolean) => {
      const now = rt.clock.now();
      const fresh = (t: number | undefined) => t !== undefined && now - t < REAUTH_MS;
      return fresh(s.rec.reauthAt) && (!hasTotp || fresh(s.rec.factorAt));
    };

    app.get('/.portcullis/enrol', async (req, reply) => {
      const g = await signedIn(req, reply);
      if (!g) return reply;
      const { c, s } = g;
      if (s.rec.pending !== 'enrol' && s.rec.pending !== 'none') return reply.redirect(afterStep(s), 303);
      if (!c.cfg.totp.enrolNetworks.contains(c.info.ip)) return enrolRefused(reply, c, s.rec.user);
      if (s.rec.pending === 'enrol') return showEnrol(reply, c, s);
      // self-service: offered after sign-in, or opened from the account page
      const has = (await rt.stores.state.getTotp(s.rec.user)) !== null;
      if ((req.query as Form).offer === '1' && !has) return send(reply, 200, enrolOfferPage({ next: s.rec.rd ?? '/' }));
      if (!reauthFresh(s, has)) return send(reply, 200, reauthPage({ csrf: s.rec.csrf, hasTotp: has }));
      return showEnrol(reply, c, s);
    });

    app.post('/.portcullis/enrol', async (req, reply) => {
      const g = await sessionForm(req, reply);
      if (!g) return reply;
      const { c, f } = g;
      let s = g.s;
      if (s.rec.pending !== 'enrol' && s.rec.pending !== 'none') return reply.redirect(afterStep(s), 303);
      if (!c.cfg.totp.enrolNetworks.contains(c.info.ip)) return enrolRefused(reply, c, s.rec.user);
      if (!rt.stores.healthy()) return storeDown(reply);
      const selfService = s.rec.pending === 'none';
      if (selfService && f.action === 'reauth') {
        const has = (await rt.stores.state.getTotp(s.rec.user)) !== null;
        const r = await reauthenticate(rt, c.cfg, { app: c.app, ip: c.info.ip, user: s.rec.user, password: f.password ?? '' });
        switch (r) {
          case 'ok': {
            if (!has) {
              await rt.sessions.update(s, { reauthAt: rt.clock.now() });
              return reply.code(303).header('location', '/.portcullis/enrol').send();
            }
            // replacing or removing an authenticator needs the authenticator (NIST 800-63B
            // 6.1.2.1: bind at the level you authenticate at): a code or a recovery code too
            const m = await secondFactor(rt, c.cfg, { ip: c.info.ip, user: s.rec.user, code: (f.code ?? '').slice(0, 64), app: c.app.name, session: s.idHash });
            if (m.kind === 'throttled') return fail(reply, 429, ERRORS.PC_THROTTLED.message, { 'retry-after': String(m.retryAfterSec) });
            if (m.kind === 'fail') return send(reply, 401, reauthPage({ csrf: s.rec.csrf, hasTotp: has, error: GENERIC_CODE_ERROR }));
            const now = rt.clock.now();
            await rt.sessions.update(s, { reauthAt: now, factorAt: now });
            return reply.code(303).header('location', '/.portcullis/enrol').send();
          }
          case 'fail':
            return send(reply, 401, reauthPage({ csrf: s.rec.csrf, hasTotp: has, error: 'The password is not correct.' }));
          case 'throttled':
            return fail(reply, 429, ERRORS.PC_THROTTLED.message);
          case 'busy':
            return fail(reply, 503, ERRORS.PC_BUSY.message, { 'retry-after': '1' });
          case 'network':
            return enrolRefused(reply, c, s.rec.user);
        }
      }
      if (selfService && !reauthFresh(s, (await rt.stores.state.getTotp(s.rec.user)) !== null)) return reply.code(303).header('location', '/.portcullis/enrol').send();
      if (selfService && f.action === 'remove') {
        const r = await removeTotp(rt, c.cfg, { ip: c.info.ip, user: s.rec.user, app: c.app.name });
        if (r === 'network') return enrolRefused(reply, c, s.rec.user);
        await rt.sessions.update(s, { enrolSecret: undefined });
        return reply.code(303).header('location', '/.portcullis/account?done=removed').send();
      }
      if (!s.rec.enrolSecret) return reply.redirect(afterStep(s), 303);
      const r = await confirmEnrolment(rt, c.cfg, {
        ip: c.info.ip,
        user: s.rec.user,
        sealed: s.rec.enrolSecret,
        code: (f.code ?? '').slice(0, 64),
        app: c.app.name,
        session: s.idHash,
        replace: selfService,
      });
      if (r.kind === 'network') return enrolRefused(reply, c, s.rec.user);
      if (r.kind === 'exists') return reply.redirect('/.portcullis/login', 303);
      if (r.kind === 'throttled') return fail(reply, 429, undefined, { 'retry-after': String(r.retryAfterSec) });
      if (r.kind === 'fail') return showEnrol(reply, c, s, 401, GENERIC_CODE_ERROR);
      const n = await rt.sessions.rotate(s, {
        amr: ['pwd', 'otp'],
        pending: s.rec.mustChangePassword ? 'password' : 'none',
        enrolSecret: undefined,
        factorAt: rt.clock.now(),
      });
      s = n;
      if (!selfService && n.rec.pending === 'none') await completeSignIn(rt, c.cfg, { ip: c.info.ip, user: n.rec.user, app: c.app.name, amr: n.rec.amr });
      setSession(reply, c, n);
      return send(reply, 200, recoveryCodesPage({ codes: r.recoveryCodes, next: selfService ? (n.rec.rd ?? '/.portcullis/account') : afterStep(n), issuer: c.cfg.totp.issuer, user: n.rec.user }));
    });

    // ---------- account ----------
    app.get('/.portcullis/account', async (req, reply) => {
      const g = await signedIn(req, reply);
      if (!g) return reply;
      const { c, s } = g;
      if (s.rec.pending !== 'none') return reply.redirect(afterStep(s), 303);
      if (shortOfFactors(c, s)) return stepUpTo(reply, '/.portcullis/account');
      const user = rt.users.get(s.rec.user)!;
      const [totp, left] = await Promise.all([rt.stores.state.getTotp(user.name), rt.stores.state.countRecoveryCodes(user.name)]);
      const done = (req.query as Form).done;
      return send(
        reply,
        200,
        accountPage({
          csrf: s.rec.csrf,
          user: user.name,
          name: user.displayName ?? null,
          email: user.email ?? null,
          groups: user.groups,
          totp: totp ? { enrolledAt: new Date(totp.enrolledAt).toISOString().slice(0, 10), source: totp.source } : null,
          recoveryLeft: left,
          canEnrol: c.cfg.totp.enrolNetworks.contains(c.info.ip),
          message: done === 'removed' ? 'Your authenticator was removed.' : null,
        }),
      );
    });

    // ---------- password change ----------
    app.get('/.portcullis/password', async (req, reply) => {
      const c = ctx(req, reply);
      if (!c || toPortal(req, reply, c)) return reply;
      const s = await session(req, c);
      if (!s) return reply.redirect(`/.portcullis/login?rd=${encodeURIComponent('/.portcullis/password')}`, 303);
      if (!admitted(reply, c, s.rec.user)) return reply;
      if (s.rec.pending !== 'none' && s.rec.pending !== 'password') return reply.redirect(stepLocation(s.rec.pending), 303);
      if (s.rec.pending === 'none' && shortOfFactors(c, s)) return stepUpTo(reply, '/.portcullis/password');
      return send(reply, 200, passwordPage({ csrf: s.rec.csrf, required: s.rec.pending === 'password' }));
    });

    app.post('/.portcullis/password', async (req, reply) => {
      const g = await sessionForm(req, reply);
      if (!g) return reply;
      const { c, s, f } = g;
      if (s.rec.pending !== 'none' && s.rec.pending !== 'password') return reply.redirect(stepLocation(s.rec.pending), 303);
      if (s.rec.pending === 'none' && shortOfFactors(c, s)) return stepUpTo(reply, '/.portcullis/password');
      const required = s.rec.pending === 'password';
      const again = (status: number, msg: string) => send(reply, status, passwordPage({ csrf: s.rec.csrf, required, error: msg }));
      if (!rt.stores.healthy()) return storeDown(reply);
      const r = await changePassword(rt, c.cfg, { app: c.app, ip: c.info.ip, user: s.rec.user, current: f.current ?? '', next: f.new ?? '', confirm: f.confirm ?? '' });
      switch (r.kind) {
        case 'mismatch':
          return again(400, 'The new passwords do not match.');
        case 'network':
          return fail(reply, 403, ERRORS.PC_NETWORK_DENIED.message);
        case 'throttled':
          return fail(reply, 429, undefined, { 'retry-after': String(r.retryAfterSec) });
        case 'busy':
          return fail(reply, 503, ERRORS.PC_BUSY.message, { 'retry-after': '1' });
        case 'fail':
          return again(401, 'The current password is not correct.');
        case 'same':
          return again(400, 'The new password must differ from the current one.');
        case 'weak':
          return again(400, describe(r.reasons, c.cfg.passwordPolicy.minLength));
        case 'ok':
          break;
      }
      // every session of the user has ended; this browser continues in a fresh one
      rt.sessions.forget(s.idHash);
      const n = await rt.sessions.create({ user: s.rec.user, amr: s.rec.amr, pending: 'none', ip: c.info.ip, rd: s.rec.rd, scope: c.info.cookieDomain });
      if (required) await completeSignIn(rt, c.cfg, { ip: c.info.ip, user: s.rec.user, app: c.app.name, amr: n.rec.amr });
      setSession(reply, c, n);
      return send(reply, 200, passwordPage({ csrf: n.rec.csrf, required: false, done: true, next: n.rec.rd ?? '/' }));
    });

    // ---------- logout ----------
    app.get('/.portcullis/logout', async (req, reply) => {
      const c = ctx(req, reply);
      if (!c) return reply;
      const s = await session(req, c);
      if (!s) return send(reply, 200, signedOutPage({ loginUrl: '/.portcullis/login' }));
      return send(reply, 200, messagePage('Sign out', 'Use the button to sign out.').replace('</p>', `</p><form method="post" action="/.portcullis/logout"><input type="hidden" name="csrf" value="${s.rec.csrf}"><button type="submit">Sign out</button></form>`));
    });

    app.post('/.portcullis/logout', async (req, reply) => {
      const c = ctx(req, reply);
      if (!c) return reply;
      const f = formOf(req.body);
      if (!f) return fail(reply, 400);
      const q = req.query as Form;
      const s = await session(req, c);
      if (s) {
        const bad = csrfProblem(req, c, f.csrf, s.rec.csrf);
        if (bad) return csrfRefused(reply, c, bad, s.rec.user);
        await rt.sessions.destroy(s);
        for (const conn of rt.live) if (conn.sessionHash === s.idHash) conn.close('signed out');
        rt.audit.record({ event: 'session_ended', ip: c.info.ip, user: s.rec.user, app: c.app.name, outcome: 'success', reason: 'logout' });
        if (f.everywhere === '1' && s.rec.pending === 'none' && !shortOfFactors(c, s)) {
          const ended = await rt.stores.sessions.deleteByUser(s.rec.user);
          for (const conn of rt.live) if (conn.user === s.rec.user) conn.close('signed out everywhere');
          rt.audit.record({ event: 'session_revoked', ip: c.info.ip, user: s.rec.user, app: c.app.name, outcome: 'info', reason: `signed out everywhere (${ended} other sessions)` });
        }
      }
      reply.clearCookie(c.info.cookieName, sessionCookieOpts(c));
      const rd = rdOf(c, f.rd ?? q.rd);
      if (rd) return reply.code(303).header('location', rd).send();
      return send(reply, 200, signedOutPage({ loginUrl: '/.portcullis/login' }));
    });
  };
}

/**
 * Under `session.domain` a form posted on the portal ends in a redirect back to an app host, and
 * CSP `form-action` governs redirects after a submission too: the domain's https origins are added.
 */
function domainCsp(cfg: CompiledConfig): Record<string, string> {
  const d = cfg.session.domain;
  if (d === null) return {};
  return { 'content-security-policy': CSP.replace("form-action 'self'", `form-action 'self' https://${d}:* https://*.${d}:*`) };
}

function describe(reasons: readonly string[], minLength: number): string {
  if (reasons.includes('too_short')) return `The new password must have at least ${minLength} characters.`;
  if (reasons.includes('common')) return 'That password is too common: it appears in lists of breached passwords.';
  if (reasons.includes('sprayed')) return 'That password is being tried against many accounts right now: choose another.';
  if (reasons.includes('contains_user')) return 'The new password must not contain your user name or email.';
  return 'That password is too easy to guess. Try a longer passphrase of unrelated words.';
}
