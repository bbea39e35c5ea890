/**
 * Forward-auth endpoints for proxies beside the gateway: nginx `auth_request` (X-Original-URL,
 * X-Original-Method) and Traefik / Caddy / HAProxy (X-Forwarded-Method/Proto/Host/Uri).
 * These headers are believed only from `trusted_proxies`; from anyone else the request is
 * malformed (400), never 200. The decision is the gate's, the same as in full-proxy mode.
 *
 * Every subrequest pays this, so it runs on plain node:http (server.ts sends a GET or HEAD
 * without a body here, before fastify): `authzAnswer` works out status, headers (a flat list,
 * written once with `res.writeHead`) and body; the fastify routes below give the same answer to
 * anything else (and to `inject()` in tests).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { ERRORS, isPortcullisError } from '../errors.js';
import { resolveClient, validHost } from '../net/client-ip.js';
import { peerAddress } from '../net/listener.js';
import type { Runtime } from '../runtime.js';
import { gate, hostOnly, loginLocation } from '../access/gate.js';
import type { GateResult } from '../access/types.js';
import { identityHeaders } from '../access/identity.js';
import type { PreparedIdentity } from '../access/types.js';
import { wantsHtml, wantsJson } from '../proxy/handler.js';
import { sendPage } from '../proxy/forward.js';
import { sessionCookieFor } from '../session/sessions.js';
import { readSessionCookie } from './request-context.js';
import { one } from './request-id.js';
import type { TLSSocket } from 'node:tls';

const METHOD_RE = /^[A-Z]{1,20}$/;

export type AuthzMode = 'auth-request' | 'forward-auth';
export const AUTH_REQUEST_PATH = '/.portcullis/authz/auth-request';
export const FORWARD_AUTH_PATH = '/.portcullis/authz/forward-auth';

interface Original {
  proto: 'http' | 'https';
  /** host[:port] as the client asked for it. */
  host: string;
  /** Raw path and query: the gate normalises or refuses it exactly as in full-proxy mode. */
  target: string;
  method: string;
}

