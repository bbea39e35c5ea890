/**
 * The sign-in portal under /.portcullis/: login, second factor, enrolment, password change,
 * logout. Thin HTTP glue over src/auth/login.ts. Every POST is CSRF-protected: before sign-in
 * by a double-submit cookie, after it by the session's own token; and the Origin, when sent,
 * must be this host.
 *
 * This file only registers the pages; each page or step is its own plugin over the shared
 * context (context.ts), as the admin console is split:
 *
 *   GET|POST /.portcullis/login      login.ts     the password form, the first step
 *   GET|POST /.portcullis/mfa        mfa.ts       the second factor (a step, or a step-up)
 *   GET|POST /.portcullis/enrol      enrol.ts     authenticator enrolment (a step, or self-service)
 *   GET      /.portcullis/account    account.ts   the account page
 *   GET|POST /.portcullis/password   password.ts  the password change (a step, or self-service)
 *   GET|POST /.portcullis/logout     logout.ts    signing out (here, or everywhere)
 *   GET|POST /.portcullis/passkey    passkey.ts   passkeys: sign-in, step-up, register, rename, remove
 *
 * The shared portal host (`session.portal`) and `session.domain` are handled in portal-host.ts.
 */
import type { FastifyInstance } from 'fastify';
import type { Runtime } from '../runtime.js';
import { accountRoutes } from './account.js';
import { portalContext } from './context.js';
import { enrolRoutes } from './enrol.js';
import { loginRoutes } from './login.js';
import { logoutRoutes } from './logout.js';
import { mfaRoutes } from './mfa.js';
import { passwordRoutes } from './password.js';
import { passkeyRoutes } from './passkey.js';

export function portalRoutes(rt: Runtime) {
  const portal = portalContext(rt);
  return async function (app: FastifyInstance): Promise<void> {
    await app.register(loginRoutes(portal));
    await app.register(mfaRoutes(portal));
    await app.register(enrolRoutes(portal));
    await app.register(accountRoutes(portal));
    await app.register(passwordRoutes(portal));
    await app.register(logoutRoutes(portal));
    await app.register(passkeyRoutes(portal));
  };
}
