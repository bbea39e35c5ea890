/**
 * What every console page and action shares: the client as the console sees it (address, scheme,
 * Host, cookie name), the console session, the Origin and CSRF checks, the form reader, and the
 * ways to answer (a page, a refusal, a redirect). Built once per console by `consoleContext`.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { resolveClient, validHost } from '../../net/client-ip.js';
import { parseIp } from '../../net/ip.js';
import type { ReloadOutcome, Runtime } from '../../runtime.js';
import type { AdminAuth } from '../auth.js';
import type { AdminToken } from '../token.js';
import { consoleCookieName, ConsoleSessions, type ConsoleSession, type Flash } from './console-sessions.js';
import { CONSOLE_HEADERS, messagePage } from './pages.js';
import { formOf as formOfBounded, type Form } from '../../util/form.js';

export interface ConsoleDeps {
  token: AdminToken;
  /** The admin listener's per-source limiter on failed token checks (shared with the API). */
  auth: AdminAuth;
  /** Gateway.reload; without it an allowlist edit is written and left to the file watcher. */
  reload?: ((trigger: string) => Promise<ReloadOutcome>) | undefined;
  /** Default: a fresh table on `rt.clock` and `rt.random`. */
  sessions?: ConsoleSessions;
}

const MAX_FIELD = 1024;

export type { Form } from '../../util/form.js';

export interface ReqInfo {
  ip: string;
  proto: 'http' | 'https';
  /** Host the browser addressed (lower case, with port), or null when missing or malformed. */
  host: string | null;
  viaProxy: boolean;
  cookie: string;
}

/** A refusal shown on the dashboard with a 4xx/5xx status. */
export class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly flash: Flash,
  ) {
    super(flash.title);
  }
}

export function refuse(status: number, title: string, lines: string[] = []): Refusal {
  return new Refusal(status, { ok: false, title, lines });
}

/** The posted form with every field a single bounded string; null for repeated or oversized fields. */
export function formOf(body: unknown): Form | null {
  return formOfBounded(body, MAX_FIELD);
}

/** Exactly one of `keys` is a non-empty field of `f`. */
export function exactlyOne<K extends string>(f: Form, keys: readonly K[]): K {
  const present = keys.filter((k) => (f[k] ?? '') !== '');
  if (present.length !== 1) throw refuse(400, `Give exactly one of ${keys.join(', ')}.`);
  return present[0]!;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** A Host a browser uses for the console directly: an IP address literal or `localhost`, with any port. */
export function directHostOk(host: string): boolean {
  if (host.startsWith('[')) return true; // a bracketed IPv6 literal (validHost checked it)
  const colon = host.indexOf(':');
  const name = colon < 0 ? host : host.slice(0, colon);
  return name === 'localhost' || parseIp(name)?.family === 4;
}

export interface ConsoleContext {
  rt: Runtime;
  deps: ConsoleDeps;
  sessions: ConsoleSessions;
  /** The client as the console sees it (computed once per request). */
  infoOf(req: FastifyRequest): ReqInfo;
  send(reply: FastifyReply, status: number, body: string, extra?: Record<string, string>): FastifyReply;
  /** A message page, linking back to the console (signed in) or to the sign-in form. */
  page(reply: FastifyReply, status: number, title: string, message: string, signedIn?: ConsoleSession | null): FastifyReply;
  /** 403: a form not sent from this console, or expired. */
  forbidden(reply: FastifyReply, s?: ConsoleSession | null): FastifyReply;
  /** Whether the request's Origin (or Sec-Fetch-Site) is this console. */
  originOk(req: FastifyRequest): boolean;
  /** The caller's live console session; ends sessions opened with a token that is no longer the token. */
  current(req: FastifyRequest): Promise<ConsoleSession | null>;
  cookieOpts(req: FastifyRequest): { path: string; httpOnly: boolean; sameSite: 'strict'; secure: boolean };
  toLogin(reply: FastifyReply): FastifyReply;
}

export function consoleContext(rt: Runtime, deps: ConsoleDeps): ConsoleContext {
  const sessions = deps.sessions ?? new ConsoleSessions({ clock: rt.clock, random: rt.random });
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

  return { rt, deps, sessions, infoOf, send, page, forbidden, originOk, current, cookieOpts, toLogin };
}
