/**
 * Passkeys (WebAuthn): sign-in, step-up and self-service over src/auth/passkey.ts.
 *
 *   GET  /.portcullis/passkey            use a passkey: the second factor at sign-in, or the
 *                                        step-up a `passkey` rule asks of a session without one
 *   GET  /.portcullis/passkey?manage=1   the user's passkeys (register, rename, remove), after
 *                                        the password and an existing factor were proved minutes
 *                                        ago; a first passkey only from `enrol.networks`
 *   POST /.portcullis/passkey            op=register-options|register|authenticate-options|
 *                                        authenticate (the page's script; JSON answers), or the
 *                                        forms action=reauth|rename|remove
 * Every POST is a session form: its CSRF token and Origin checked; the network admitted.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import {
  authenticationOptions,
  cleanName,
  finishAuthentication,
  finishRegistration,
  hasSecondFactor,
  MAX_PASSKEYS_PER_USER,
  registrationGate,
  registrationOptions,
  removeOwnPasskey,
} from '../auth/passkey.js';
import { completeSignIn, reauthenticate, secondFactor } from '../auth/login.js';
import { CSP, withPasskeyScript } from '../http/html.js';
import { ERRORS } from '../errors.js';
import type { OpenSession } from '../session/sessions.js';
import { GENERIC_CODE_ERROR, formOf, type Ctx, type Form, type PortalContext } from './context.js';
import { parseResponse, passwordlessRoutes } from './passwordless.js';
import { enrolRefuser } from './enrol.js';
import { passkeyConfirmPage, passkeyManagePage, passkeyMissingPage, passkeyReauthPage, passkeySignInPage } from './pages.js';
import { domainCsp } from './portal-host.js';

const MANAGE = '/.portcullis/passkey?manage=1';
const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

export function passkeyRoutes(portal: PortalContext) {
  const { rt, send, fail, signedIn, sessionForm, rdOf, storeDown, afterStep, setSession } = portal;
  const passwordless = passwordlessRoutes(portal);
  const enrolRefused = enrolRefuser(portal);

  /** A page running the passkey script: its CSP allows that one script. */
  const sendScripted = (reply: FastifyReply, c: Ctx, status: number, body: string) =>
    send(reply, status, body, { 'content-security-policy': withPasskeyScript(domainCsp(c.cfg)['content-security-policy'] ?? CSP) });

  const json = (reply: FastifyReply, status: number, body: unknown) =>
    reply.code(status).headers({ 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' }).send(JSON.stringify(body));

  /** The manage page, or what must come first (password, factor), or a 403 outside the enrol networks. */
  async function manage(reply: FastifyReply, c: Ctx, s: OpenSession, extra: { message?: string; error?: string; status?: number } = {}): Promise<FastifyReply> {
    const gate = await registrationGate(rt, c.cfg, s, c.info.ip);
    if (gate === 'off') return fail(reply, 404);
    if (gate === 'step') return reply.redirect(afterStep(s), 303);
    if (gate === 'network') return enrolRefused(reply, c, s.rec.user);
    const f = await hasSecondFactor(rt, s.rec.user);
    // outside the enrol networks the existing passkey is what proves it is the user, not a code
    const inEnrol = c.cfg.totp.enrolNetworks.contains(c.info.ip);
    if (gate === 'reauth' || (gate === 'factor' && f.totp)) return send(reply, extra.status ?? 200, passkeyReauthPage({ csrf: s.rec.csrf, hasTotp: f.totp && inEnrol, error: extra.error ?? null }));
    if (gate === 'factor' || gate === 'hwk') return sendScripted(reply, c, 200, passkeyConfirmPage({ csrf: s.rec.csrf }));
    const keys = await rt.stores.state.listPasskeys(s.rec.user);
    return sendScripted(
      reply,
      c,
      extra.status ?? 200,
      passkeyManagePage({
        csrf: s.rec.csrf,
        keys: keys.map((k) => ({ id: k.id, name: k.name, created: day(k.createdAt), lastUsed: k.lastUsedAt ? day(k.lastUsedAt) : null })),
        canAdd: keys.length < MAX_PASSKEYS_PER_USER,
        message: extra.message ?? null,
        error: extra.error ?? null,
        next: s.rec.pending === 'none' ? '/.portcullis/account' : afterStep(s),
      }),
    );
  }

  return async (app: FastifyInstance): Promise<void> => {
    app.get('/.portcullis/passkey', async (req, reply) => {
      const g = await signedIn(req, reply);
      if (!g) return reply;
      const { c, s } = g;
      if (!c.cfg.webauthn) return fail(reply, 404);
      const q = req.query as Form;
      if (q.manage === '1') {
        const done = q.done === 'removed' ? 'The passkey was removed.' : q.done === 'renamed' ? 'The passkey was renamed.' : q.done === 'added' ? 'The passkey was added.' : undefined;
        return manage(reply, c, s, done ? { message: done } : {});
      }
      if (q.confirm === 'enrol') {
        // adding an authenticator app for a user whose factor is a passkey: the passkey first
        const f = await hasSecondFactor(rt, s.rec.user);
        if (s.rec.pending !== 'none' || !f.passkey) return reply.redirect('/.portcullis/enrol', 303);
        return sendScripted(reply, c, 200, passkeyConfirmPage({ csrf: s.rec.csrf, then: 'enrol' }));
      }
      const rd = rdOf(c, q.rd);
      if (s.rec.pending !== 'mfa' && s.rec.pending !== 'none') return reply.redirect(afterStep(s), 303);
      if (s.rec.pending === 'none' && s.rec.amr.includes('hwk')) return reply.redirect(rd ?? s.rec.rd ?? '/', 303);
      const f = await hasSecondFactor(rt, s.rec.user);
      if (rd && rd !== s.rec.rd) await rt.sessions.update(s, { rd });
      if (!f.passkey) {
        if (s.rec.pending === 'mfa') return reply.redirect('/.portcullis/mfa?code=1', 303);
        const gate = await registrationGate(rt, c.cfg, s, c.info.ip);
        return send(reply, 403, passkeyMissingPage({ canRegister: gate !== 'network' && gate !== 'step' }));
      }
      // a signed-in session with a code that meets a `passkey` rule is a step-up: the passkey alone
      const stepUp = s.rec.pending === 'none' && s.rec.amr.includes('otp');
      return sendScripted(reply, c, 200, passkeySignInPage({ csrf: s.rec.csrf, stepUp, hasTotp: f.totp }));
    });

    app.post('/.portcullis/passkey', async (req, reply) => {
      // a passkey alone, before any session (issue 13): its own CSRF and pre-session checks
      const pf = formOf(req.body);
      if (pf && (pf.op === 'passwordless-options' || pf.op === 'passwordless')) return passwordless(req, reply, pf);
      const g = await sessionForm(req, reply);
      if (!g) return reply;
      const { c, f } = g;
      let s = g.s;
      if (!c.cfg.webauthn) return fail(reply, 404);
      if (!rt.stores.healthy()) return f.op ? json(reply, 503, { error: ERRORS.PC_STORE_UNAVAILABLE.message }) : storeDown(reply);
      const user = s.rec.user;

      switch (f.op) {
        case 'register-options': {
          const gate = await registrationGate(rt, c.cfg, s, c.info.ip);
          if (gate !== 'ok') return refuseRegistration(reply, c, s, gate);
          const r = await registrationOptions(rt, c.cfg, s);
          return json(reply, 200, { options: r.options });
        }
        case 'register': {
          const gate = await registrationGate(rt, c.cfg, s, c.info.ip);
          if (gate !== 'ok') return refuseRegistration(reply, c, s, gate);
          const response = parseResponse(f.response);
          const r = await finishRegistration(rt, c.cfg, { session: s, response, name: f.name, ip: c.info.ip, app: c.app.name });
          if (r.kind === 'full') return json(reply, 409, { error: 'This passkey is already registered, or you have the most passkeys allowed' });
          if (r.kind === 'fail') return json(reply, 400, { error: 'The passkey could not be registered' });
          s = r.session;
          if (s.rec.pending === 'enrol') {
            // registering the first factor at sign-in completes it, as confirming a TOTP code does
            const n = await rt.sessions.rotate(s, { amr: ['pwd', 'hwk'], pending: s.rec.mustChangePassword ? 'password' : 'none', enrolSecret: undefined, factorAt: rt.clock.now(), hwkAt: rt.clock.now() });
            if (n.rec.pending === 'none') await completeSignIn(rt, c.cfg, { ip: c.info.ip, user, app: c.app.name, amr: n.rec.amr });
            setSession(reply, c, n);
            return json(reply, 200, { next: afterStep(n) });
          }
          // the new key was just proved present: managing keys goes on without asking for it again.
          // Outside the enrol networks what counts there is `hwkAt` (an existing key), which this
          // does not touch, so a newly added key never extends that window.
          await rt.sessions.update(s, { factorAt: rt.clock.now() });
          return json(reply, 200, { next: `${MANAGE}&done=added` });
        }
        case 'authenticate-options': {
          if (s.rec.pending !== 'mfa' && s.rec.pending !== 'none') return json(reply, 409, { error: 'Finish the current sign-in step first', next: afterStep(s) });
          const r = await authenticationOptions(rt, c.cfg, s);
          if (!r) return json(reply, 400, { error: 'Your account has no passkey' });
          return json(reply, 200, { options: r.options });
        }
        case 'authenticate': {
          if (s.rec.pending !== 'mfa' && s.rec.pending !== 'none') return json(reply, 409, { error: 'Finish the current sign-in step first', next: afterStep(s) });
          const r = await finishAuthentication(rt, c.cfg, { session: s, response: parseResponse(f.response), ip: c.info.ip, app: c.app.name });
          if (r.kind === 'throttled') return json(reply.header('retry-after', String(r.retryAfterSec)), 429, { error: ERRORS.PC_THROTTLED.message });
          if (r.kind === 'fail') return json(reply, 401, { error: 'That passkey was not accepted' });
          s = r.session;
          const now = rt.clock.now();
          // a new id once the factor is proved (no fixation across the privilege change)
          const signIn = s.rec.pending === 'mfa';
          const n = await rt.sessions.rotate(s, {
            amr: ['pwd', 'hwk'],
            pending: signIn && s.rec.mustChangePassword ? 'password' : 'none',
            factorAt: now,
            hwkAt: now,
          });
          if (signIn && n.rec.pending === 'none') await completeSignIn(rt, c.cfg, { ip: c.info.ip, user, app: c.app.name, amr: n.rec.amr });
          setSession(reply, c, n);
          return json(reply, 200, { next: f.then === 'manage' ? MANAGE : f.then === 'enrol' ? '/.portcullis/enrol' : afterStep(n) });
        }
        case undefined:
          break;
        default:
          return json(reply, 400, { error: 'Unknown request' });
      }

      // the forms of the manage page
      if (s.rec.pending !== 'none' && s.rec.pending !== 'enrol') return reply.redirect(afterStep(s), 303);
      if (f.action === 'reauth') {
        const has = await hasSecondFactor(rt, user);
        // outside the enrol networks only a user who already has a passkey manages them (see registrationGate)
        if (!has.passkey && !c.cfg.totp.enrolNetworks.contains(c.info.ip)) return enrolRefused(reply, c, user);
        const r = await reauthenticate(rt, c.cfg, { app: c.app, ip: c.info.ip, user, password: f.password ?? '' });
        if (r === 'fail') return manage(reply, c, s, { error: 'The password is not correct.', status: 401 });
        if (r === 'throttled') return fail(reply, 429, ERRORS.PC_THROTTLED.message);
        if (r === 'busy') return fail(reply, 503, ERRORS.PC_BUSY.message, { 'retry-after': '1' });
        if (r === 'network') return enrolRefused(reply, c, user);
        const now = rt.clock.now();
        if (has.totp && c.cfg.totp.enrolNetworks.contains(c.info.ip)) {
          // an existing factor is proved with it (NIST 800-63B 6.1.2.1): the code too
          const m = await secondFactor(rt, c.cfg, { ip: c.info.ip, user, code: (f.code ?? '').slice(0, 64), app: c.app.name, session: s.idHash });
          if (m.kind === 'throttled') return fail(reply, 429, ERRORS.PC_THROTTLED.message, { 'retry-after': String(m.retryAfterSec) });
          if (m.kind === 'fail') {
            await rt.sessions.update(s, { reauthAt: now });
            return send(reply, 401, passkeyReauthPage({ csrf: s.rec.csrf, hasTotp: true, error: GENERIC_CODE_ERROR }));
          }
          await rt.sessions.update(s, { reauthAt: now, reenteredAt: now, factorAt: now });
        } else await rt.sessions.update(s, { reauthAt: now, reenteredAt: now });
        return reply.code(303).header('location', MANAGE).send();
      }
      if (f.action === 'rename' || f.action === 'remove') {
        const gate = await registrationGate(rt, c.cfg, s, c.info.ip);
        if (gate !== 'ok') return reply.code(303).header('location', MANAGE).send();
        const id = (f.id ?? '').slice(0, 1024);
        if (f.action === 'rename') {
          const ok = await rt.stores.state.renamePasskey(user, id, cleanName(f.name, 'Passkey'));
          return ok ? reply.code(303).header('location', `${MANAGE}&done=renamed`).send() : manage(reply, c, s, { error: 'No such passkey.', status: 404 });
        }
        const r = await removeOwnPasskey(rt, c.cfg, { user, id, ip: c.info.ip, app: c.app.name });
        if (r === 'busy') return fail(reply, 409, 'Another change to your passkeys is in progress; try again.');
        if (r === 'last') return manage(reply, c, s, { error: 'This is your only second factor: it can be removed only from your organisation\'s network. Add another first.', status: 403 });
        if (r === 'gone') return manage(reply, c, s, { error: 'No such passkey.', status: 404 });
        return reply.code(303).header('location', `${MANAGE}&done=removed`).send();
      }
      return fail(reply, 400);
    });
  };

  function refuseRegistration(reply: FastifyReply, c: Ctx, s: OpenSession, gate: Awaited<ReturnType<typeof registrationGate>>): FastifyReply {
    const base = { ip: c.info.ip, user: s.rec.user, app: c.app.name };
    if (gate === 'network') {
      rt.audit.record({ ...base, event: 'network_denied', outcome: 'denied', reason: 'first passkey outside enrol networks' });
      return json(reply, 403, { error: `${ERRORS.PC_ENROL_DENIED.message}. A first passkey can be registered only from your organisation's network.` });
    }
    rt.audit.record({ ...base, event: 'passkey_failed', outcome: 'denied', reason: `registration refused: ${gate === 'reauth' ? 'password not proved recently' : gate === 'factor' ? 'existing second factor not proved recently' : gate === 'hwk' ? 'existing passkey not proved recently (outside enrol networks)' : gate === 'off' ? 'passkeys off' : 'sign-in step pending'}` });
    return json(reply, 403, { error: 'Confirm your password (and current second factor) first', next: MANAGE });
  }
}

