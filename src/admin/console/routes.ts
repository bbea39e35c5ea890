/**
 * The admin console on the admin listener, under `/console`: server-rendered pages for an operator
 * with a browser, doing what the CLI does through the admin API. This file is the plugin that
 * holds them together (body parsing, errors, the Host check, the 404); each page or action is
 * its own plugin over the shared context (context.ts), as the fastify docs split an application:
 *
 *   GET  /console/login            login.ts      the sign-in form (the admin token)
 *   POST /console/login            login.ts      a new console session and 303 to /console
 *   POST /console/logout           login.ts      ends the console session
 *   GET  /console                  dashboard.ts  the dashboard
 *   POST /console/unblock          unblock.ts    user=U | ip=IP
 *   POST /console/sessions/revoke  revoke.ts     handle=H | user=U
 *   POST /console/lockdown         lockdown.ts   state=on (with confirm=yes) | state=off
 *   POST /console/allow            allow.ts      op=add|remove, network=N, cidr="CIDR[ CIDR...]"
 *   GET  /console/users            users.ts      every user and their factors (?page=N, 200 a page)
 *   GET  /console/user?user=U      users.ts      one user's factors, sessions and blocks
 *   POST /console/user/revoke, /console/user/unblock, /console/user/totp-reset (confirm=yes),
 *        /console/user/passkey-remove (id=ID)     user-actions.ts   user=U, back to U's page
 *
 * Every POST needs an Origin of this console (when the browser sends one, as all current ones do
 * for a POST) and, once signed in, the session's CSRF token (action.ts); the session cookie is
 * HttpOnly and SameSite=Strict. Successful actions answer 303 back to the dashboard, which shows
 * what was done once (post/redirect/get); refused ones answer with the dashboard, the reason, and
 * a 4xx status.
 *
 * DNS rebinding: a page on a hostile name resolving to 127.0.0.1 would reach a loopback listener
 * as its own origin. So a request straight from a browser (not through `trusted_proxies`) must
 * name the console by address or as `localhost`; a TLS-terminating proxy in `trusted_proxies`
 * may use any host name, and its `X-Forwarded-Proto: https` makes the cookie `__Host-` and Secure.
 */
import fastifyCookie from '@fastify/cookie';
import fastifyFormbody from '@fastify/formbody';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { isPortcullisError } from '../../errors.js';
import type { Runtime } from '../../runtime.js';
import { allowRoutes } from './allow.js';
import { consoleContext, directHostOk, type ConsoleDeps } from './context.js';
import { dashboardRoutes } from './dashboard.js';
import { lockdownRoutes } from './lockdown.js';
import { loginRoutes } from './login.js';
import { revokeRoutes } from './revoke.js';
import { unblockRoutes } from './unblock.js';
import { userActionRoutes } from './user-actions.js';
import { usersRoutes } from './users.js';

export type { ConsoleDeps } from './context.js';

export function adminConsole(rt: Runtime, deps: ConsoleDeps): FastifyPluginAsync {
  const ctx = consoleContext(rt, deps);

  return async (app: FastifyInstance) => {
    await app.register(fastifyCookie);
    // The console posts HTML forms and nothing else: no JSON or text bodies here (415).
    app.removeAllContentTypeParsers();
    await app.register(fastifyFormbody);

    app.setErrorHandler((err, req, reply) => {
      let status = 500;
      if (isPortcullisError(err)) status = err.status;
      else {
        const s = (err as { statusCode?: number }).statusCode;
        if (s && s >= 400 && s < 500) status = s;
      }
      if (status >= 500) rt.logger.error({ err: (err as Error).message, url: req.routeOptions.url }, 'admin console request failed');
      const message = status === 415 ? 'The console accepts HTML form posts only.' : status < 500 ? 'The request could not be understood.' : 'Something went wrong; see the gateway log.';
      return ctx.page(reply, status, status < 500 ? 'Bad request' : 'Error', message);
    });

    // Every console request: the Host must be one a browser uses for this console directly, or
    // come from a trusted proxy (see the module comment on DNS rebinding).
    app.addHook('onRequest', async (req, reply) => {
      const info = ctx.infoOf(req);
      if (info.host === null || (!info.viaProxy && !directHostOk(info.host))) {
        return ctx.page(
          reply,
          421,
          'Wrong address',
          'Open the console by the admin listener’s address (for example http://127.0.0.1:9090/console), or through a TLS proxy listed in trusted_proxies.',
        );
      }
      return undefined;
    });

    await app.register(loginRoutes(ctx));
    await app.register(dashboardRoutes(ctx));
    await app.register(unblockRoutes(ctx));
    await app.register(revokeRoutes(ctx));
    await app.register(lockdownRoutes(ctx));
    await app.register(allowRoutes(ctx));
    await app.register(usersRoutes(ctx));
    await app.register(userActionRoutes(ctx));

    // unknown console paths: an HTML 404 (the listener's own 404 is JSON, for the API)
    app.all('/console/*', async (req, reply) => {
      const s = await ctx.current(req);
      return ctx.page(reply, 404, 'Not found', 'There is no such page in the console.', s);
    });
  };
}
