/**
 * The admin console on the admin listener, under `/console`: server-rendered pages for an operator
 * with a browser, doing what the CLI does through the admin API.
 *
 *   GET  /console/login            the sign-in form (the admin token)
 *   POST /console/login            token checked in constant time by AdminToken, failures counted
 *                                  per source by the same AdminAuth limiter as the API; on success
 *                                  a new console session and 303 to /console
 *   POST /console/logout           ends the console session
 *   GET  /console                  the dashboard
 *   POST /console/unblock          user=U | ip=IP
 *   POST /console/sessions/revoke  handle=H | user=U
 *   POST /console/lockdown         state=on (with confirm=yes) | state=off
 *   POST /console/allow            op=add|remove, network=N, cidr="CIDR[ CIDR...]"
 *
 * Every POST needs an Origin of this console (when the browser sends one, as all current ones do
 * for a POST) and, once signed in, the session's CSRF token; the session cookie is HttpOnly and
 * SameSite=Strict. Successful actions answer 303 back to the dashboard, which shows what was done
 * once (post/redirect/get); refused ones answer with the dashboard, the reason, and a 4xx status.
 *
 * DNS rebinding: a page on a hostile name resolving to 127.0.0.1 would reach a loopback listener
 * as its own origin. So a request straight from a browser (not through `trusted_proxies`) must
 * name the console by address or as `localhost`; a TLS-terminating proxy in `trusted_proxies`
 * may use any host name, and its `X-Forwarded-Proto: https` makes the cookie `__Host-` and Secure.
 *
 * Allowlist edits go through `config/edit.ts` (`editConfigFile`: the CLI's validated in-place
 * editor, its lock and atomic write), then the gateway's reload, whose outcome is shown.
 */
import type { ReloadOutcome } from '../../runtime.js';
import fastifyCookie from '@fastify/cookie';
import fastifyFormbody from '@fastify/formbody';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { editConfigFile, type NetworkEdit } from '../../config/edit.js';
import { formatIssues } from '../../config/load.js';
import { isPortcullisError } from '../../errors.js';
import { resolveClient, validHost } from '../../net/client-ip.js';
import { parseIp } from '../../net/ip.js';
import type { Runtime } from '../../runtime.js';
import type { AdminAuth } from '../auth.js';
import { lockdownStatus, setLockdown } from '../../access/lockdown.js';
import { listSessions, revokeSessions, unblock, type Actor } from '../operations.js';
import type { AdminToken } from '../token.js';
import { barChart } from './chart.js';
import { consoleCookieName, ConsoleSessions, sameSecret, type ConsoleSession, type Flash } from './console-sessions.js';
import { CONSOLE_HEADERS, dashboardPage, loginPage, messagePage, type DashboardView, type Part } from './pages.js';
import { failureSeries, mostAttacked, recentAttempts } from './stats.js';

export interface ConsoleDeps {
  token: AdminToken;
  /** The admin listener's per-source limiter on failed token checks (shared with the API). */
  auth: AdminAuth;
  /** Gateway.reload; without it an allowlist edit is written and left to the file watcher. */
  reload?: ((trigger: string) => Promise<ReloadOutcome>) | undefined;
  /** Default: a fresh table on `rt.clock` and `rt.random`. */
  sessions?: ConsoleSessions;
}

const RELOAD_TRIGGER = 'admin console';
const LOCKDOWN_BY = 'admin-console';
const MAX_ATTEMPT_ROWS = 50;
const MAX_TARGET_ROWS = 10;
const MAX_SESSION_ROWS = 200;
const MAX_CIDRS = 64;
const MAX_FIELD = 1024;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

type Form = Record<string, string | undefined>;

interface ReqInfo {
  ip: string;
  proto: 'http' | 'https';
  /** Host the browser addressed (lower case, with port), or null when missing or malformed. */
  host: string | null;
  viaProxy: boolean;
  cookie: string;
}

/** A refusal shown on the dashboard with a 4xx/5xx status. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly flash: Flash,
  ) {
    super(flash.title);
  }
}

function refuse(status: number, title: string, lines: string[] = []): Refusal {
  return new Refusal(status, { ok: false, title, lines });
}

/** The posted form with every field a single bounded string; null for repeated or oversized fields. */
function formOf(body: unknown): Form | null {
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) return null;
  const out: Form = {};
  for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
    if (typeof v !== 'string' || v.length > MAX_FIELD) return null;
    out[k] = v;
  }
  return out;
}

