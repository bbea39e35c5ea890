/**
 * Forward-auth endpoints for proxies beside the gateway: nginx `auth_request` (X-Original-URL,
 * X-Original-Method) and Traefik / Caddy / HAProxy (X-Forwarded-Method/Proto/Host/Uri).
 * These headers are believed only from `trusted_proxies`; from anyone else the request is
 * malformed (400), never 200. The decision is the gate's, the same as in full-proxy mode.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ERRORS } from '../errors.js';
import { validHost } from '../net/client-ip.js';
import { peerAddress } from '../net/listener.js';
import type { Runtime } from '../runtime.js';
import { gate, hostOnly, loginLocation } from '../access/gate.js';
import { safe } from '../proxy/headers.js';
import { identityHeaders } from '../access/identity.js';
import { wantsHtml, wantsJson } from '../proxy/handler.js';
import { sessionCookieFor } from '../session/sessions.js';
import { clientInfo, readSessionCookie } from './request-context.js';

function one(v: string | string[] | undefined): string | undefined {
  if (Array.isArray(v)) return v.length === 1 ? v[0] : undefined;
  return v;
}

const METHOD_RE = /^[A-Z]{1,20}$/;

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

export function authzRoutes(rt: Runtime) {
  return async function (app: FastifyInstance): Promise<void> {
    async function decideFor(req: FastifyRequest, reply: FastifyReply, o: Original | null, mode: 'auth-request' | 'forward-auth') {
      const cfg = rt.config;
      reply.header('cache-control', 'no-store');
      const peer = peerAddress(req.raw.socket);
      if (!cfg.trustedProxies.contains(peer)) {
        rt.logger.warn({ peer, mode }, 'forward-auth request from a peer not in trusted_proxies');
        return reply.code(400).send({ error: 'forwarded headers are only accepted from trusted_proxies' });
      }
      if (!o) return reply.code(400).send({ error: 'missing or malformed original request' });
      const info = clientInfo(req.raw, cfg);
      // the cookie of the host the client asked for (the portal's Domain cookie under session.domain)
      const cookie = sessionCookieFor(cfg.session, hostOnly(o.host) ?? '', o.proto === 'https');
      const r = await gate(rt, cfg, {
        method: o.method,
        target: o.target,
        host: o.host,
        ip: info.ip,
        proto: o.proto,
        sessionId: readSessionCookie(req.headers.cookie, cookie.name),
        sessionScope: cfg.session.domain === null ? undefined : cookie.domain,
        authorization: req.headers.authorization,
      });
      if (r.kind === 'proxy') {
        // Every identity header is always present, empty when there is no identity (a bypass
        // path) or no value: a proxy that copies them (Caddy's copy_headers, Traefik's
        // authResponseHeaders, nginx auth_request_set) then overwrites whatever the client sent,
        // and never forwards a literal placeholder for a missing one.
        const id = r.identity ? await identityHeaders(rt, r.app, r.identity, info.ip) : null;
        reply
          .header('remote-user', id ? safe(id.user) : '')
          .header('remote-groups', id ? safe(id.groups.join(',')) : '')
          .header('remote-email', id?.email ? safe(id.email) : '')
          .header('remote-name', id?.name ? safe(id.name) : '')
          .header('x-portcullis-assertion', id ? id.assertion : '');
        return reply.code(200).send();
      }
      const origin = `${o.proto}://${o.host}`;
      if (r.kind === 'signin' || r.kind === 'step') {
        if (r.kind === 'signin' && r.basic) return reply.code(401).header('www-authenticate', `Basic realm="${r.app.name}", charset="UTF-8"`).send();
        // under session.domain both lead to the portal (absolute already); else to this host's own pages
        const location = r.kind === 'step' ? (r.location.startsWith('/') ? `${origin}${r.location}` : r.location) : loginLocation(cfg, o, true);
        // nginx auth_request understands only 2xx/401/403: 401 + Location, and nginx redirects browsers
        if (mode === 'auth-request') return reply.code(401).header('location', location).send();
        if (wantsJson(req.raw)) {
          return reply.code(401).header('location', location).header('www-authenticate', 'Portcullis realm="portcullis"').type('application/json; charset=utf-8').send(JSON.stringify({ error: r.kind === 'step' ? 'step_up' : 'signed_out', login: location }));
        }
        if (wantsHtml(req.raw) && (o.method === 'GET' || o.method === 'HEAD')) return reply.code(302).header('location', location).send();
        return reply.code(401).header('www-authenticate', 'Portcullis realm="portcullis"').send();
      }
      const status = ERRORS[r.code].status;
      if (mode === 'auth-request') return reply.code(status === 429 ? 429 : status === 400 ? 400 : 403).send();
      return reply.code(status).send();
    }

    app.get('/.portcullis/authz/auth-request', async (req, reply) =>
      decideFor(req, reply, parseOriginalUrl(one(req.headers['x-original-url']), one(req.headers['x-original-method'])), 'auth-request'),
    );

    app.get('/.portcullis/authz/forward-auth', async (req, reply) => {
      const proto = one(req.headers['x-forwarded-proto']);
      const host = one(req.headers['x-forwarded-host']);
      const uri = one(req.headers['x-forwarded-uri']);
      const o = proto && host && uri ? checked(proto.toLowerCase(), host, uri, one(req.headers['x-forwarded-method'])) : null;
      return decideFor(req, reply, o, 'forward-auth');
    });
  };
}
