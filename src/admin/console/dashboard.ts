/**
 * The dashboard, GET /console: lockdown, recent attempts, the most attacked accounts and sources,
 * failure charts, blocks, sessions and the allowlists. A section whose store cannot be read says
 * so; the others still show. A flash left by the last action is shown once.
 */
import type { FastifyInstance } from 'fastify';
import { lockdownStatus } from '../../access/lockdown.js';
import { listSessions } from '../operations.js';
import { barChart } from './chart.js';
import type { ConsoleSession, Flash } from './console-sessions.js';
import type { ConsoleContext } from './context.js';
import { dashboardPage, type DashboardView, type Part } from './pages.js';
import { failureSeries, mostAttacked, recentAttempts } from './stats.js';

const MAX_ATTEMPT_ROWS = 50;
const MAX_TARGET_ROWS = 10;
const MAX_SESSION_ROWS = 200;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

function hhmm(ms: number): string {
  return new Date(ms).toISOString().slice(11, 16);
}

/** Everything the dashboard shows, read now. */
export async function dashboardView(ctx: ConsoleContext, s: ConsoleSession, flash: Flash | null): Promise<DashboardView> {
  const rt = ctx.rt;
  async function part<T>(what: string, f: () => Promise<T>): Promise<Part<T>> {
    try {
      return { ok: true, value: await f() };
    } catch (e) {
      rt.logger.error({ err: (e as Error).message }, `admin console: cannot read ${what}`);
      return { ok: false, error: `The ${what} cannot be read now (is the store reachable?). Other sections still work.` };
    }
  }

  const now = rt.clock.now();
  const cfg = rt.config;
  const events = rt.audit.recent(Number.MAX_SAFE_INTEGER);
  const { accounts, sources } = mostAttacked(events, MAX_TARGET_ROWS);
  const perMinute = failureSeries(events, now, MINUTE, 60);
  const perHour = failureSeries(events, now, HOUR, 24);
  const [blocks, sessionList] = await Promise.all([
    part('block list', () => rt.throttle.listBlocks()),
    part('session list', async () => {
      const all = await listSessions(rt);
      return { rows: all.reverse().slice(0, MAX_SESSION_ROWS), total: all.length };
    }),
  ]);
  return {
    csrf: s.csrf,
    flash,
    lockdown: lockdownStatus(rt),
    attempts: recentAttempts(events, MAX_ATTEMPT_ROWS),
    ring: { events: events.length, since: events[0]?.ts ?? null },
    accounts,
    sources,
    charts: [
      {
        heading: 'Per minute, last hour',
        svg: barChart({ id: 'chart-hour', title: 'Failed attempts per minute, last hour (UTC)', series: perMinute, label: hhmm, labelEvery: 10, unit: 'minute' }),
      },
      {
        heading: 'Per hour, last 24 hours',
        svg: barChart({ id: 'chart-day', title: 'Failed attempts per hour, last 24 hours (UTC)', series: perHour, label: hhmm, labelEvery: 3, unit: 'hour' }),
      },
    ],
    blocks,
    sessions: sessionList,
    networks: [...cfg.networks].map(([name, set]) => ({ name, cidrs: set.toStrings() })),
    configFile: cfg.file,
  };
}

export function dashboardRoutes(ctx: ConsoleContext) {
  return async (app: FastifyInstance) => {
    app.get('/console', async (req, reply) => {
      const s = await ctx.current(req);
      if (!s) return ctx.toLogin(reply);
      const flash = s.flash;
      s.flash = null;
      return ctx.send(reply, 200, dashboardPage(await dashboardView(ctx, s, flash)));
    });
  };
}