/** Exactly one of `keys` is a non-empty field of `f`. */
function exactlyOne<K extends string>(f: Form, keys: readonly K[]): K {
  const present = keys.filter((k) => (f[k] ?? '') !== '');
  if (present.length !== 1) throw refuse(400, `Give exactly one of ${keys.join(', ')}.`);
  return present[0]!;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** A Host a browser uses for the console directly: an IP address literal or `localhost`, with any port. */
function directHostOk(host: string): boolean {
  if (host.startsWith('[')) return true; // a bracketed IPv6 literal (validHost checked it)
  const colon = host.indexOf(':');
  const name = colon < 0 ? host : host.slice(0, colon);
  return name === 'localhost' || parseIp(name)?.family === 4;
}

function hhmm(ms: number): string {
  return new Date(ms).toISOString().slice(11, 16);
}

export function adminConsole(rt: Runtime, deps: ConsoleDeps): FastifyPluginAsync {
  const sessions = deps.sessions ?? new ConsoleSessions({ clock: rt.clock, random: rt.random });

  return async (app: FastifyInstance) => {
    await app.register(fastifyCookie);
    // The console posts HTML forms and nothing else: no JSON or text bodies here (415).
    app.removeAllContentTypeParsers();
    await app.register(fastifyFormbody);

    const infos = new WeakMap<object, ReqInfo>();
    function infoOf(req: FastifyRequest): ReqInfo {
      const have = infos.get(req.raw);
      if (have) return have;
      // The admin listener speaks plain HTTP; only a trusted proxy can say the browser used TLS.
      const f = resolveClient(req.ip, req.headers, rt.config.trustedProxies, 'http');
      const proto = f.proto ?? 'http';
      const info: ReqInfo = {
        ip: f.ip,
        proto,
        host: f.host ?? validHost(req.headers.host ?? ''),
        viaProxy: f.viaTrustedProxy,
        cookie: consoleCookieName(proto === 'https'),
      };
      infos.set(req.raw, info);
      return info;
    }

    const send = (reply: FastifyReply, status: number, body: string, extra: Record<string, string> = {}) =>
      reply.code(status).headers({ ...CONSOLE_HEADERS, ...extra }).send(body);

    const page = (reply: FastifyReply, status: number, title: string, message: string, signedIn: ConsoleSession | null = null) =>
      send(
        reply,
        status,
        messagePage(title, message, {
          signedIn: signedIn ? { csrf: signedIn.csrf } : null,
          link: signedIn ? { href: '/console', text: 'Back to the console' } : { href: '/console/login', text: 'Sign in' },
        }),
      );

    const forbidden = (reply: FastifyReply, s: ConsoleSession | null = null) =>
      page(reply, 403, 'Refused', 'This form was not sent from this console, or it has expired. Reload the console and try again.', s);

    app.setErrorHandler((err, req, reply) => {
      let status = 500;
      if (isPortcullisError(err)) status = err.status;
      else {
        const s = (err as { statusCode?: number }).statusCode;
        if (s && s >= 400 && s < 500) status = s;
      }
      if (status >= 500) rt.logger.error({ err: (err as Error).message, url: req.routeOptions.url }, 'admin console request failed');
      const message = status === 415 ? 'The console accepts HTML form posts only.' : status < 500 ? 'The request could not be understood.' : 'Something went wrong; see the gateway log.';
      return page(reply, status, status < 500 ? 'Bad request' : 'Error', message);
    });

    // Every console request: the Host must be one a browser uses for this console directly, or
    // come from a trusted proxy (see the module comment on DNS rebinding).
    app.addHook('onRequest', async (req, reply) => {
      const info = infoOf(req);
      if (info.host === null || (!info.viaProxy && !directHostOk(info.host))) {
        return page(
          reply,
          421,
          'Wrong address',
          'Open the console by the admin listener’s address (for example http://127.0.0.1:9090/console), or through a TLS proxy listed in trusted_proxies.',
        );
      }
      return undefined;
    });

    function originOk(req: FastifyRequest): boolean {
      const info = infoOf(req);
      const origin = req.headers.origin;
      if (origin === undefined) {
        // No Origin (an old browser, or not a browser): what it says about the site must agree.
        const site = req.headers['sec-fetch-site'];
        return site === undefined || site === 'same-origin';
      }
      if (typeof origin !== 'string' || info.host === null) return false;
      try {
        return new URL(origin).origin === new URL(`${info.proto}://${info.host}`).origin;
      } catch {
        return false; // includes `Origin: null` (sandboxed frames, data: URLs)
      }
    }

    /** The caller's live console session; ends sessions opened with a token that is no longer the token. */
    async function current(req: FastifyRequest): Promise<ConsoleSession | null> {
      const s = sessions.lookup(req.cookies[infoOf(req).cookie]);
      if (!s) return null;
      await deps.token.refresh();
      if (!deps.token.matches(s.token)) {
        sessions.destroy(s);
        rt.logger.info({ admin: s.ip }, 'admin console: the admin token changed; a console session opened with the old one ended');
        return null;
      }
      return s;
    }

    function cookieOpts(req: FastifyRequest) {
      return { path: '/', httpOnly: true, sameSite: 'strict' as const, secure: infoOf(req).proto === 'https' };
    }

    const toLogin = (reply: FastifyReply) => reply.code(303).header('location', '/console/login').send();

    // ---------- sign-in ----------

    app.get('/console/login', async (req, reply) => {
      if (await current(req)) return reply.code(303).header('location', '/console').send();
      return send(reply, 200, loginPage());
    });

    app.post('/console/login', async (req, reply) => {
      if (!originOk(req)) return forbidden(reply);
      const f = formOf(req.body);
      if (!f) return page(reply, 400, 'Bad request', 'The sign-in form could not be read.');
      const info = infoOf(req);
      const presented = (f.token ?? '').trim();
      const v = await deps.auth.check(info.ip, `Bearer ${presented}`);
      if (!v.ok) {
        if (v.code === 'PC_THROTTLED') {
          return send(reply, 429, loginPage({ error: `Too many failed attempts from this address. Try again in ${v.retryAfterSec} s.` }), {
            'retry-after': String(v.retryAfterSec),
          });
        }
        return send(reply, 401, loginPage({ error: presented === '' ? 'Enter the admin token.' : 'That is not the admin token.' }));
      }
      // a new id at every sign-in: whatever session the browser held is discarded (no fixation)
      const old = sessions.lookup(req.cookies[info.cookie]);
      if (old) sessions.destroy(old);
      const { id, session } = sessions.create(info.ip, presented);
      rt.logger.info({ admin: info.ip }, 'admin console: signed in');
      reply.setCookie(info.cookie, id, { ...cookieOpts(req), maxAge: sessions.cookieMaxAgeSec(session) });
      return reply.code(303).header('location', '/console').send();
    });

    app.post('/console/logout', async (req, reply) => {
      if (!originOk(req)) return forbidden(reply);
      const s = await current(req);
      if (!s) return toLogin(reply);
      const f = formOf(req.body);
      if (!f || !sameSecret(f.csrf, s.csrf)) return forbidden(reply, s);
      sessions.destroy(s);
      rt.logger.info({ admin: infoOf(req).ip }, 'admin console: signed out');
      reply.clearCookie(infoOf(req).cookie, cookieOpts(req));
      return toLogin(reply);
    });

    // ---------- dashboard ----------

    async function part<T>(what: string, f: () => Promise<T>): Promise<Part<T>> {
      try {
        return { ok: true, value: await f() };
      } catch (e) {
        rt.logger.error({ err: (e as Error).message }, `admin console: cannot read ${what}`);
        return { ok: false, error: `The ${what} cannot be read now (is the store reachable?). Other sections still work.` };
      }
    }

    async function view(s: ConsoleSession, flash: Flash | null): Promise<DashboardView> {
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

    app.get('/console', async (req, reply) => {
      const s = await current(req);
      if (!s) return toLogin(reply);
      const flash = s.flash;
      s.flash = null;
      return send(reply, 200, dashboardPage(await view(s, flash)));
    });

    // ---------- actions ----------

    /**
     * A POST action: Origin, session, form, CSRF token, then `run`. Its flash is shown once on the
     * dashboard it redirects to; a Refusal (or a PortcullisError) is shown at once with its status.
     */
    function action(path: string, anchor: string, run: (f: Form, actor: Actor) => Promise<Flash>): void {
      app.post(path, async (req, reply) => {
        if (!originOk(req)) return forbidden(reply);
        const s = await current(req);
        if (!s) return toLogin(reply);
        const f = formOf(req.body);
        if (!f) return page(reply, 400, 'Bad request', 'The form could not be read.', s);
        if (!sameSecret(f.csrf, s.csrf)) return forbidden(reply, s);
        let flash: Flash;
        try {
          flash = await run(f, { ip: infoOf(req).ip });
        } catch (e) {
          let r: Refusal;
          if (e instanceof Refusal) r = e;
          else if (isPortcullisError(e)) r = refuse(e.status, e.message);
          else throw e;
          if (r.status >= 500) rt.logger.error({ path }, `admin console: ${r.flash.title}`);
          return send(reply, r.status, dashboardPage(await view(s, r.flash)), r.status === 503 ? { 'retry-after': '5' } : {});
        }
        s.flash = flash;
        return reply.code(303).header('location', `/console#${anchor}`).send();
      });
    }

    action('/console/unblock', 'blocks', async (f, actor) => {
      const which = exactlyOne(f, ['user', 'ip'] as const);
      const value = f[which]!;
      const r = await unblock(rt, which === 'user' ? { user: value } : { ip: value }, actor);
      const what = which === 'user' ? `account ${value}` : `source ${value}`;
      return r.lifted > 0
        ? { ok: true, title: `Lifted ${plural(r.lifted, 'block')} on ${what}.`, lines: [] }
        : { ok: true, title: `Nothing was blocked on ${what} any more (the block may have lapsed); its failure counts were reset.`, lines: [] };
    });

    action('/console/sessions/revoke', 'sessions', async (f, actor) => {
      const which = exactlyOne(f, ['handle', 'user'] as const);
      const r = which === 'handle' ? await revokeSessions(rt, { handle: f.handle! }, actor) : await revokeSessions(rt, { user: f.user! }, actor);
      const whose = which === 'handle' ? `session ${f.handle}` : `the sessions of ${f.user}`;
      return {
        ok: true,
        title: `Revoked ${whose}: ${plural(r.revoked, 'session')} ended, ${plural(r.connectionsClosed, 'connection')} closed.`,
        lines: [],
      };
    });

    action('/console/lockdown', 'lockdown', async (f, actor) => {
      const state = f.state;
      if (state !== 'on' && state !== 'off') throw refuse(400, 'Choose lockdown on or off.');
      if (state === 'on' && f.confirm !== 'yes') throw refuse(400, 'Lockdown was not turned on: tick the box to confirm that every session ends.');
      const r = await setLockdown(rt, state === 'on', LOCKDOWN_BY, { ip: actor.ip });
      if (state === 'off') {
        return { ok: true, title: r.changed ? 'Lockdown is off: access is restored.' : 'Lockdown was already off.', lines: [] };
      }
      return {
        ok: true,
        title: r.changed ? 'Lockdown is on.' : 'Lockdown was already on; every session was ended again.',
        lines: [`${plural(r.sessionsRevoked, 'session')} revoked, ${plural(r.connectionsClosed, 'connection')} closed.`],
      };
    });

    action('/console/allow', 'allowlists', async (f) => {
      const kind = f.op;
      if (kind !== 'add' && kind !== 'remove') throw refuse(400, 'Choose to add or remove.');
      const network = (f.network ?? '').trim();
      const cidrs = (f.cidr ?? '').split(/[\s,]+/).filter((c) => c !== '');
      if (network === '' || cidrs.length === 0) throw refuse(400, 'Name a network and at least one address or CIDR.');
      if (cidrs.length > MAX_CIDRS) throw refuse(400, `At most ${MAX_CIDRS} ranges at once.`);
      const cfg = rt.config;
      const op: NetworkEdit = { kind, network, cidrs };
      let r;
      try {
        r = await editConfigFile(cfg.file, op, { cwd: cfg.baseDir });
      } catch (e) {
        if (isPortcullisError(e)) throw e;
        const code = (e as NodeJS.ErrnoException).code;
        const why = code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'ENOENT' ? 'no such file' : (e as Error).message;
        throw refuse(500, `Nothing changed: ${cfg.file} cannot be edited (${why}).`);
      }
      if (!r.ok) throw refuse(400, r.message, r.issues.length > 0 ? formatIssues(r.issues).split('\n') : []);

      const lines: string[] = [];
      if (r.unchanged.length > 0) lines.push(`${network} already has ${r.unchanged.join(', ')}.`);
      lines.push(...r.notes);
      if (r.reformatted) lines.push('The layout of the file could not be kept exactly around this edit; its comments are kept.');
      if (!r.written) return { ok: true, title: `Nothing to change in ${network}.`, lines };
      const did =
        kind === 'add'
          ? `${r.created ? `Created network ${network} with` : `Added to ${network}:`} ${r.changed.join(', ')}.`
          : `Removed from ${network}: ${r.changed.join(', ')}.`;
      rt.logger.info({ network, kind, cidrs: r.changed }, 'admin console: allowlist edited');
      const applied = await applyNow();
      if (!applied.ok) return { ok: false, title: `${did} The file was written, but ${applied.message}`, lines };
      lines.push(applied.message);
      return { ok: true, title: did, lines };
    });

    /** Reload through the gateway and report its outcome (from the audit trail, as the API does). */
    async function applyNow(): Promise<{ ok: boolean; message: string }> {
      if (!deps.reload) return { ok: true, message: 'The running gateway applies it when it notices the changed file.' };
      const o = await deps.reload(RELOAD_TRIGGER);
      if (!o.ok) return { ok: false, message: `the gateway refused to reload and keeps its running configuration: ${o.reason}` };
      return { ok: true, message: 'The running gateway has applied it.' };
    }

    // unknown console paths: an HTML 404 (the listener's own 404 is JSON, for the API)
    app.all('/console/*', async (req, reply) => {
      const s = await current(req);
      return page(reply, 404, 'Not found', 'There is no such page in the console.', s);
    });
  };
}

