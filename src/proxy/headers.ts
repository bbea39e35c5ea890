/**
 * Header hygiene between client, gateway and app. Pure functions, run once per request.
 */
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
]);

function fold(name: string): string {
  return name.replace(/[_.]/g, '-');
}

/** Every header named by a Connection header (any instance), lower-cased. */
export function connectionNamed(value: string | string[] | undefined): Set<string> | null {
  if (!value) return null;
  const s = new Set<string>();
  for (const v of Array.isArray(value) ? value : [value]) {
    for (const t of v.split(',')) {
      const n = t.trim().toLowerCase();
      if (n) s.add(n);
    }
  }
  return s;
}

export interface IdentityHeaders {
  user: string;
  groups: readonly string[];
  email: string | null;
  name: string | null;
  assertion: string;
}

/**
 * Header values must not carry CR/LF or other controls; user data is sanitised defensively. Text
 * outside Latin-1 (a display name in Greek) is sent as its UTF-8 bytes, as nginx would.
 */
export function safe(v: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = v.replace(/[\u0000-\u001f\u007f]/g, '');
  // eslint-disable-next-line no-control-regex
  return /^[\u0000-\u007f]*$/.test(clean) ? clean : Buffer.from(clean, 'utf8').toString('latin1');
}

/** The request headers for the app, from what the gateway resolved about the client (proxy and WebSocket paths). */
export function appRequestHeaders(
  req: IncomingMessage,
  info: ClientInfo,
  identity: IdentityHeaders | null,
  o: { viaAppPassword: boolean; keepUpgrade?: boolean },
): OutgoingHttpHeaders {
  return upstreamRequestHeaders(req.headers, {
    clientIp: info.ip,
    proto: info.proto,
    host: info.host,
    identity,
    sessionCookie: info.cookieName,
    dropAuthorization: o.viaAppPassword,
    keepUpgrade: o.keepUpgrade ?? false,
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
  },
): OutgoingHttpHeaders {
  const named = connectionNamed(inbound.connection);
  const out: OutgoingHttpHeaders = {};
  for (const key in inbound) {
    const value = inbound[key];
    if (value === undefined) continue;
    if (HOP_BY_HOP.has(key) && !(opts.keepUpgrade && (key === 'upgrade' || key === 'connection'))) continue;
    if (named?.has(key)) continue;
    if (RESERVED.has(key) || RESERVED.has(fold(key))) continue;
    if (key === 'authorization' && opts.dropAuthorization) continue;
    if (key === 'cookie') {
      const c = stripCookie(value as string, opts.sessionCookie);
      if (c) out.cookie = c;
      continue;
    }
    out[key] = value;
  }
  if (opts.keepUpgrade) {
    out.connection = 'upgrade';
    if (inbound.upgrade) out.upgrade = inbound.upgrade;
  }
  out['x-forwarded-for'] = opts.clientIp;
  out['x-forwarded-proto'] = opts.proto;
  out['x-forwarded-host'] = opts.host;
  const id = opts.identity;
  if (id) {
    out['remote-user'] = safe(id.user);
    out['remote-groups'] = safe(id.groups.join(','));
    if (id.email) out['remote-email'] = safe(id.email);
    if (id.name) out['remote-name'] = safe(id.name);
    out['x-portcullis-assertion'] = id.assertion;
  }
  return out;
}

/** Remove the gateway's own cookie from a Cookie header; returns '' when nothing is left. */
export function stripCookie(header: string, name: string): string {
  if (!header.includes(name)) return header;
  return header
    .split(';')
    .filter((part) => {
      const eq = part.indexOf('=');
      return (eq < 0 ? part : part.slice(0, eq)).trim() !== name;
    })
    .join(';')
    .trim();
}

/** Headers for the response to the client: the app's, less hop-by-hop ones and any attempt to set the gateway cookie. */
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
      const list = (Array.isArray(value) ? value : [value]).filter((c) => !c.trimStart().startsWith(`${sessionCookie}=`));
      if (list.length) out[key] = list;
      continue;
    }
    out[key] = value;
  }
  return out;
}
