/**
 * Header hygiene between client, gateway and app. Pure functions, run once per request.
 */
import type { IdentityHeaders } from '../access/types.js';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { ClientInfo } from '../http/request-context.js';

/** Hop-by-hop headers (RFC 9110 7.6.1) and others that must not cross the proxy. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
  'http2-settings',
  'expect',
]);

/**
 * Names the gateway itself sets towards the app, compared after folding case and `_`/`.` to `-`:
 * a client's `remote_user`, `Remote.User` or `REMOTE-USER` never reaches the app.
 */
const RESERVED = new Set([
  'remote-user',
  'remote-groups',
  'remote-email',
  'remote-name',
  'x-portcullis-assertion',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-uri',
  'x-forwarded-method',
  'x-forwarded-server',
  'x-original-url',
  'x-original-method',
  'x-real-ip',
  'x-client-ip',
  'forwarded',
  // the gateway's request id: a client's own is never passed on (see http/request-id.ts)
  'x-request-id',
]);

function fold(name: string): string {
  return name.replace(/[_.]/g, '-');
}

/** Every header named by a Connection header (any instance), lower-cased. */
export function connectionNamed(value: string | string[] | undefined): Set<string> | null {
  if (!value) return null;
  // the common values name no header of their own (keep-alive is hop-by-hop anyway): no Set per message
  if (value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'Close') return null;
  const s = new Set<string>();
  for (const v of Array.isArray(value) ? value : [value]) {
    for (const t of v.split(',')) {
      const n = t.trim().toLowerCase();
      if (n) s.add(n);
    }
  }
  return s;
}



/** The request headers for the app, from what the gateway resolved about the client (proxy and WebSocket paths). */
export function appRequestHeaders(
  req: IncomingMessage,
  info: ClientInfo,
  identity: IdentityHeaders | null,
  o: { viaAppPassword: boolean; keepUpgrade?: boolean; requestId?: string },
): OutgoingHttpHeaders {
  return upstreamRequestHeaders(req.headers, {
    clientIp: info.ip,
    proto: info.proto,
    host: info.host,
    identity,
    sessionCookie: info.cookieName,
    dropAuthorization: o.viaAppPassword,
    keepUpgrade: o.keepUpgrade ?? false,
    requestId: o.requestId,
  });
}

/**
 * Headers for the request to the app: the client's, less hop-by-hop ones, every header named in
 * Connection, every reserved identity/forwarding name in any spelling, and the gateway's own
 * session cookie and Basic credentials; plus the identity and X-Forwarded-* the gateway vouches for.
 */
export function upstreamRequestHeaders(
  inbound: IncomingHttpHeaders,
  opts: {
    clientIp: string;
    proto: 'http' | 'https';
    host: string;
    identity: IdentityHeaders | null;
    sessionCookie: string;
    dropAuthorization: boolean;
    keepUpgrade?: boolean;
    /** Sent as X-Request-Id (a client's own never reaches the app). */
    requestId?: string;
  },
): OutgoingHttpHeaders {
  const named = connectionNamed(inbound.connection);
  const out: OutgoingHttpHeaders = {};
  for (const key in inbound) {
    const value = inbound[key];
    if (value === undefined) continue;
    if (HOP_BY_HOP.has(key) && !(opts.keepUpgrade && (key === 'upgrade' || key === 'connection'))) continue;
    if (named?.has(key)) continue;
    if (RESERVED.has(key) || ((key.includes('_') || key.includes('.')) && RESERVED.has(fold(key)))) continue;
    if (key === 'authorization' && opts.dropAuthorization) continue;
    if (key === 'cookie') {
      const c = stripCookie(value as string, opts.sessionCookie);
      if (c) out.cookie = c;
      continue;
    }
    out[key] = value;
  }
  if (opts.keepUpgrade) {
    // the only upgrade the gateway passes on (websocket.ts refuses every other before the gate)
    out.connection = 'upgrade';
    out.upgrade = 'websocket';
  }
  out['x-forwarded-for'] = opts.clientIp;
  out['x-forwarded-proto'] = opts.proto;
  out['x-forwarded-host'] = opts.host;
  if (opts.requestId) out['x-request-id'] = opts.requestId;
  const id = opts.identity;
  if (id) {
    // sanitised once per user record (access/identity.ts)
    const p = id.prepared;
    out['remote-user'] = p.user;
    out['remote-groups'] = p.groups;
    if (p.email) out['remote-email'] = p.email;
    if (p.name) out['remote-name'] = p.name;
    if (id.assertion !== null) out['x-portcullis-assertion'] = id.assertion;
  }
  return out;
}

/** Remove the gateway's own cookie from a Cookie header; returns '' when nothing is left. */
/**
 * The client's Cookie header less the gateway's own cookies (the session cookie `name`, and every
 * name in the gateway's namespace: the portal's CSRF cookie, the console's): an app never sees them.
 */
export function stripCookie(header: string, name: string): string {
  if (!header.toLowerCase().includes('portcullis') && !header.includes(name)) return header;
  const ownKey = nameKey(name);
  return header
    .split(';')
    .filter((part) => {
      const eq = part.indexOf('=');
      const k = nameKey(eq < 0 ? part : part.slice(0, eq));
      return k !== ownKey && !gatewayKey(k);
    })
    .join(';')
    .trim();
}

