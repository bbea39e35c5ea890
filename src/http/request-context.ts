import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { CompiledConfig } from '../config/types.js';
import { resolveClient, validHost } from '../net/client-ip.js';
import { peerAddress } from '../net/listener.js';
import { sessionCookieName } from '../session/sessions.js';
import type { GateRequest } from '../proxy/gate.js';
import { readCookie } from '../proxy/headers.js';

/** What the gateway knows about a request's origin, resolved once and attached to the request. */
export interface ClientInfo {
  cfg: CompiledConfig;
  ip: string;
  proto: 'http' | 'https';
  /** Host the client asked for (Host header; from a trusted proxy, X-Forwarded-Host wins). */
  host: string;
  cookieName: string;
}

export function clientInfo(req: IncomingMessage, cfg: CompiledConfig): ClientInfo {
  const ownProto = (req.socket as TLSSocket).encrypted ? 'https' : 'http';
  const f = resolveClient(peerAddress(req.socket), req.headers, cfg.trustedProxies, ownProto);
  const proto = f.proto ?? ownProto;
  const info: ClientInfo = {
    cfg,
    ip: f.ip,
    proto,
    host: f.host ?? validHost(req.headers.host ?? '') ?? '',
    cookieName: sessionCookieName(proto === 'https'),
  };
  // not cached on the request object: adding a property to IncomingMessage would change its
  // shape and slow every later access to it inside node's http code
  return info;
}

/** The gate's view of a request that came in directly (proxy and WebSocket paths). */
export function gateRequestOf(req: IncomingMessage, info: ClientInfo): GateRequest {
  return {
    method: req.method ?? 'GET',
    target: req.url ?? '/',
    host: req.headers.host,
    ip: info.ip,
    proto: info.proto,
    sessionId: readCookie(req.headers.cookie, info.cookieName),
    authorization: req.headers.authorization,
  };
}
