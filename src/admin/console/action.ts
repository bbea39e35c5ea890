/**
 * The shape of every console action (POST): Origin, session, form, CSRF token, then the action's
 * own `run`. Its flash is shown once on the dashboard it redirects to (post/redirect/get); a
 * Refusal (or a PortcullisError) is shown at once on the dashboard with its status.
 */
import type { FastifyInstance } from 'fastify';
import { isPortcullisError } from '../../errors.js';
import type { Actor } from '../operations.js';
import { sameSecret, type ConsoleSession, type Flash } from './console-sessions.js';
import { formOf, refuse, Refusal, type ConsoleContext, type Form } from './context.js';
import { dashboardView } from './dashboard.js';
import { dashboardPage } from './pages.js';

export type ActionRun = (f: Form, actor: Actor) => Promise<Flash>;

/** Where an action other than the dashboard's answers (the user pages): its own page, not `/console`. */
export interface ActionPages {
  /** The page a success redirects to (a path under /console). */
  back(f: Form): string;
  /** The page a refusal is shown on, with its flash. */
  refused(s: ConsoleSession, flash: Flash, f: Form): Promise<string>;
}

export function action(app: FastifyInstance, ctx: ConsoleContext, path: string, anchor: string, run: ActionRun, pages?: ActionPages): void {
  const rt = ctx.rt;
  app.post(path, async (req, reply) => {
    if (!ctx.originOk(req)) return ctx.forbidden(reply);
    const s = await ctx.current(req);
    if (!s) return ctx.toLogin(reply);
    const f = formOf(req.body);
    if (!f) return ctx.page(reply, 400, 'Bad request', 'The form could not be read.', s);
    if (!sameSecret(f.csrf, s.csrf)) return ctx.forbidden(reply, s);
    let flash: Flash;
    try {
      flash = await run(f, { ip: ctx.infoOf(req).ip });
    } catch (e) {
      let r: Refusal;
      if (e instanceof Refusal) r = e;
      else if (isPortcullisError(e)) r = refuse(e.status, e.message);
      else throw e;
      if (r.status >= 500) rt.logger.error({ path }, `admin console: ${r.flash.title}`);
      const body = pages ? await pages.refused(s, r.flash, f) : dashboardPage(await dashboardView(ctx, s, r.flash));
      return ctx.send(reply, r.status, body, r.status === 503 ? { 'retry-after': '5' } : {});
    }
    s.flash = flash;
    return reply.code(303).header('location', pages ? pages.back(f) : `/console#${anchor}`).send();
  });
}
