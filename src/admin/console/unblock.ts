/** POST /console/unblock (user=U | ip=IP): lift the blocks on an account or a source. */
import type { FastifyInstance } from 'fastify';
import { unblock } from '../operations.js';
import { action } from './action.js';
import { exactlyOne, plural, type ConsoleContext } from './context.js';

export function unblockRoutes(ctx: ConsoleContext) {
  return async (app: FastifyInstance) => {
    action(app, ctx, '/console/unblock', 'blocks', async (f, actor) => {
      const which = exactlyOne(f, ['user', 'ip'] as const);
      const value = f[which]!;
      const r = await unblock(ctx.rt, which === 'user' ? { user: value } : { ip: value }, actor);
      const what = which === 'user' ? `account ${value}` : `source ${value}`;
      return r.lifted > 0
        ? { ok: true, title: `Lifted ${plural(r.lifted, 'block')} on ${what}.`, lines: [] }
        : { ok: true, title: `Nothing was blocked on ${what} any more (the block may have lapsed); its failure counts were reset.`, lines: [] };
    });
  };
}