/** Split an absolute `X-Original-URL` without letting a URL parser rewrite its path. */
export function parseOriginalUrl(raw: string | undefined, method: string | undefined): Original | null {
  if (!raw || raw.length > 8192) return null;
  const m = /^(https?):\/\/([^/?#\\@\s]+)(\/[^#\s]*)?$/i.exec(raw);
  if (!m) return null;
  return checked(m[1]!.toLowerCase(), m[2]!, m[3] ?? '/', method);
}

function checked(proto: string, host: string, target: string, method: string | undefined): Original | null {
  if (proto !== 'http' && proto !== 'https') return null;
  // a DNS name, IPv4 or [IPv6], with a port of at most 65535: the same rule as for X-Forwarded-Host
  const h = validHost(host);
  if (h === null) return null;
  if (!target.startsWith('/') || /[\s#]/.test(target)) return null;
  const mth = method ?? 'GET';
  if (!METHOD_RE.test(mth)) return null;
  return { proto, host: h, target, method: mth };
}

function originalOf(req: IncomingMessage, mode: AuthzMode): Original | null {
  const h = req.headers;
  if (mode === 'auth-request') return parseOriginalUrl(one(h['x-original-url']), one(h['x-original-method']));
  const proto = one(h['x-forwarded-proto']);
  const host = one(h['x-forwarded-host']);
  const uri = one(h['x-forwarded-uri']);
  return proto && host && uri ? checked(proto.toLowerCase(), host, uri, one(h['x-forwarded-method'])) : null;
}

/** The answer to one subrequest. `headers` is the whole flat [name, value, ...] list, content-length included. */
export interface AuthzAnswer {
  status: number;
  headers: readonly string[];
  body: string;
  /** What the gate decided (null: refused before it was asked). */
  result: GateResult | null;
  /** The original request, as the proxy described it (null: missing or malformed). */
  original: { host: string; target: string; method: string } | null;
  /** The client's address (the peer's when the request was refused before it was resolved). */
  ip: string;
}

const JSON_TYPE = 'application/json; charset=utf-8';
/** Every identity header present and empty: what a request without an identity (a bypass path) answers. */
const NO_IDENTITY: PreparedIdentity = Object.freeze({ user: '', groups: '', email: '', name: '' });

/** An answer's headers: no-store, `extra`, and the body's content-length. */
function headersFor(extra: readonly string[], body: string): string[] {
  return ['cache-control', 'no-store', ...extra, 'content-length', body === '' ? '0' : String(Buffer.byteLength(body))];
}

/** A 400 before the gate is asked. */
function refused(error: string, ip: string): AuthzAnswer {
  const body = JSON.stringify({ error });
  return { status: 400, headers: headersFor(['content-type', JSON_TYPE], body), body, result: null, original: null, ip };
}

/**
 * The answer to one subrequest: at once (no promise) when the gate answered at once and the
 * assertion was cached, which is every subrequest of a signed-in user on the hot path.
 */
export function authzAnswer(rt: Runtime, req: IncomingMessage, mode: AuthzMode, requestId?: string): AuthzAnswer | Promise<AuthzAnswer> {
  const cfg = rt.config;
  // only the client's address is needed here (the subrequest's own Host and scheme are not)
  const f = resolveClient(peerAddress(req.socket), req.headers, cfg.trustedProxies, (req.socket as TLSSocket).encrypted ? 'https' : 'http');
  if (!f.viaTrustedProxy) {
    rt.logger.warn({ peer: f.ip, mode }, 'forward-auth request from a peer not in trusted_proxies');
    return refused('forwarded headers are only accepted from trusted_proxies', f.ip);
  }
  const ip = f.ip;
  const o = originalOf(req, mode);
  if (!o) return refused('missing or malformed original request', peerAddress(req.socket));
  // the cookie of the host the client asked for (the portal's Domain cookie under session.domain)
  const cookie = sessionCookieFor(cfg.session, hostOnly(o.host) ?? '', o.proto === 'https');
  const r = gate(rt, cfg, {
    method: o.method,
    target: o.target,
    host: o.host,
    ip,
    proto: o.proto,
    sessionId: readSessionCookie(req.headers.cookie, cookie.name),
    sessionScope: cfg.session.domain === null ? undefined : cookie.domain,
    authorization: req.headers.authorization,
    requestId,
  });
  const sub: Subrequest = { rt, req, mode, requestId, o, ip };
  return r instanceof Promise ? r.then((x) => answerFor(sub, x)) : answerFor(sub, r);
}

/**
 * 200 with the identity headers. Every one is always present, empty when there is no identity
 * (a bypass path) or no value: a proxy that copies them (Caddy's copy_headers, Traefik's
 * authResponseHeaders, nginx auth_request_set) then overwrites whatever the client sent, and
 * never forwards a literal placeholder for a missing one.
 */
function admitted(sub: Subrequest, r: GateResult, p: PreparedIdentity, assertion: string): AuthzAnswer {
  const headers = ['cache-control', 'no-store', 'remote-user', p.user, 'remote-groups', p.groups, 'remote-email', p.email, 'remote-name', p.name, 'x-portcullis-assertion', assertion];
  if (sub.requestId) headers.push('x-request-id', sub.requestId);
  headers.push('content-length', '0');
  return { status: 200, headers, body: '', result: r, original: sub.o, ip: sub.ip };
}

/** One subrequest, as `answerFor` needs it. */
interface Subrequest {
  rt: Runtime;
  req: IncomingMessage;
  mode: AuthzMode;
  requestId: string | undefined;
  o: Original;
  /** The client's address. */
  ip: string;
}

function answerFor(sub: Subrequest, r: GateResult): AuthzAnswer | Promise<AuthzAnswer> {
  const { rt, req, mode, o, ip } = sub;
  const cfg = rt.config;
  const answer = (status: number, extra: readonly string[], body = ''): AuthzAnswer => ({ status, headers: headersFor(extra, body), body, result: r, original: o, ip });
  if (r.kind === 'proxy') {
    if (!r.identity) return admitted(sub, r, NO_IDENTITY, '');
    const got = identityHeaders(rt, r.app, r.identity, ip);
    return got instanceof Promise ? got.then((id) => admitted(sub, r, id.prepared, id.assertion ?? '')) : admitted(sub, r, got.prepared, got.assertion ?? '');
  }
  const origin = `${o.proto}://${o.host}`;
  if (r.kind === 'signin' || r.kind === 'step') {
    if (r.kind === 'signin' && r.basic) return answer(401, ['www-authenticate', `Basic realm="${r.app.name}", charset="UTF-8"`]);
    // under session.domain both lead to the portal (absolute already); else to this host's own pages
    const location = r.kind === 'step' ? (r.location.startsWith('/') ? `${origin}${r.location}` : r.location) : loginLocation(cfg, o, true);
    // nginx auth_request understands only 2xx/401/403: 401 + Location, and nginx redirects browsers
    if (mode === 'auth-request') return answer(401, ['location', location]);
    if (wantsJson(req)) {
      return answer(401, ['location', location, 'www-authenticate', 'Portcullis realm="portcullis"', 'content-type', JSON_TYPE], JSON.stringify({ error: r.kind === 'step' ? 'step_up' : 'signed_out', login: location }));
    }
    if (wantsHtml(req) && (o.method === 'GET' || o.method === 'HEAD')) return answer(302, ['location', location]);
    return answer(401, ['www-authenticate', 'Portcullis realm="portcullis"']);
  }
  const status = ERRORS[r.code].status;
  if (mode === 'auth-request') return answer(status === 429 ? 429 : status === 400 ? 400 : 403, []);
  return answer(status, []);
}

/** Which authz endpoint a request is for, when the plain path can serve it (GET or HEAD, no body); else null. */
export function plainAuthzMode(req: IncomingMessage, url: string): AuthzMode | null {
  if (req.method !== 'GET' && req.method !== 'HEAD') return null;
  const h = req.headers;
  if (h['content-length'] !== undefined || h['transfer-encoding'] !== undefined) return null;
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (path === AUTH_REQUEST_PATH) return 'auth-request';
  if (path === FORWARD_AUTH_PATH) return 'forward-auth';
  return null;
}

/**
 * Serve an authz subrequest on plain node:http: the head written once (status and a prepared
 * header list), then the body if any. `done` learns the answer (access log, metrics).
 */
export function serveAuthz(rt: Runtime, req: IncomingMessage, res: ServerResponse, mode: AuthzMode, requestId: string | undefined, done?: (a: AuthzAnswer | null, status: number) => void): void {
  let a: AuthzAnswer | Promise<AuthzAnswer>;
  try {
    a = authzAnswer(rt, req, mode, requestId);
  } catch (err) {
    return authzFailed(rt, res, mode, err, done);
  }
  if (a instanceof Promise) a.then((x) => sendAuthz(res, x, done), (err: unknown) => authzFailed(rt, res, mode, err, done));
  else sendAuthz(res, a, done);
}

function sendAuthz(res: ServerResponse, a: AuthzAnswer, done?: (a: AuthzAnswer | null, status: number) => void): void {
  res.writeHead(a.status, a.headers as string[]);
  if (a.body === '') res.end();
  else res.end(a.body);
  done?.(a, a.status);
}

function authzFailed(rt: Runtime, res: ServerResponse, mode: AuthzMode, err: unknown, done?: (a: AuthzAnswer | null, status: number) => void): void {
  // as the fastify app's error handler: a store outage keeps its 503, anything else is a 500
  const status = isPortcullisError(err) ? err.status : 500;
  if (status >= 500) rt.logger.error({ err: (err as Error).message, url: mode }, 'forward-auth request failed');
  sendPage(res, status, status === 503 ? { 'retry-after': '5' } : undefined);
  done?.(null, status);
}

export function authzRoutes(rt: Runtime) {
  return async function (app: FastifyInstance): Promise<void> {
    const route = (mode: AuthzMode) => async (req: { raw: IncomingMessage }, reply: FastifyReply) => {
      const a = await authzAnswer(rt, req.raw, mode);
      reply.code(a.status);
      for (let i = 0; i + 1 < a.headers.length; i += 2) reply.header(a.headers[i]!, a.headers[i + 1]!);
      return a.body === '' ? reply.send() : reply.send(a.body);
    };
    app.get(AUTH_REQUEST_PATH, route('auth-request'));
    app.get(FORWARD_AUTH_PATH, route('forward-auth'));
  };
}
