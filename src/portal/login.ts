/**
 * The login form, the first step of sign-in.
 *
 *   GET  /.portcullis/login   the form (admitted on the client's network alone, never on `rd`)
 *   POST /.portcullis/login   the password checked (src/auth/login.ts firstFactor); on success a
 *                             new session and 303 to the next step or the target
 *
 * Before sign-in the form is guarded by a double-submit cookie, and the Origin when sent.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { completeSignIn, firstFactor } from '../auth/login.js';
import { ERRORS } from '../errors.js';
import { readSessionCookie } from '../http/request-context.js';
import { formOf, type Ctx, type Form, type PortalContext } from './context.js';
import { loginPage } from './pages.js';
import { toPortal } from './portal-host.js';
import { passwordlessAllowed } from '../auth/credential.js';
import { CSP, withPasskeyScript } from '../http/html.js';
import { domainCsp } from './portal-host.js';
import { accountKey } from '../directory/source.js';

const GENERIC_LOGIN_ERROR = 'Incorrect username or password.';

export function loginRoutes(portal: PortalContext) {
  const { rt, send, fail, ctx, csrfCookie, cookieOpts, csrfProblem, csrfRefused, session, setSession, rdOf, storeDown, afterStep, admitted } = portal;

  function loginCsrf(req: FastifyRequest, reply: FastifyReply, c: Ctx): string {
    let token = readSessionCookie(req.headers.cookie, csrfCookie(c));
    if (!token || !/^[A-Za-z0-9_-]{32}$/.test(token)) {
      token = rt.random.bytes(24).toString('base64url');
      reply.setCookie(csrfCookie(c), token, { ...cookieOpts(c), sameSite: 'strict' });
    }
    return token;
  }

  return async (app: FastifyInstance): Promise<void> => {
    app.get('/.portcullis/login', async (req, reply) => {
      const c = ctx(req, reply);
      if (!c || toPortal(req, reply, c)) return reply;
      const q = req.query as Form;
      const rd = rdOf(c, q.rd);
      // decided on the client's network alone, never on `rd` (a bypass target admits nobody)
      if (!admitted(reply, c)) return reply;
      // passwordless (issue 13): the passkey button and its one script, allowed by hash
      if (passwordlessAllowed(rt, c.cfg, c.app, c.info.ip)) {
        const csp = withPasskeyScript(domainCsp(c.cfg)['content-security-policy'] ?? CSP);
        return send(reply, 200, loginPage({ csrf: loginCsrf(req, reply, c), rd, passkey: true }), { 'content-security-policy': csp });
      }
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
            user: accountKey(r.user),
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
          if (r.next === 'none') await completeSignIn(rt, c.cfg, { ip: c.info.ip, user: accountKey(r.user), app: c.app.name, amr: s.rec.amr });
          setSession(reply, c, s);
          const to = r.offerEnrol ? '/.portcullis/enrol?offer=1' : afterStep(s);
          return reply.code(303).header('location', to).header('cache-control', 'no-store').send();
        }
      }
    });
  };
}
