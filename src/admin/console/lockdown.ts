/** POST /console/lockdown (state=on with confirm=yes | state=off): turn lockdown on or off. */
import type { FastifyInstance } from 'fastify';
import { setLockdown } from '../../access/lockdown.js';
import { action } from './action.js';
import { plural, refuse, type ConsoleContext } from './context.js';

const LOCKDOWN_BY = 'admin-console';

export function lockdownRoutes(ctx: ConsoleContext) {
  return async (app: FastifyInstance) => {
    action(app, ctx, '/console/lockdown', 'lockdown', async (f, actor) => {
      const state = f.state;
      if (state !== 'on' && state !== 'off') throw refuse(400, 'Choose lockdown on or off.');
      if (state === 'on' && f.confirm !== 'yes') throw refuse(400, 'Lockdown was not turned on: tick the box to confirm that every session ends.');
      const r = await setLockdown(ctx.rt, state === 'on', LOCKDOWN_BY, { ip: actor.ip });
      if (state === 'off') {
        return { ok: true, title: r.changed ? 'Lockdown is off: access is restored.' : 'Lockdown was already off.', lines: [] };
      }
      return {
        ok: true,
        title: r.changed ? 'Lockdown is on.' : 'Lockdown was already on; every session was ended again.',
        lines: [`${plural(r.sessionsRevoked, 'session')} revoked, ${plural(r.connectionsClosed, 'connection')} closed.`],
      };
    });
  };
}
