/**
 * WebSocket upgrades: the only HTTP/1.1 Upgrade the gateway passes on. The request's shape is
 * checked before the gate (one Host, `Upgrade: websocket` and nothing else, GET, no body), then
 * the policy is checked exactly as for any request, on exactly the request the app then receives
 * (same method, same target), and no 101 reaches the client without a pass and a real 101 from
 * the app. Open tunnels are registered so lockdown and revocation can close them, and each tunnel
 * with a session re-checks it and closes when the session ends (idle or absolute timeout, removal
 * elsewhere, the user disabled). At shutdown a tunnel is closed with a 1001 close frame to the
 * client when the app's stream is between two frames (else, and on revocation, it is just closed).
 */
import { request as httpRequest, STATUS_CODES, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import { ERRORS } from '../errors.js';
import type { LiveConnection, Runtime } from '../runtime.js';
import type { OpenSession } from '../session/sessions.js';
import { clientInfo, gateRequestOf, hasDuplicateHost } from '../http/request-context.js';
import { gate } from '../access/gate.js';
import { appRequestHeaders, upgradeResponseHead } from './headers.js';
import { identityHeaders } from '../access/identity.js';
import { CLOSE_GOING_AWAY, FrameBoundary } from './ws-frames.js';
import { accountKey, knownUser, lookupUser } from '../directory/source.js';

/** How often an open tunnel re-checks its session, in real time (a tuning knob and a test hook). */
export const tunnelChecks = { everyMs: 15_000 };

/** setTimeout's longest delay (about 24.8 days). */
const MAX_DELAY_MS = 2 ** 31 - 1;

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

export function createUpgradeHandler(rt: Runtime, requestIdOf?: (req: IncomingMessage) => string): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  return (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    const bad = malformedUpgrade(req);
    if (bad) return refuse(socket, bad.status, bad.extra);
    const cfg = rt.config;
    const info = clientInfo(req, cfg);
    // the gate decides on this request, and the app receives this request: same method and target
    const requestId = requestIdOf?.(req);
    const asked = gateRequestOf(req, info, requestId);
    // a promise whether the gate answered at once or not (and a throw in it becomes a rejection)
    (async () => gate(rt, cfg, asked))()
      .then(async (r) => {
        if (r.kind === 'error') return refuse(socket, ERRORS[r.code].status);
        if (r.kind === 'signin' || r.kind === 'step') return refuse(socket, 401);
        if (!r.app.websocket || r.app.upstream.kind !== 'http') {
          rt.audit.record({ event: 'access_denied', ip: info.ip, app: r.app.name, user: r.identity?.user.name, outcome: 'denied', reason: 'websocket not enabled for this app', request_id: requestId });
          return refuse(socket, 403);
        }
        const identity = r.identity ? await identityHeaders(rt, r.app, r.identity, info.ip) : null;
        const headers = appRequestHeaders(req, info, identity, { viaAppPassword: !!r.identity && !r.identity.session, keepUpgrade: true, requestId });
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
          // where the app's frames to the client stand: a shutdown closes between two of them
          const frames = new FrameBoundary();
          upSocket.on('data', (c: Buffer) => frames.feed(c));
          if (upHead.length) {
            frames.feed(upHead);
            socket.write(upHead);
          }
          if (head.length) upSocket.write(head);
          const session = r.identity?.session ?? null;
          let stopWatching = (): void => undefined;
          let goingAway = false;
          const conn: LiveConnection = {
            user: r.identity ? accountKey(r.identity.user) : null,
            sessionHash: session?.idHash ?? null,
            app: r.app.name,
            ip: info.ip,
            close: (reason) => {
              if (reason === 'shutdown' && frames.atBoundary && socket.writable && !socket.destroyed) {
                // the gateway is going away: say so (1001), then close
                goingAway = true;
                upSocket.unpipe(socket);
                socket.unpipe(upSocket);
                upSocket.destroy();
                socket.end(CLOSE_GOING_AWAY);
                setTimeout(() => socket.destroy(), 1_000).unref();
                return;
              }
              socket.destroy();
              upSocket.destroy();
            },
          };
          rt.live.add(conn);
          const done = () => {
            stopWatching();
            rt.live.delete(conn);
            if (!goingAway) socket.destroy();
            upSocket.destroy();
          };
          upSocket.on('error', done);
          upSocket.on('close', done);
          socket.on('close', done);
          socket.pipe(upSocket);
          upSocket.pipe(socket);
          if (session && r.identity) {
            stopWatching = watchSession(rt, session, accountKey(r.identity.user), (reason) => {
              rt.logger.info({ app: r.app.name, user: conn.user, reason }, 'WebSocket closed: its session ended');
              rt.live.delete(conn);
              conn.close(reason);
            });
          }
        });
        upReq.end();
      })
      .catch(() => refuse(socket, 503));
  };
}

/**
 * Keep a tunnel no longer than its session: re-check the session at its deadline (the earlier of
 * the idle and absolute expiry, on the runtime's clock) and at least every `tunnelChecks.everyMs`
 * of real time in between (a touch by the user's other requests moves the deadline; a removal on
 * another instance is seen; a fixed test clock is honoured). The check does not touch the session.
 * While the store cannot be read, the last known deadline still holds. Returns a stop function.
 */
function watchSession(rt: Runtime, s: OpenSession, user: string, end: (reason: string) => void): () => void {
  let rec = s.rec;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;

  const check = async (): Promise<string | null> => {
    let u;
    try {
      u = await lookupUser(rt, user);
    } catch {
      // the directory unreachable: an established connection continues on the last record
      u = knownUser(rt, user);
    }
    if (!u || u.disabled) return 'user disabled or removed';
    try {
      const now = await rt.sessions.peek(s.idHash);
      if (!now) return 'session ended';
      rec = now;
    } catch {
      // store unreachable: nothing new can be learned; the deadline already known still applies
      if (rt.clock.now() >= rt.sessions.expiresAt(rec)) return 'session expired';
    }
    return null;
  };
  const schedule = (): void => {
    if (stopped) return;
    const left = rt.sessions.expiresAt(rec) - rt.clock.now();
    // never sooner than a short floor: a clock that stands still (tests) must not spin
    const floor = Math.min(tunnelChecks.everyMs, 1_000);
    timer = setTimeout(run, Math.max(floor, Math.min(tunnelChecks.everyMs, left, MAX_DELAY_MS)));
    timer.unref();
  };
  const run = (): void => {
    timer = null;
    check().then(
      (reason) => {
        if (stopped) return;
        if (reason === null) return schedule();
        stopped = true;
        end(reason);
      },
      () => schedule(),
    );
  };
  schedule();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    timer = null;
  };
}
