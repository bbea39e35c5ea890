/** POST /console/sessions/revoke (handle=H | user=U): end one session or all of a user's. */
import type { FastifyInstance } from 'fastify';
import { revokeSessions } from '../operations.js';
import { action } from './action.js';
import { exactlyOne, plural, type ConsoleContext } from './context.js';

export function revokeRoutes(ctx: ConsoleContext) {
  return async (app: FastifyInstance) => {
    action(app, ctx, '/console/sessions/revoke', 'sessions', async (f, actor) => {
      const which = exactlyOne(f, ['handle', 'user'] as const);
      const r = which === 'handle' ? await revokeSessions(ctx.rt, { handle: f.handle! }, actor) : await revokeSessions(ctx.rt, { user: f.user! }, actor);
      const whose = which === 'handle' ? `session ${f.handle}` : `the sessions of ${f.user}`;
      return {
        ok: true,
        title: `Revoked ${whose}: ${plural(r.revoked, 'session')} ended, ${plural(r.connectionsClosed, 'connection')} closed.`,
        lines: [],
      };
    });
  };
}
