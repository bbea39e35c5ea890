/**
 * Signing out.
 *
 *   GET  /.portcullis/logout   a page with the sign-out button (a GET ends nothing)
 *   POST /.portcullis/logout   ends the session (everywhere=1: every session of the user, for a
 *                              session with enough factors), closes its live connections, clears
 *                              the cookie and leads to `rd` or the signed-out page
 */
import type { FastifyInstance } from 'fastify';
import { formOf, type Form, type PortalContext } from './context.js';
import { messagePage, signedOutPage } from './pages.js';

export function logoutRoutes(portal: PortalContext) {
  const { rt, send, fail, ctx, session, csrfProblem, csrfRefused, shortOfFactors, sessionCookieOpts, rdOf } = portal;

  return async (app: FastifyInstance): Promise<void> => {
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
