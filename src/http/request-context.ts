import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { CompiledConfig } from '../config/types.js';
import { resolveClient, validHost } from '../net/client-ip.js';
import { peerAddress } from '../net/listener.js';
import { sessionCookieFor } from '../session/sessions.js';
import { hostOnly, type GateRequest } from '../access/gate.js';

/** What the gateway knows about a request's origin, resolved once and attached to the request. */
export interface ClientInfo {
  cfg: CompiledConfig;
  ip: string;
  proto: 'http' | 'https';
  /**
   * The host the request is routed on: its Host header (lower case, port kept), which is also what
   * the app receives in X-Forwarded-Host. A trusted proxy's X-Forwarded-Host or Forwarded `host=`
   * is not used: the gateway routes on Host, and the app must be told the host that was judged.
   */
  host: string;
  /** The session cookie's name and Domain for this host (see sessionCookieFor). */
  cookieName: string;
  cookieDomain: string | null;
}

/** The client's address alone (forwarded headers believed only from trusted_proxies). */
export function clientAddress(req: IncomingMessage, cfg: CompiledConfig): string {
  return resolveClient(peerAddress(req.socket), req.headers, cfg.trustedProxies, (req.socket as TLSSocket).encrypted ? 'https' : 'http').ip;
}

export function clientInfo(req: IncomingMessage, cfg: CompiledConfig): ClientInfo {
  const ownProto = (req.socket as TLSSocket).encrypted ? 'https' : 'http';
  const f = resolveClient(peerAddress(req.socket), req.headers, cfg.trustedProxies, ownProto);
  const proto = f.proto ?? ownProto;
  const host = routedHost(req.headers.host);
  const cookie = sessionCookieFor(cfg.session, hostOnly(host) ?? '', proto === 'https');
  const info: ClientInfo = {
    cfg,
    ip: f.ip,
    proto,
    host,
    cookieName: cookie.name,
    cookieDomain: cookie.domain,
  };
  // not cached on the request object: adding a property to IncomingMessage would change its
  // shape and slow every later access to it inside node's http code
  return info;
}

/** The gate's view of a request that came in directly (proxy and WebSocket paths). */
export function gateRequestOf(req: IncomingMessage, info: ClientInfo, requestId?: string): GateRequest {
  return {
    method: req.method ?? 'GET',
    target: req.url ?? '/',
    host: req.headers.host,
    ip: info.ip,
    proto: info.proto,
    sessionId: readSessionCookie(req.headers.cookie, info.cookieName),
    sessionScope: sessionScopeOf(info),
    authorization: req.headers.authorization,
    requestId,
  };
}

/** The scope a session must have to count on this request: checked only when `session.domain` is set. */
export function sessionScopeOf(info: Pick<ClientInfo, 'cfg' | 'cookieDomain'>): string | null | undefined {
  return info.cfg.session.domain === null ? undefined : info.cookieDomain;
}

/** The Host header as routed (see ClientInfo.host); '' when there is none usable. */
export function routedHost(host: string | undefined): string {
  if (!host) return '';
  return validHost(host) ?? hostOnly(host) ?? '';
}

/**
 * The session cookie's value from a Cookie header: the one parser for the session cookie on every
 * path (proxy, WebSocket, forward-auth, portal).
 *
 * Pairs are split at `;`; a pair's name is the text before its first `=`, trimmed of spaces and
 * tabs only (RFC 6265bis; not of other Unicode spaces, so `\u00a0name` is another name), and
 * compared exactly (letter case matters); the value is trimmed the same way. A pair without `=`
 * is a nameless cookie and never the session. If the name occurs more than once (a second cookie
 * of that name from another Path or Domain, or one tossed in from a sibling host) the request has
 * no session: undefined, never one of the copies. Never throws.
 */
export function readSessionCookie(header: string | readonly string[] | undefined, name: string): string | undefined {
  if (header === undefined || name === '') return undefined;
  const h = typeof header === 'string' ? header : header.join('; ');
  if (!h.includes(name)) return undefined; // the common case, without splitting anything
  let found: string | undefined;
  let start = 0;
  // the next `=` at or after `start`, searched again only once passed (-1: none left): linear overall
  let eq = h.indexOf('=');
  while (start <= h.length) {
    let end = h.indexOf(';', start);
    if (end < 0) end = h.length;
    if (eq >= 0 && eq < start) eq = h.indexOf('=', start);
    if (eq >= 0 && eq < end && isName(h, start, eq, name)) {
      if (found !== undefined) return undefined;
      found = trimWsp(h, eq + 1, end);
    }
    start = end + 1;
  }
  return found;
}

/** Whether `s.slice(a, b)`, without leading and trailing spaces and tabs, is `name` (no copy made). */
function isName(s: string, a: number, b: number, name: string): boolean {
  while (a < b && (s.charCodeAt(a) === 0x20 || s.charCodeAt(a) === 0x09)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
  return b - a === name.length && s.startsWith(name, a);
}

/** `s.slice(a, b)` without leading and trailing spaces and tabs. */
function trimWsp(s: string, a: number, b: number): string {
  while (a < b && (s.charCodeAt(a) === 0x20 || s.charCodeAt(a) === 0x09)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
  return s.slice(a, b);
}

/**
 * Whether a request carries more than one Host field (RFC 9112 §3.2: answer 400). Node keeps the
 * first and drops the rest from `req.headers`, so only the raw list can tell.
 */
export function hasDuplicateHost(req: IncomingMessage): boolean {
  const raw = req.rawHeaders;
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!;
    if (k.length === 4 && k.toLowerCase() === 'host' && ++n > 1) return true;
  }
  return false;
}
