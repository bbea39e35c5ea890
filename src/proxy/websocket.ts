/**
 * WebSocket upgrades: the only HTTP/1.1 Upgrade the gateway passes on. The request's shape is
 * checked before the gate (one Host, `Upgrade: websocket` and nothing else, GET, no body), then
 * the policy is checked exactly as for any request, on exactly the request the app then receives
 * (same method, same target), and no 101 reaches the client without a pass and a real 101 from
 * the app. Open tunnels are registered so lockdown and revocation can close them.
 */
import { request as httpRequest, STATUS_CODES, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import { ERRORS } from '../errors.js';
import type { LiveConnection, Runtime } from '../runtime.js';
import { clientInfo, gateRequestOf, hasDuplicateHost } from '../http/request-context.js';
import { gate } from './gate.js';
import { appRequestHeaders, upgradeResponseHead } from './headers.js';
import { identityHeaders } from './identity.js';

function refuse(socket: Duplex, status: number, extra = ''): void {
  if (socket.destroyed) return;
  const body = `${STATUS_CODES[status] ?? 'Error'}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n${extra}\r\n${body}`,
  );
}

/**
 * Why an upgrade request is refused before the gate looks at it, or null. Node raises the upgrade
 * event for any method and any `Upgrade` value once `Connection` names `upgrade`; a WebSocket
 * handshake is a GET without a body (RFC 6455 §4.1) and `websocket` is the only protocol the
 * gateway tunnels: anything else (h2c above all) would let a client talk to the app past the gate.
 */
function malformedUpgrade(req: IncomingMessage): { status: number; extra?: string } | null {
  if (hasDuplicateHost(req)) return { status: 400 };
  if (String(req.headers.upgrade ?? '').trim().toLowerCase() !== 'websocket') return { status: 400 };
  if (req.method !== 'GET') return { status: 405, extra: 'allow: GET\r\n' };
  const cl = req.headers['content-length'];
  if (req.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0')) return { status: 400 };
  return null;
}

export function createUpgradeHandler(rt: Runtime): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  return (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    const bad = malformedUpgrade(req);
    if (bad) return refuse(socket, bad.status, bad.extra);
    const cfg = rt.config;
    const info = clientInfo(req, cfg);
    // the gate decides on this request, and the app receives this request: same method and target
    const asked = gateRequestOf(req, info);
    gate(rt, cfg, asked)
      .then(async (r) => {
        if (r.kind === 'error') return refuse(socket, ERRORS[r.code].status);
        if (r.kind === 'signin' || r.kind === 'step') return refuse(socket, 401);
        if (!r.app.websocket || r.app.upstream.kind !== 'http') {
          rt.audit.record({ event: 'access_denied', ip: info.ip, app: r.app.name, user: r.identity?.user.name, outcome: 'denied', reason: 'websocket not enabled for this app' });
          return refuse(socket, 403);
        }
        const identity = r.identity ? await identityHeaders(rt, r.app, r.identity, info.ip) : null;
        const headers = appRequestHeaders(req, info, identity, { viaAppPassword: !!r.identity && !r.identity.session, keepUpgrade: true });
        const url = r.app.upstream.url;
        const t = cfg.upstreamTimeouts;
        const upReq = (url.protocol === 'https:' ? httpsRequest : httpRequest)({
          host: url.hostname,
          port: url.port || (url.protocol === 'https:' ? 443 : 80),
          method: asked.method,
          path: r.rawTarget,
          headers,
          timeout: t.connectMs,
        });
        upReq.on('timeout', () => upReq.destroy(new Error('upstream timeout')));
        upReq.on('error', () => refuse(socket, 502));
        upReq.on('response', (upRes) => {
          // the app declined the upgrade: relay its status, close
          upRes.resume();
          refuse(socket, upRes.statusCode ?? 502);
        });
        upReq.on('upgrade', (upRes, upSocket, upHead) => {
          upReq.setTimeout(0);
          if (socket.destroyed) {
            upSocket.destroy();
            return;
          }
          socket.write(upgradeResponseHead(upRes.rawHeaders, info.cookieName));
          if (upHead.length) socket.write(upHead);
          if (head.length) upSocket.write(head);
          const conn: LiveConnection = {
            user: r.identity?.user.name ?? null,
            sessionHash: r.identity?.session?.idHash ?? null,
            app: r.app.name,
            ip: info.ip,
            close: () => {
              socket.destroy();
              upSocket.destroy();
            },
          };
          rt.live.add(conn);
          const done = () => {
            rt.live.delete(conn);
            socket.destroy();
            upSocket.destroy();
          };
          upSocket.on('error', done);
          upSocket.on('close', done);
          socket.on('close', done);
          socket.pipe(upSocket);
          upSocket.pipe(socket);
        });
        upReq.end();
      })
      .catch(() => refuse(socket, 503));
  };
}
