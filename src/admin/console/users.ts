/**
 * The user pages:
 *
 *   GET /console/users[?page=N]   every user of the users file, by name, USERS_PER_PAGE a page,
 *                                 with their factors (TOTP, passkeys, recovery codes, app
 *                                 passwords, familiar networks, active sessions)
 *   GET /console/user?user=NAME   one user: the same, their sessions and blocks, and the actions
 *                                 of user-actions.ts
 *
 * Bounded: a page reads the store for at most USERS_PER_PAGE users, a few at a time, however big
 * the users file is. A store that cannot be read costs its section, not the page.
 */
import type { FastifyInstance } from 'fastify';
import type { UserRecord } from '../../auth/users.js';
import { checkUserName } from '../../auth/users.js';
import type { Runtime } from '../../runtime.js';
import { listAppPasswords, listPasskeysOf, listSessions } from '../operations.js';
import type { ConsoleSession, Flash } from './console-sessions.js';
import { refuse, Refusal, type ConsoleContext } from './context.js';
import type { Part } from './pages.js';
import { userDetailPage, usersListPage, type UserFactors } from './user-pages.js';

export const USERS_PER_PAGE = 200;
/** Users whose factors are read at the same time (store round trips in flight). */
const READ_CONCURRENCY = 16;
const PAGE_RE = /^[1-9][0-9]{0,5}$/;

async function part<T>(rt: Runtime, what: string, f: () => Promise<T>): Promise<Part<T>> {
  try {
    return { ok: true, value: await f() };
  } catch (e) {
    rt.logger.error({ err: (e as Error).message }, `admin console: cannot read ${what}`);
    return { ok: false, error: `The ${what} cannot be read now (is the store reachable?).` };
  }
}

/** Everything the console shows of one user; `sessions` is their count of active sessions. */
async function factorsOf(rt: Runtime, u: UserRecord, sessions: number): Promise<UserFactors> {
  const st = rt.stores.state;
  const [totp, passkeys, recoveryCodes, appPasswords, networks] = await Promise.all([
    st.getTotp(u.name),
    listPasskeysOf(rt, u.name),
    st.countRecoveryCodes(u.name),
    listAppPasswords(rt, u.name),
    st.knownNetworks(u.name),
  ]);
  return {
    name: u.name,
    displayName: u.displayName,
    email: u.email,
    groups: u.groups,
    disabled: u.disabled,
    totp: totp ? { source: totp.source, since: new Date(totp.enrolledAt).toISOString() } : null,
    passkeys,
    recoveryCodes,
    appPasswords,
    familiarNetworks: networks.length,
    sessions,
  };
}

/** `f` over `items`, at most `n` at a time, results in order. */
async function mapLimited<T, R>(items: readonly T[], n: number, f: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

/** The user named by a form or query field: 400 when it is no user name, 404 when no such user. */
export function knownUser(rt: Runtime, name: unknown): UserRecord {
  if (typeof name !== 'string' || checkUserName(name) !== null) throw refuse(400, 'That is not a user name.');
  const u = rt.users.get(name);
  if (!u) throw refuse(404, `There is no user ${name} in the users file.`);
  return u;
}

export async function usersListBody(ctx: ConsoleContext, s: ConsoleSession, flash: Flash | null, page: number): Promise<string> {
  const rt = ctx.rt;
  const all = [...rt.users.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const pages = Math.max(1, Math.ceil(all.length / USERS_PER_PAGE));
  if (page > pages) throw refuse(404, `There is no page ${page} of users (there ${pages === 1 ? 'is 1' : `are ${pages}`}).`);
  const slice = all.slice((page - 1) * USERS_PER_PAGE, page * USERS_PER_PAGE);
  const rows = await part(rt, "users' factors", async () => {
    // one read of the session table for the whole page, counted by user
    const counts = new Map<string, number>();
    for (const { rec } of await rt.stores.sessions.list()) counts.set(rec.user, (counts.get(rec.user) ?? 0) + 1);
    return mapLimited(slice, READ_CONCURRENCY, (u) => factorsOf(rt, u, counts.get(u.name) ?? 0));
  });
  return usersListPage({ csrf: s.csrf, flash, page, pages, perPage: USERS_PER_PAGE, total: all.length, rows });
}

export async function userDetailBody(ctx: ConsoleContext, s: ConsoleSession, flash: Flash | null, u: UserRecord): Promise<string> {
  const rt = ctx.rt;
  const [sessions, blocks] = await Promise.all([
    part(rt, 'session list', () => listSessions(rt, u.name)),
    part(rt, 'block list', async () => (await rt.throttle.listBlocks()).filter((b) => b.user === u.name)),
  ]);
  const user = await part(rt, "user's factors", () => factorsOf(rt, u, sessions.ok ? sessions.value.length : 0));
  const entry = { name: u.name, displayName: u.displayName, email: u.email, groups: u.groups, disabled: u.disabled };
  return userDetailPage({ csrf: s.csrf, flash, user, entry, sessions, blocks });
}

export function usersRoutes(ctx: ConsoleContext) {
  return async (app: FastifyInstance) => {
    app.get('/console/users', async (req, reply) => {
      const s = await ctx.current(req);
      if (!s) return ctx.toLogin(reply);
      const q = (req.query ?? {}) as Record<string, unknown>;
      let page = 1;
      if (q.page !== undefined) {
        if (typeof q.page !== 'string' || !PAGE_RE.test(q.page)) return ctx.page(reply, 400, 'Bad request', 'A page is a number from 1.', s);
        page = Number(q.page);
      }
      const flash = s.flash;
      s.flash = null;
      try {
        return ctx.send(reply, 200, await usersListBody(ctx, s, flash, page));
      } catch (e) {
        if (e instanceof Refusal) return ctx.page(reply, e.status, 'Not found', e.message, s);
        throw e;
      }
    });

    app.get('/console/user', async (req, reply) => {
      const s = await ctx.current(req);
      if (!s) return ctx.toLogin(reply);
      const q = (req.query ?? {}) as Record<string, unknown>;
      let u: UserRecord;
      try {
        u = knownUser(ctx.rt, q.user);
      } catch (e) {
        if (!(e instanceof Refusal)) throw e;
        return ctx.page(reply, e.status, e.status === 404 ? 'Not found' : 'Bad request', e.message, s);
      }
      const flash = s.flash;
      s.flash = null;
      return ctx.send(reply, 200, await userDetailBody(ctx, s, flash, u));
    });
  };
}