/** Headers for the response to the client: the app's, less hop-by-hop ones and any attempt to set a gateway cookie. */
export function clientResponseHeaders(
  upstream: Record<string, string | string[] | undefined>,
  sessionCookie: string,
): OutgoingHttpHeaders {
  const named = connectionNamed(upstream.connection);
  const out: OutgoingHttpHeaders = {};
  for (const key in upstream) {
    const value = upstream[key];
    if (value === undefined) continue;
    if (HOP_BY_HOP.has(key) || named?.has(key)) continue;
    if (key === 'set-cookie') {
      const list = (Array.isArray(value) ? value : [value]).filter((c) => !setsGatewayCookie(c, sessionCookie));
      if (list.length) out[key] = list;
      continue;
    }
    out[key] = value;
  }
  return out;
}

/**
 * The head of the 101 answer to a WebSocket upgrade, from the app's raw header list (order and
 * letter case kept): hop-by-hop headers other than Connection and Upgrade are dropped, and so is
 * any Set-Cookie for a gateway cookie, exactly as on every other response.
 */
export function upgradeResponseHead(rawHeaders: readonly string[], sessionCookie: string): string {
  let out = 'HTTP/1.1 101 Switching Protocols\r\n';
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const value = rawHeaders[i + 1]!;
    const key = name.toLowerCase();
    if (HOP_BY_HOP.has(key) && key !== 'connection' && key !== 'upgrade') continue;
    if (key === 'content-length') continue; // never in a 1xx (RFC 9110 §8.6)
    if (key === 'set-cookie' && setsGatewayCookie(value, sessionCookie)) continue;
    out += `${name}: ${value}\r\n`;
  }
  return `${out}\r\n`;
}

/*
 * Cookie names as browsers read them (RFC 6265bis §5.7): the name-value pair is the text before
 * the first `;`; the name is what precedes its first `=`, trimmed of spaces and tabs; a pair with
 * no `=` is a cookie with an empty name whose value is sent bare (`Cookie: value`), and a cookie
 * with an empty name is sent as its value alone, so `=portcullis_dev_session=x` arrives as
 * `portcullis_dev_session=x`. Older or non-conforming clients read a pair without `=` as a name
 * with an empty value, and some servers trim every Unicode space or ignore letter case. An app
 * behind the gateway must not set any cookie that any of these readings would take for one of
 * the gateway's own.
 */

/** A control character other than HTAB: RFC 6265bis makes browsers ignore such a line; older ones truncated at it. */
// eslint-disable-next-line no-control-regex
const COOKIE_CTL = /[\u0000-\u0008\u000a-\u001f\u007f]/;
/** Anything around a (lower-cased) name that is not a character of the gateway's cookie names. */
const NOT_NAME_EDGE = /^[^a-z0-9_-]+|[^a-z0-9_-]+$/g;
/** Anything around a name that is not a token character: what may surround an empty name (`= x`, `\t=x`). */
const NOT_TOKEN_EDGE = /^[^A-Za-z0-9!#$%&'*+.^_`|~-]+|[^A-Za-z0-9!#$%&'*+.^_`|~-]+$/g;
const NAME_PREFIX = /^(?:__host-|__secure-)/;

/**
 * A cookie name reduced for comparison with the gateway's: lower case, stripped of anything but
 * letters, digits, `_` and `-` at either end (spaces, tabs, Unicode spaces, quotes, stray bytes),
 * and of `__Host-` / `__Secure-` prefixes (browsers match prefixes in any case).
 */
function nameKey(name: string): string {
  let k = name.toLowerCase().replace(NOT_NAME_EDGE, '');
  for (;;) {
    const m = NAME_PREFIX.exec(k);
    if (!m) return k;
    k = k.slice(m[0].length).replace(NOT_NAME_EDGE, '');
  }
}

/**
 * The gateway's cookie namespace: `portcullis` itself and every name that continues it with `-`
 * or `_` (the session cookies `__Host-portcullis` and `portcullis_dev_session`, the portal's
 * `__Host-portcullis-csrf` / `portcullis_dev_csrf`, the admin console's `portcullis_admin`).
 */
function gatewayKey(k: string): boolean {
  return k === 'portcullis' || k.startsWith('portcullis-') || k.startsWith('portcullis_');
}

/**
 * Whether a Set-Cookie line from an app would set (or shadow) one of the gateway's cookies in
 * some client: its name, read as a browser reads it, is the gateway's session cookie `own` or in
 * the gateway's namespace; or the line has no name and its value would be read as such a cookie.
 * Lines with control characters are refused outright.
 */
export function setsGatewayCookie(line: string, own: string): boolean {
  if (COOKIE_CTL.test(line)) return true;
  const semi = line.indexOf(';');
  const pair = semi < 0 ? line : line.slice(0, semi);
  const eq = pair.indexOf('=');
  const ownKey = nameKey(own);
  const hit = (candidate: string): boolean => {
    const k = nameKey(candidate);
    return k === ownKey || gatewayKey(k);
  };
  // the name (or, without `=`, the whole pair: the legacy reading)
  if (hit(eq < 0 ? pair : pair.slice(0, eq))) return true;
  if (eq >= 0 && pair.slice(0, eq).replace(NOT_TOKEN_EDGE, '') !== '') return false;
  // a nameless cookie is sent as its bare value: read that value as a `name=value` pair
  // (anything before its first token character, `=` included, is skipped as a lenient parser would)
  const value = (eq < 0 ? pair : pair.slice(eq + 1)).replace(NOT_TOKEN_EDGE, '');
  const veq = value.indexOf('=');
  return hit(veq < 0 ? value : value.slice(0, veq));
}

export type { IdentityHeaders };
