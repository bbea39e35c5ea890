/**
 * The actions of a user's page (users.ts), each the admin API's own operation (operations.ts)
 * behind the console's action shape (action.ts: Origin, session, CSRF token), answering with the
 * user's page:
 *
 *   POST /console/user/revoke          user=U            end every session of U
 *   POST /console/user/unblock         user=U            lift the blocks on account U
 *   POST /console/user/totp-reset      user=U confirm=yes forget U's TOTP device and recovery codes
 *   POST /console/user/passkey-remove  user=U id=ID      remove one of U's passkeys
 *
 * U must be a user of the users file (404 otherwise).
 */
import type { FastifyInstance } from 'fastify';
import { removePasskeyOf, resetTotp, revokeSessions, unblock } from '../operations.js';
import { action, type ActionPages } from './action.js';
import { plural, refuse, type ConsoleContext } from './context.js';
import { userHref } from './user-pages.js';
import { knownUser, userDetailBody, usersListBody } from './users.js';

export function userActionRoutes(ctx: ConsoleContext) {
  const rt = ctx.rt;
  const pages: ActionPages = {
    back: (f) => `${userHref(f.user!)}#factors`,
    refused: async (s, flash, f) => {
      const u = typeof f.user === 'string' ? rt.users.get(f.user) : undefined;
      return u ? userDetailBody(ctx, s, flash, u) : usersListBody(ctx, s, flash, 1);
    },
  };

  return async (app: FastifyInstance) => {
    action(
      app,
      ctx,
      '/console/user/revoke',
      'sessions',
      async (f, actor) => {
        const u = knownUser(rt, f.user);
        const r = await revokeSessions(rt, { user: u.name }, actor);
        return { ok: true, title: `Revoked the sessions of ${u.name}: ${plural(r.revoked, 'session')} ended, ${plural(r.connectionsClosed, 'connection')} closed.`, lines: [] };
      },
      pages,
    );

    action(
      app,
      ctx,
      '/console/user/unblock',
      'blocks',
      async (f, actor) => {
        const u = knownUser(rt, f.user);
        const r = await unblock(rt, { user: u.name }, actor);
        return r.lifted > 0
          ? { ok: true, title: `Lifted ${plural(r.lifted, 'block')} on account ${u.name}.`, lines: [] }
          : { ok: true, title: `Nothing was blocked on account ${u.name}; its failure counts were reset.`, lines: [] };
      },
      pages,
    );

    action(
      app,
      ctx,
      '/console/user/totp-reset',
      'factors',
      async (f, actor) => {
        const u = knownUser(rt, f.user);
        if (f.confirm !== 'yes') throw refuse(400, 'Tick the box to confirm the TOTP reset.');
        const r = await resetTotp(rt, u.name, actor);
        return {
          ok: true,
          title: r.hadDevice
            ? `Reset the TOTP of ${u.name}: device and recovery codes forgotten, ${plural(r.sessionsRevoked, 'session')} ended.`
            : `${u.name} had no TOTP device; recovery codes forgotten, ${plural(r.sessionsRevoked, 'session')} ended.`,
          lines: [],
        };
      },
      pages,
    );

    action(
      app,
      ctx,
      '/console/user/passkey-remove',
      'factors',
      async (f, actor) => {
        const u = knownUser(rt, f.user);
        const id = f.id ?? '';
        const name = (await rt.stores.state.listPasskeys(u.name)).find((p) => p.id === id)?.name;
        const r = await removePasskeyOf(rt, u.name, id, actor);
        return { ok: true, title: `Removed the passkey ${name ?? ''} of ${u.name}; ${plural(r.sessionsRevoked, 'session')} ended.`, lines: [] };
      },
      pages,
    );
  };
}
