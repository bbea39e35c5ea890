/**
 * Enrolment of an authenticator app (TOTP): a step of sign-in, or self-service from the account
 * page (set up, replace, remove), only from `totp.enrol.networks`.
 *
 *   GET  /.portcullis/enrol   the QR page; self-service first asks for the password again (and the
 *                             current code, when an authenticator exists) unless proved minutes ago
 *   POST /.portcullis/enrol   action=reauth | action=remove | the code confirming the new secret,
 *                             answered with the recovery codes
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import QRCode from 'qrcode';
import { completeSignIn, confirmEnrolment, enrolmentDetails, reauthenticate, REAUTH_MS, removeTotp, secondFactor, startEnrolment } from '../auth/login.js';
import { ERRORS } from '../errors.js';
import type { OpenSession } from '../session/sessions.js';
import { GENERIC_CODE_ERROR, type Ctx, type Form, type PortalContext } from './context.js';
import { enrolOfferPage, enrolPage, passkeyInsteadLink, reauthPage, recoveryCodesPage, removeTotpForm } from './pages.js';
import { hasSecondFactor } from '../auth/passkey.js';
import { knownUser } from '../directory/source.js';

const qrOf = (uri: string) => QRCode.toDataURL(uri, { errorCorrectionLevel: 'M', margin: 2, width: 200 });

/** A 403 (audited) for enrolment outside `totp.enrol.networks`; also used by the second factor's step-up. */
export function enrolRefuser(portal: PortalContext): (reply: FastifyReply, c: Ctx, user: string) => FastifyReply {
  const { rt, fail } = portal;
  return function enrolRefused(reply: FastifyReply, c: Ctx, user: string): FastifyReply {
    rt.audit.record({ event: 'network_denied', ip: c.info.ip, user, app: c.app.name, outcome: 'denied', reason: 'TOTP enrolment outside totp.enrol.networks' });
    return fail(reply, 403, `${ERRORS.PC_ENROL_DENIED.message}. Authenticators can be set up or changed only from your organisation's network.`);
  };
}

export function enrolRoutes(portal: PortalContext) {
  const { rt, send, fail, signedIn, sessionForm, storeDown, afterStep, setSession } = portal;
  const enrolRefused = enrolRefuser(portal);

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
        ...(has ? { extra: removeTotpForm({ csrf: s.rec.csrf }) } : c.cfg.webauthn ? { extra: passkeyInsteadLink() } : {}),
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

  const hasAnySecondFactor = async (user: string) => {
    const f = await hasSecondFactor(rt, user);
    return f.totp || f.passkey;
  };

  return async (app: FastifyInstance): Promise<void> => {
    app.get('/.portcullis/enrol', async (req, reply) => {
      const g = await signedIn(req, reply);
      if (!g) return reply;
      const { c, s } = g;
      if (s.rec.pending !== 'enrol' && s.rec.pending !== 'none') return reply.redirect(afterStep(s), 303);
      if (!c.cfg.totp.enrolNetworks.contains(c.info.ip)) return enrolRefused(reply, c, s.rec.user);
      if (s.rec.pending === 'enrol') return showEnrol(reply, c, s);
      // self-service: offered after sign-in, or opened from the account page
      const factors = await hasSecondFactor(rt, s.rec.user);
      const has = factors.totp;
      const any = factors.totp || factors.passkey;
      if ((req.query as Form).offer === '1' && !any) return send(reply, 200, enrolOfferPage({ next: s.rec.rd ?? '/' }));
      if (!reauthFresh(s, has) || !reauthFresh(s, false)) return send(reply, 200, reauthPage({ csrf: s.rec.csrf, hasTotp: has }));
      // a user whose only factor is a passkey proves it before an authenticator app is added
      if (!reauthFresh(s, any)) return reply.redirect('/.portcullis/passkey?confirm=enrol', 303);
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
      if (selfService && !reauthFresh(s, await hasAnySecondFactor(s.rec.user))) return reply.code(303).header('location', '/.portcullis/enrol').send();
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
      return send(reply, 200, recoveryCodesPage({ codes: r.recoveryCodes, next: selfService ? (n.rec.rd ?? '/.portcullis/account') : afterStep(n), issuer: c.cfg.totp.issuer, user: knownUser(rt, n.rec.user)?.name ?? n.rec.user }));
    });
  };
}
