/**
 * Signing in and out of the console.
 *
 *   GET  /console/login   the sign-in form (the admin token)
 *   POST /console/login   token checked in constant time by AdminToken, failures counted per
 *                         source by the same AdminAuth limiter as the API; on success a new
 *                         console session and 303 to /console
 *   POST /console/logout  ends the console session
 */
import type { FastifyInstance } from 'fastify';
import { sameSecret } from './console-sessions.js';
import { formOf, type ConsoleContext } from './context.js';
import { loginPage } from './pages.js';

export function loginRoutes(ctx: ConsoleContext) {
  const { rt, deps, sessions } = ctx;
  return async (app: FastifyInstance) => {
    app.get('/console/login', async (req, reply) => {
      if (await ctx.current(req)) return reply.code(303).header('location', '/console').send();
      return ctx.send(reply, 200, loginPage());
    });

    app.post('/console/login', async (req, reply) => {
      if (!ctx.originOk(req)) return ctx.forbidden(reply);
      const f = formOf(req.body);
      if (!f) return ctx.page(reply, 400, 'Bad request', 'The sign-in form could not be read.');
      const info = ctx.infoOf(req);
      const presented = (f.token ?? '').trim();
      const v = await deps.auth.check(info.ip, `Bearer ${presented}`);
      if (!v.ok) {
        if (v.code === 'PC_THROTTLED') {
          return ctx.send(reply, 429, loginPage({ error: `Too many failed attempts from this address. Try again in ${v.retryAfterSec} s.` }), {
            'retry-after': String(v.retryAfterSec),
          });
        }
        return ctx.send(reply, 401, loginPage({ error: presented === '' ? 'Enter the admin token.' : 'That is not the admin token.' }));
      }
      // a new id at every sign-in: whatever session the browser held is discarded (no fixation)
      const old = sessions.lookup(req.cookies[info.cookie]);
      if (old) sessions.destroy(old);
      const { id, session } = sessions.create(info.ip, presented);
      rt.logger.info({ admin: info.ip }, 'admin console: signed in');
      reply.setCookie(info.cookie, id, { ...ctx.cookieOpts(req), maxAge: sessions.cookieMaxAgeSec(session) });
      return reply.code(303).header('location', '/console').send();
    });

    app.post('/console/logout', async (req, reply) => {
      if (!ctx.originOk(req)) return ctx.forbidden(reply);
      const s = await ctx.current(req);
      if (!s) return ctx.toLogin(reply);
      const f = formOf(req.body);
      if (!f || !sameSecret(f.csrf, s.csrf)) return ctx.forbidden(reply, s);
      sessions.destroy(s);
      rt.logger.info({ admin: ctx.infoOf(req).ip }, 'admin console: signed out');
      reply.clearCookie(ctx.infoOf(req).cookie, ctx.cookieOpts(req));
      return ctx.toLogin(reply);
    });
  };
}
