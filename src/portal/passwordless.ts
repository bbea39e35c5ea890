/**
 * Passwordless sign-in (issue 13): a discoverable passkey with user verification, alone.
 *
 *   POST /.portcullis/passkey op=passwordless-options   options for navigator.credentials.get()
 *                                                       naming no credential; sets the pre-session
 *   POST /.portcullis/passkey op=passwordless           the answer: checked (src/auth/credential.ts
 *                                                       checkPasskey), then a new session, amr ["hwk"]
 *
 * Both are login-form posts: the login form's double-submit CSRF token and the Origin are
 * checked, and the client's network must be one some `passkey` rule could admit (never anything
 * the client chooses, such as `rd`). The pre-session is a random id in an httpOnly, SameSite=Lax
 * cookie that lives 5 minutes; only its keyed hash binds the challenge. Every refusal after
 * admission gets one answer, as a wrong password does.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { checkPasskey, passwordlessAllowed } from '../auth/credential.js';
import { completeSignIn } from '../auth/login.js';
import { accountKey } from '../directory/source.js';
import { PRE_SESSION_MS, passwordlessOptions, preSessionKey } from '../auth/passwordless.js';
import { ERRORS } from '../errors.js';
import { readSessionCookie } from '../http/request-context.js';
import type { Ctx, Form, PortalContext } from './context.js';

/** What every refused passwordless sign-in is told (the reason is in the audit only). */
export const GENERIC_PASSKEY_ERROR = 'That passkey was not accepted.';

export function passwordlessRoutes(portal: PortalContext) {
  const { rt, ctx, csrfCookie, cookieOpts, csrfProblem, csrfRefused, session, setSession, rdOf } = portal;

  const preCookie = (c: Ctx) => (c.info.proto === 'https' ? '__Host-portcullis-pk' : 'portcullis_dev_pk');

  const json = (reply: FastifyReply, status: number, body: unknown, extra: Record<string, string> = {}) =>
    reply.code(status).headers({ 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...extra }).send(JSON.stringify(body));

  return async (req: FastifyRequest, reply: FastifyReply, f: Form): Promise<FastifyReply> => {
    const c = ctx(req, reply);
    if (!c) return reply;
    if (!c.cfg.webauthn?.passwordless) return json(reply, 404, { error: 'Not found' });
    const bad = csrfProblem(req, c, f.csrf, readSessionCookie(req.headers.cookie, csrfCookie(c)));
    if (bad) {
      void csrfRefused(reply, c, bad);
      return reply;
    }
    if (!rt.stores.healthy()) return json(reply, 503, { error: ERRORS.PC_STORE_UNAVAILABLE.message }, { 'retry-after': '5' });
    if (!passwordlessAllowed(rt, c.cfg, c.app, c.info.ip)) {
      rt.audit.record({ event: 'network_denied', ip: c.info.ip, app: c.app.name, outcome: 'denied', reason: 'passkey sign-in from a network no passkey rule admits (or lockdown)' });
      return json(reply, 403, { error: ERRORS.PC_NETWORK_DENIED.message });
    }

    if (f.op === 'passwordless-options') {
      // a fresh pre-session each time: an older challenge stays bound to the older id
      const id = rt.random.bytes(32).toString('base64url');
      reply.setCookie(preCookie(c), id, cookieOpts(c, PRE_SESSION_MS / 1000));
      const options = await passwordlessOptions(rt, c.cfg, preSessionKey(rt, id));
      return json(reply, 200, { options });
    }

    const pre = readSessionCookie(req.headers.cookie, preCookie(c));
    // spent whatever the outcome: one pre-session, one answer
    reply.clearCookie(preCookie(c), cookieOpts(c));
    const preKey = pre && /^[A-Za-z0-9_-]{43}$/.test(pre) ? preSessionKey(rt, pre) : '';
    const r = await checkPasskey(rt, c.cfg, { app: c.app, ip: c.info.ip, preKey, response: parseResponse(f.response) });
    switch (r.kind) {
      case 'network':
        return json(reply, 403, { error: ERRORS.PC_NETWORK_DENIED.message });
      case 'throttled':
        return json(reply, 429, { error: ERRORS.PC_THROTTLED.message }, { 'retry-after': String(r.retryAfterSec) });
      case 'fail':
        return json(reply, 401, { error: GENERIC_PASSKEY_ERROR });
      case 'ok':
        break;
    }
    await r.accept();
    // a new session id at sign-in, as after a password: whatever the browser had is discarded
    const old = await session(req, c);
    if (old) await rt.sessions.destroy(old);
    const rd = rdOf(c, f.then);
    const account = accountKey(r.user);
    let s = await rt.sessions.create({ user: account, amr: ['hwk'], pending: 'none', ip: c.info.ip, rd: rd ?? '/', scope: c.info.cookieDomain });
    // the passkey was proved just now: managing passkeys right after needs no second touch
    s = await rt.sessions.update(s, { factorAt: rt.clock.now(), hwkAt: rt.clock.now() });
    await completeSignIn(rt, c.cfg, { ip: c.info.ip, user: account, app: c.app.name, amr: s.rec.amr });
    setSession(reply, c, s);
    return json(reply, 200, { next: rd ?? '/' });
  };
}

/** The credential JSON the script posts; anything unparsable becomes null (and fails verification). */
export function parseResponse(raw: string | undefined): unknown {
  if (!raw || raw.length > 12_000) return null;
  try {
    const v: unknown = JSON.parse(raw);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}
