/**
 * The sign-in portal under /.portcullis/: login, second factor, enrolment, password change,
 * logout. Thin HTTP glue over src/auth/login.ts. Every POST is CSRF-protected: before sign-in
 * by a double-submit cookie, after it by the session's own token; and the Origin, when sent,
 * must be this host.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import QRCode from 'qrcode';
import type { CompiledApp, CompiledConfig } from '../config/types.js';
import { ERRORS, isPortcullisError } from '../errors.js';
import type { Runtime } from '../runtime.js';
import { clientInfo, readSessionCookie, type ClientInfo } from '../http/request-context.js';
import { appForHost, stepLocation } from '../proxy/gate.js';
import type { OpenSession } from '../session/sessions.js';
import { completeSignIn, confirmEnrolment, enrolmentDetails, firstFactor, secondFactor, signInAllowed, startEnrolment } from '../auth/login.js';
import { editUsersFile, setPassword } from '../auth/users.js';
import { errorPage, PAGE_HEADERS } from './html.js';
import { enrolPage, loginPage, messagePage, mfaPage, passwordPage, recoveryCodesPage, signedOutPage } from './pages.js';
import { safeRedirect } from './redirect.js';

const GENERIC_LOGIN_ERROR = 'Incorrect username or password.';
const GENERIC_CODE_ERROR = 'That code is not valid. Try the next one your app shows.';

type Form = Record<string, string | undefined>;

interface Ctx {
  cfg: CompiledConfig;
  info: ClientInfo;
  app: CompiledApp;
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

function same(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b) return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function portalRoutes(rt: Runtime) {
  return async function (app: FastifyInstance): Promise<void> {
    const send = (reply: FastifyReply, status: number, body: string, extra: Record<string, string> = {}) =>
      reply.code(status).headers({ ...PAGE_HEADERS, ...extra }).send(body);

    const fail = (reply: FastifyReply, status: number, message?: string, extra: Record<string, string> = {}) =>
      send(reply, status, errorPage(status, message), extra);

    /** Host -> app, or a 421 already sent. */
    function ctx(req: FastifyRequest, reply: FastifyReply): Ctx | null {
      const cfg = rt.config;
      const info = clientInfo(req.raw, cfg);
      const a = appForHost(cfg, req.headers.host);
      if (!a) {
        void fail(reply, 421);
        return null;
      }
      return { cfg, info, app: a };
    }

    const csrfCookie = (c: Ctx) => (c.info.proto === 'https' ? '__Host-portcullis-csrf' : 'portcullis_dev_csrf');
    const cookieOpts = (c: Ctx, maxAgeSec?: number) => ({
      path: '/',
      httpOnly: true,
      secure: c.info.proto === 'https',
      sameSite: 'lax' as const,
      ...(maxAgeSec !== undefined ? { maxAge: maxAgeSec } : {}),
    });

    function originOk(req: FastifyRequest): boolean {
      const origin = req.headers.origin;
      if (!origin || origin === 'null') return origin !== 'null';
      try {
        return new URL(origin).host.toLowerCase() === String(req.headers.host ?? '').toLowerCase();
      } catch {
        return false;
      }
    }

    /** The live session, unless its user has since been removed or disabled (then it ends here). */
    async function session(req: FastifyRequest, c: Ctx): Promise<OpenSession | null> {
      const s = await rt.sessions.lookup(readSessionCookie(req.headers.cookie, c.info.cookieName));
      if (!s) return null;
      const u = rt.users.get(s.rec.user);
      if (u && !u.disabled) return s;
      await rt.sessions.destroy(s);
      return null;
    }

    function setSession(reply: FastifyReply, c: Ctx, s: OpenSession): void {
      reply.setCookie(c.info.cookieName, s.id, cookieOpts(c));
    }

    function rdOf(c: Ctx, raw: string | undefined): string | null {
      return safeRedirect(raw, c.cfg);
    }

    function loginCsrf(req: FastifyRequest, reply: FastifyReply, c: Ctx): string {
      let token = req.cookies[csrfCookie(c)];
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


    /** The app and the (possibly half-signed-in) session, or null with a response already sent. */
    async function signedIn(req: FastifyRequest, reply: FastifyReply): Promise<{ c: Ctx; s: OpenSession } | null> {
      const c = ctx(req, reply);
      if (!c) return null;
      const s = await session(req, c);
      if (!s) {
        void reply.redirect('/.portcullis/login', 303);
        return null;
      }
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
      if (!originOk(req) || !same(f.csrf, g.s.rec.csrf)) {
        void fail(reply, 403, ERRORS.PC_CSRF.message);
        return null;
      }
      return { ...g, f };
    }

    // ---------- login ----------
    app.get('/.portcullis/login', async (req, reply) => {
      const c = ctx(req, reply);
      if (!c) return reply;
      const q = req.query as Form;
      const rd = rdOf(c, q.rd);
      if (!signInAllowed(rt, c.cfg, c.app, c.info.ip, rd)) return fail(reply, 403, ERRORS.PC_NETWORK_DENIED.message);
      return send(reply, 200, loginPage({ csrf: loginCsrf(req, reply, c), rd }));
    });

    app.post('/.portcullis/login', async (req, reply) => {
      const c = ctx(req, reply);
      if (!c) return reply;
      const f = formOf(req.body);
      if (!f) return fail(reply, 400);
      const rd = rdOf(c, f.rd);
      if (!originOk(req) || !same(f.csrf, req.cookies[csrfCookie(c)])) return fail(reply, 403, ERRORS.PC_CSRF.message);
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
        case 'enrol-denied':
          return fail(reply, 403, ERRORS.PC_ENROL_DENIED.message + '. Ask your administrator to set up your authenticator.');
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
            // a weak password under on_weak: change: the change comes after the second factor
            mustChangePassword: r.weak && c.cfg.passwordPolicy.onWeak === 'change' && r.next !== 'password',
          });
          if (r.next === 'none') await completeSignIn(rt, c.cfg, { ip: c.info.ip, user: r.user.name, app: c.app.name });
          setSession(reply, c, s);
          return reply.code(303).header('location', afterStep(s)).header('cache-control', 'no-store').send();
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
        // step-up for a user with no device yet: enrol, where allowed
        if (!c.cfg.totp.enrolNetworks.contains(c.info.ip)) return fail(reply, 403, ERRORS.PC_ENROL_DENIED.message);
        const n = await rt.sessions.update(s, { pending: 'enrol', ...(rd ? { rd } : {}) });
        return reply.redirect(stepLocation(n.rec.pending), 303);
      }
      if (rd && rd !== s.rec.rd) await rt.sessions.update(s, { rd });
      return send(reply, 200, mfaPage({ csrf: s.rec.csrf }));
    });

    app.post('/.portcullis/mfa', async (req, reply) => {
      const g = await sessionForm(req, reply);
      if (!g) return reply;
      const { c, s, f } = g;
      if (s.rec.pending !== 'mfa' && !(s.rec.pending === 'none' && !s.rec.amr.includes('otp'))) return reply.redirect(afterStep(s), 303);
      if (!rt.stores.healthy()) return storeDown(reply);
      const r = await secondFactor(rt, c.cfg, { ip: c.info.ip, user: s.rec.user, code: (f.code ?? '').slice(0, 64), app: c.app.name });
      if (r.kind === 'throttled') return send(reply, 429, mfaPage({ csrf: s.rec.csrf, error: ERRORS.PC_THROTTLED.message }), { 'retry-after': String(r.retryAfterSec) });
      if (r.kind === 'fail') return send(reply, 401, mfaPage({ csrf: s.rec.csrf, error: GENERIC_CODE_ERROR }));
      // a new id once the second factor is done (no fixation across the privilege change)
      const n = await rt.sessions.rotate(s, {
        amr: ['pwd', 'otp'],
        pending: s.rec.mustChangePassword ? 'password' : 'none',
      });
      if (n.rec.pending === 'none') await completeSignIn(rt, c.cfg, { ip: c.info.ip, user: n.rec.user, app: c.app.name });
      setSession(reply, c, n);
      return reply.code(303).header('location', afterStep(n)).header('cache-control', 'no-store').send();
    });

    // ---------- enrolment ----------
    app.get('/.portcullis/enrol', async (req, reply) => {
      const g = await signedIn(req, reply);
      if (!g) return reply;
      const { c, s } = g;
      if (s.rec.pending !== 'enrol') return reply.redirect(afterStep(s), 303);
      if (!c.cfg.totp.enrolNetworks.contains(c.info.ip)) {
        rt.audit.record({ event: 'network_denied', ip: c.info.ip, user: s.rec.user, app: c.app.name, outcome: 'denied', reason: 'TOTP enrolment outside totp.enrol.networks' });
        return fail(reply, 403, ERRORS.PC_ENROL_DENIED.message);
      }
      let sealed = s.rec.enrolSecret;
      let details: { secret: string; uri: string };
      if (!sealed) {
        const fresh = startEnrolment(rt, c.cfg, s.rec.user);
        sealed = fresh.sealed;
        await rt.sessions.update(s, { enrolSecret: sealed });
        details = fresh;
      } else details = enrolmentDetails(rt, c.cfg, s.rec.user, sealed);
      const qr = await QRCode.toDataURL(details.uri, { errorCorrectionLevel: 'M', margin: 2, width: 200 });
      return send(reply, 200, enrolPage({ csrf: s.rec.csrf, qrDataUrl: qr, uri: details.uri, secret: details.secret, issuer: c.cfg.totp.issuer }));
    });

    app.post('/.portcullis/enrol', async (req, reply) => {
      const g = await sessionForm(req, reply);
      if (!g) return reply;
      const { c, s, f } = g;
      if (s.rec.pending !== 'enrol' || !s.rec.enrolSecret) return reply.redirect(afterStep(s), 303);
      if (!rt.stores.healthy()) return storeDown(reply);
      const r = await confirmEnrolment(rt, c.cfg, { ip: c.info.ip, user: s.rec.user, sealed: s.rec.enrolSecret, code: (f.code ?? '').slice(0, 64), app: c.app.name });
      if (r.kind === 'network') return fail(reply, 403, ERRORS.PC_ENROL_DENIED.message);
      if (r.kind === 'exists') return reply.redirect('/.portcullis/login', 303);
      if (r.kind === 'throttled') return fail(reply, 429, undefined, { 'retry-after': String(r.retryAfterSec) });
      if (r.kind === 'fail') {
        const d = enrolmentDetails(rt, c.cfg, s.rec.user, s.rec.enrolSecret);
        const qr = await QRCode.toDataURL(d.uri, { errorCorrectionLevel: 'M', margin: 2, width: 200 });
        return send(reply, 401, enrolPage({ csrf: s.rec.csrf, qrDataUrl: qr, uri: d.uri, secret: d.secret, issuer: c.cfg.totp.issuer, error: GENERIC_CODE_ERROR }));
      }
      const n = await rt.sessions.rotate(s, {
        amr: ['pwd', 'otp'],
        pending: s.rec.mustChangePassword ? 'password' : 'none',
        enrolSecret: undefined,
      });
      if (n.rec.pending === 'none') await completeSignIn(rt, c.cfg, { ip: c.info.ip, user: n.rec.user, app: c.app.name });
      setSession(reply, c, n);
      return send(reply, 200, recoveryCodesPage({ codes: r.recoveryCodes, next: afterStep(n) }));
    });

    // ---------- password change ----------
    app.get('/.portcullis/password', async (req, reply) => {
      const c = ctx(req, reply);
      if (!c) return reply;
      const s = await session(req, c);
      if (!s) return reply.redirect(`/.portcullis/login?rd=${encodeURIComponent('/.portcullis/password')}`, 303);
      if (s.rec.pending !== 'none' && s.rec.pending !== 'password') return reply.redirect(stepLocation(s.rec.pending), 303);
      return send(reply, 200, passwordPage({ csrf: s.rec.csrf, required: s.rec.pending === 'password' }));
    });

    app.post('/.portcullis/password', async (req, reply) => {
      const g = await sessionForm(req, reply);
      if (!g) return reply;
      const { c, s, f } = g;
      if (s.rec.pending !== 'none' && s.rec.pending !== 'password') return reply.redirect(stepLocation(s.rec.pending), 303);
      const required = s.rec.pending === 'password';
      const again = (status: number, msg: string) => send(reply, status, passwordPage({ csrf: s.rec.csrf, required, error: msg }));
      const user = rt.users.get(s.rec.user);
      if (!user || user.disabled) return fail(reply, 403);
      const current = f.current ?? '';
      const next = f.new ?? '';
      if (next !== (f.confirm ?? '')) return again(400, 'The new passwords do not match.');
      const t = await rt.throttle.check({ ip: c.info.ip, user: user.name });
      if (!t.allowed) return fail(reply, 429, undefined, { 'retry-after': String(t.retryAfterSec) });
      let ok: boolean;
      try {
        ok = await rt.hashBudget.tryRun(() => rt.hasher.verify(user.passwordHash, current));
      } catch (e) {
        if (isPortcullisError(e, 'PC_BUSY')) return fail(reply, 503, ERRORS.PC_BUSY.message, { 'retry-after': '1' });
        throw e;
      }
      if (!ok) {
        await rt.throttle.recordFailure({ ip: c.info.ip, user: user.name, passwordFingerprint: rt.box.hmac('password-fingerprint', `${user.name}\u0000${current}`), familiar: await rt.throttle.isFamiliar(user.name, c.info.ip) });
        rt.audit.record({ event: 'login_failed', ip: c.info.ip, user: user.name, app: c.app.name, outcome: 'failure', reason: 'wrong current password on password change' });
        return again(401, 'The current password is not correct.');
      }
      if (next === current) return again(400, 'The new password must differ from the current one.');
      const verdict = rt.guidance().assess(next, { user: user.name, email: user.email });
      if (!verdict.ok) return again(400, describe(verdict.reasons, c.cfg.passwordPolicy.minLength));
      // hashing the new password counts against the same budget as verifications (503 past it)
      const hash = await rt.hashBudget.tryRun(() => rt.hasher.hash(next));
      await editUsersFile(c.cfg.usersFile, (doc) => setPassword(doc, user.name, hash));
      await rt.reloadUsers();
      // a new password ends every session of the user (ASVS 3.3.3): a thief's session must not
      // outlive the change; this browser continues in a fresh session
      await rt.sessions.destroy(s);
      const ended = await rt.stores.sessions.deleteByUser(user.name);
      if (ended > 0) rt.audit.record({ event: 'session_revoked', ip: c.info.ip, user: user.name, app: c.app.name, outcome: 'info', reason: 'password changed' });
      const n = await rt.sessions.create({ user: user.name, amr: s.rec.amr, pending: 'none', ip: c.info.ip, rd: s.rec.rd });
      if (required) await completeSignIn(rt, c.cfg, { ip: c.info.ip, user: user.name, app: c.app.name });
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
        if (!originOk(req) || !same(f.csrf, s.rec.csrf)) return fail(reply, 403, ERRORS.PC_CSRF.message);
        await rt.sessions.destroy(s);
        for (const conn of rt.live) if (conn.sessionHash === s.idHash) conn.close('signed out');
        rt.audit.record({ event: 'session_ended', ip: c.info.ip, user: s.rec.user, app: c.app.name, outcome: 'success', reason: 'logout' });
      }
      reply.clearCookie(c.info.cookieName, cookieOpts(c));
      const rd = rdOf(c, f.rd ?? q.rd);
      if (rd) return reply.code(303).header('location', rd).send();
      return send(reply, 200, signedOutPage({ loginUrl: '/.portcullis/login' }));
    });
  };
}

function describe(reasons: readonly string[], minLength: number): string {
  if (reasons.includes('too_short')) return `The new password must have at least ${minLength} characters.`;
  if (reasons.includes('common')) return 'That password is too common: it appears in lists of breached passwords.';
  if (reasons.includes('contains_user')) return 'The new password must not contain your user name or email.';
  return 'That password is too easy to guess. Try a longer passphrase of unrelated words.';
}
