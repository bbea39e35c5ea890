/**
 * The second factor: a code from the authenticator app, or a recovery code.
 *
 *   GET  /.portcullis/mfa   the code form (a sign-in step, or a step-up for a signed-in session;
 *                           a user with no authenticator yet is sent to enrolment, where allowed)
 *   POST /.portcullis/mfa   the code checked (src/auth/login.ts secondFactor); on success a new
 *                           session id and 303 to the next step or the target
 */
import type { FastifyInstance } from 'fastify';
import { stepLocation } from '../access/gate.js';
import { completeSignIn, secondFactor } from '../auth/login.js';
import { ERRORS } from '../errors.js';
import { GENERIC_CODE_ERROR, type Form, type PortalContext } from './context.js';
import { enrolRefuser } from './enrol.js';
import { mfaPage } from './pages.js';
import { factorsMeet } from '../policy/admission.js';

export function mfaRoutes(portal: PortalContext) {
  const { rt, send, signedIn, sessionForm, rdOf, storeDown, afterStep, setSession } = portal;
  const enrolRefused = enrolRefuser(portal);

  return async (app: FastifyInstance): Promise<void> => {
    app.get('/.portcullis/mfa', async (req, reply) => {
      const g = await signedIn(req, reply);
      if (!g) return reply;
      const { c, s } = g;
      const q = req.query as Form;
      const rd = rdOf(c, q.rd);
      if (s.rec.pending === 'none' && factorsMeet('mfa', s.rec.amr)) return reply.redirect(rd ?? s.rec.rd ?? '/', 303);
      if (s.rec.pending !== 'mfa' && s.rec.pending !== 'none') return reply.redirect(stepLocation(s.rec.pending), 303);
      const passkey = c.cfg.webauthn !== null && (await rt.stores.state.listPasskeys(s.rec.user)).length > 0;
      const totp = (await rt.stores.state.getTotp(s.rec.user)) !== null;
      // a passkey is offered first where the user has one (it cannot be phished); a code on request
      if (passkey && (!totp || (q.code !== '1' && q.recovery !== '1'))) {
        if (rd && rd !== s.rec.rd) await rt.sessions.update(s, { rd });
        return reply.redirect('/.portcullis/passkey', 303);
      }
      if (!totp) {
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
      return send(reply, 200, mfaPage({ csrf: s.rec.csrf, recovery: q.recovery === '1', passkey }));
    });

    app.post('/.portcullis/mfa', async (req, reply) => {
      const g = await sessionForm(req, reply);
      if (!g) return reply;
      const { c, s, f } = g;
      // a session whose factors already meet `mfa` (a code, or a passkey) gains nothing from a code: it
      // would only trade its passkey for a code
      if (s.rec.pending !== 'mfa' && !(s.rec.pending === 'none' && !factorsMeet('mfa', s.rec.amr))) return reply.redirect(afterStep(s), 303);
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
  };
}
