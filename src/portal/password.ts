/**
 * The password change: required as a step of sign-in (a weak or sprayed password), or asked for
 * from the account page.
 *
 *   GET  /.portcullis/password   the form
 *   POST /.portcullis/password   src/auth/login.ts changePassword; on success every session of the
 *                                user has ended and this browser continues in a fresh one
 */
import type { FastifyInstance } from 'fastify';
import { stepLocation } from '../access/gate.js';
import { changePassword, completeSignIn } from '../auth/login.js';
import { ERRORS } from '../errors.js';
import type { PortalContext } from './context.js';
import { passwordPage } from './pages.js';
import { toPortal } from './portal-host.js';

export function passwordRoutes(portal: PortalContext) {
  const { rt, send, fail, ctx, session, admitted, sessionForm, shortOfFactors, stepUpTo, storeDown, setSession } = portal;

  return async (app: FastifyInstance): Promise<void> => {
    app.get('/.portcullis/password', async (req, reply) => {
      const c = ctx(req, reply);
      if (!c || toPortal(req, reply, c)) return reply;
      const s = await session(req, c);
      if (!s) return reply.redirect(`/.portcullis/login?rd=${encodeURIComponent('/.portcullis/password')}`, 303);
      if (!admitted(reply, c, s.rec.user)) return reply;
      if (s.rec.pending !== 'none' && s.rec.pending !== 'password') return reply.redirect(stepLocation(s.rec.pending), 303);
      if (s.rec.pending === 'none' && shortOfFactors(c, s)) return stepUpTo(reply, c, s, '/.portcullis/password');
      return send(reply, 200, passwordPage({ csrf: s.rec.csrf, required: s.rec.pending === 'password' }));
    });

    app.post('/.portcullis/password', async (req, reply) => {
      const g = await sessionForm(req, reply);
      if (!g) return reply;
      const { c, s, f } = g;
      if (s.rec.pending !== 'none' && s.rec.pending !== 'password') return reply.redirect(stepLocation(s.rec.pending), 303);
      if (s.rec.pending === 'none' && shortOfFactors(c, s)) return stepUpTo(reply, c, s, '/.portcullis/password');
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
  };
}

function describe(reasons: readonly string[], minLength: number): string {
  if (reasons.includes('too_short')) return `The new password must have at least ${minLength} characters.`;
  if (reasons.includes('common')) return 'That password is too common: it appears in lists of breached passwords.';
  if (reasons.includes('sprayed')) return 'That password is being tried against many accounts right now: choose another.';
  if (reasons.includes('contains_user')) return 'The new password must not contain your user name or email.';
  return 'That password is too easy to guess. Try a longer passphrase of unrelated words.';
}
