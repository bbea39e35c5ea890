/**
 * The gateway's listening side: an http or https server whose requests are split between the
 * proxy (plain node, the hot path) and the fastify app (reserved `/.portcullis/` routes), with
 * WebSocket upgrades, CONNECT refused, and the PROXY-protocol-aware listener in front.
 *
 * Slow senders (see `ConnectionLimits` in net/listener.ts): the TLS handshake and then the
 * headers must each arrive within `headersMs` on every route; a portal or authz request (under
 * /.portcullis/) must arrive whole, body included, within `requestMs` (408, then the connection
 * is closed); every connection is closed after `idleMs` without a byte while the client owes one;
 * and each source may hold at most `maxPerSource` connections. Proxied requests are limited only
 * by idleness, so a long upload or download that keeps moving is never cut.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createSecureContext, Server as TlsServer } from 'node:tls';
import type { Server as NetServer, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { Runtime } from '../runtime.js';
import {
  checkingIntervalMs,
  connectionLimits,
  createListener,
  guardHttpServer,
  requestTimedOut,
  type ConnectionLimits,
} from '../net/listener.js';
import { createProxyHandler } from '../proxy/handler.js';
import { createUpgradeHandler } from '../proxy/websocket.js';
import { UpstreamPools } from '../proxy/upstreams.js';
import { buildApp } from './app.js';
import { clientAddress, hasDuplicateHost } from './request-context.js';
import { sendPage } from '../proxy/forward.js';
import { peerAddress } from '../net/listener.js';
import { plainAuthzMode, serveAuthz, type AuthzAnswer, type AuthzMode } from './authz.js';
import { countOutcome, type AccessLog } from './access-log.js';
import { RequestIds, requestIdFrom } from './request-id.js';

const RESERVED = '/.portcullis/';

export interface GatewayServer {
  app: FastifyInstance;
  server: Server;
  listener: NetServer;
  pools: UpstreamPools;
  /** Listen on cfg.listen (or the given port, e.g. 0 in tests); resolves to the bound port. */
  listen(port?: number, host?: string): Promise<number>;
  /**
   * The end of a graceful shutdown (after the drain): stop accepting connections, close open
   * WebSockets, end keep-alive connections as soon as they are idle, and give requests in flight
   * up to `graceMs` to finish; then cut what is left. `hurry` (a second signal) cuts at once.
   */
  shutdown(opts: { graceMs: number; hurry?: Promise<void> }): Promise<ShutdownReport>;
  /**
   * Re-read the TLS certificate and key (a renewed certificate) and serve them to new
   * connections. Throws, leaving the running ones in place, when they cannot be read or do not
   * belong together. Only for a listener that started with TLS.
   */
  reloadTls(tls: { cert: string; key: string }): Promise<void>;
  /** Close now: what is in flight gets 2 s. Idempotent; after `shutdown` it only releases the rest. */
  close(): Promise<void>;
}

export interface ShutdownReport {
  /** Connections open when the listener stopped accepting (WebSockets not included). */
  inFlight: number;
  /** WebSockets closed. */
  websockets: number;
  /** Connections cut when the grace period ran out (0: everything finished in time). */
  cut: number;
}

export interface GatewayServerOptions {
  observe?: (app: string, status: number, seconds: number) => void;
  /** Counts every decision of the gate, proxied and forward-auth (metrics). */
  decision?: (app: string, policy: string, outcome: string) => void;
  /** The access log (`access_log`); off when absent or not open. */
  accessLog?: AccessLog | null;
  /** Default DEFAULT_CONNECTION_LIMITS (tests pass short ones). */
  limits?: Partial<ConnectionLimits>;
}

export async function createGatewayServer(rt: Runtime, opts: GatewayServerOptions = {}): Promise<GatewayServer> {
  const cfg = rt.config;
  const limits = connectionLimits(opts.limits);
  const pools = new UpstreamPools();
  let fastifyHandler: ((req: IncomingMessage, res: ServerResponse) => void) | null = null;
  const accessLog = opts.accessLog ?? null;
  const proxy = createProxyHandler({
    rt,
    pools,
    ...(opts.observe ? { observe: opts.observe } : {}),
    ...(opts.decision ? { decision: opts.decision } : {}),
    accessLog,
    onError: (err) => rt.logger.error({ err: (err as Error).message }, 'proxy request failed'),
  });
  const ids = new RequestIds(rt.random);
  /** A trusted proxy's well-formed X-Request-Id or traceparent, else a new id. */
  const requestIdOf = (req: IncomingMessage): string => {
    const theirs = requestIdFrom(req.headers);
    return theirs !== null && rt.config.trustedProxies.contains(peerAddress(req.socket)) ? theirs : ids.next();
  };

  const dispatch = (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    if (hasDuplicateHost(req)) sendPage(res, 400, { connection: 'close' }); // RFC 9112 §3.2, on every path (upgrades: websocket.ts)
    else if (url.startsWith(RESERVED)) {
      // forward-auth subrequests (GET or HEAD, no body) on plain node:http: no routing, no reply object
      const mode = plainAuthzMode(req, url);
      if (mode) return authz(req, res, url, mode);
      if (!req.complete) deadline(req, res);
      if (accessLog?.on) logPortal(req, res, url);
      fastifyHandler!(req, res);
    } else proxy(req, res, requestIdOf(req));
  };
  // without the access log, one function counts every subrequest's decision (no closure per subrequest)
  const count = opts.decision;
  const countOnly = count
    ? (a: AuthzAnswer | null) => {
        if (a?.result) countOutcome(a.result, count);
      }
    : undefined;
  const authz = (req: IncomingMessage, res: ServerResponse, url: string, mode: AuthzMode) => {
    const requestId = requestIdOf(req);
    const log = accessLog?.on ? accessLog : null;
    if (!log) return serveAuthz(rt, req, res, mode, requestId, countOnly);
    const started = performance.now();
    const done = (a: AuthzAnswer | null, status: number) => {
      const o = a?.result ? countOutcome(a.result, count) : null;
      log.write({
        requestId,
        ip: a?.ip ?? peerAddress(req.socket),
        host: a?.original?.host ?? req.headers.host ?? '',
        method: a?.original?.method ?? req.method ?? '',
        target: a?.original?.target ?? url,
        mode,
        app: o?.app ?? null,
        decision: o?.outcome ?? (status === 400 ? 'refused' : null),
        policy: o?.policy ?? null,
        rule: o?.rule ?? null,
        status,
        started,
        upstreamMs: null,
      });
    };
    serveAuthz(rt, req, res, mode, requestId, done);
  };
  const logPortal = (req: IncomingMessage, res: ServerResponse, url: string) => {
    const started = performance.now();
    const requestId = requestIdOf(req);
    res.once('close', () =>
      accessLog?.write({
        requestId,
        ip: clientAddress(req, rt.config),
        host: req.headers.host ?? '',
        method: req.method ?? '',
        target: url,
        mode: 'portal',
        app: null,
        decision: null,
        policy: null,
        rule: null,
        status: res.writableFinished ? res.statusCode : 499,
        started,
        upstreamMs: null,
      }),
    );
  };
  /**
   * The rest of a portal/authz request (its body) must arrive within `requestMs` of its headers,
   * also when it has been answered already (node then reads and discards what is left).
   */
  const deadline = (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    const onClose = () => clearTimeout(timer);
    const timer = setTimeout(() => {
      socket.off('close', onClose);
      if (!req.complete && !socket.destroyed) requestTimedOut(res, socket);
    }, limits.requestMs);
    req.once('end', () => {
      clearTimeout(timer);
      socket.off('close', onClose);
    });
    socket.once('close', onClose);
  };
  const serverOptions = { connectionsCheckingInterval: checkingIntervalMs(limits) };
  const server: Server = cfg.tls
    ? (createHttpsServer({ ...serverOptions, handshakeTimeout: limits.headersMs, cert: readFileSync(cfg.tls.cert), key: readFileSync(cfg.tls.key) }, dispatch) as unknown as Server)
    : createHttpServer(serverOptions, dispatch);
  // whole-request limit per route (above): a server-wide one would cut long proxied uploads
  guardHttpServer(server, limits, { wholeRequest: false });
  server.maxHeadersCount = 200;

  const upgrade = createUpgradeHandler(rt, requestIdOf);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if ((req.url ?? '').startsWith(RESERVED)) {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    upgrade(req, socket, head);
  });
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => undefined);
    socket.end('HTTP/1.1 405 Method Not Allowed\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable) return socket.destroy();
    // headers (or, on no route here, a whole request) not in time: 408
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return void socket.end('HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    socket.end(`HTTP/1.1 ${status} Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });

  const app = await buildApp(rt, {
    serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) => {
      fastifyHandler = handler;
      return server;
    },
  } as never);
  await app.ready();

  const listener = createListener({
    server,
    trusted: () => rt.config.trustedProxies,
    proxyProtocol: () => rt.config.proxyProtocol,
    maxConnectionsPerSource: limits.maxPerSource,
    ipv6Prefix: () => rt.config.loginLimits.ipv6Prefix,
    onRefused: refusalLog(rt),
  });

  /** Every connection the listener accepted and that is still open. */
  const sockets = new Set<Socket>();
  listener.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  let listenerClosed: Promise<void> | null = null;
  const stopAccepting = () => {
    listenerClosed ??= new Promise<void>((resolve) => {
      if (!listener.listening) return resolve();
      listener.close(() => resolve());
    });
  };
  const connectionCount = () => new Promise<number>((resolve) => listener.getConnections((err, n) => resolve(err ? sockets.size : n)));
  let released: Promise<void> | null = null;
  const release = () =>
    (released ??= (async () => {
      await app.close();
      await pools.close();
    })());

  return {
    app,
    server,
    listener,
    pools,
    listen(port?: number, host?: string) {
      const p = port ?? rt.config.listen.port;
      const h = host ?? rt.config.listen.host;
      return new Promise<number>((resolve, reject) => {
        listener.once('error', reject);
        listener.listen(p, h, () => {
          listener.off('error', reject);
          const addr = listener.address();
          resolve(typeof addr === 'object' && addr ? addr.port : p);
        });
      });
    },
    async reloadTls(files) {
      if (!(server instanceof TlsServer)) throw new Error('the listener was started without TLS');
      const [cert, key] = await Promise.all([readFile(files.cert), readFile(files.key)]);
      // createSecureContext checks that the key matches the certificate before anything changes
      createSecureContext({ cert, key });
      server.setSecureContext({ cert, key });
    },
    async shutdown({ graceMs, hurry }) {
      stopAccepting();
      let websockets = 0;
      for (const c of [...rt.live]) {
        rt.live.delete(c);
        c.close('shutdown');
        websockets++;
      }
      const inFlight = await connectionCount();
      // keep-alive connections end as soon as they fall idle (their request answered)
      server.closeIdleConnections?.();
      const sweep = setInterval(() => server.closeIdleConnections?.(), 50);
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), graceMs);
        void hurry?.then(() => resolve('late'));
      });
      const outcome = await Promise.race([listenerClosed!.then(() => 'done' as const), late]);
      clearInterval(sweep);
      clearTimeout(timer);
      let cut = 0;
      if (outcome === 'late') {
        cut = await connectionCount();
        server.closeAllConnections?.();
        // what the HTTP server does not track (a connection still in its PROXY header) goes too
        for (const s of sockets) s.destroy();
        await listenerClosed;
      }
      await release();
      return { inFlight, websockets, cut };
    },
    async close() {
      for (const c of rt.live) c.close('shutdown');
      // stop accepting, then end idle keep-alive connections at once (the listener's close
      // callback waits for every connection it accepted)
      stopAccepting();
      server.closeIdleConnections?.();
      const grace = setTimeout(() => server.closeAllConnections?.(), 2_000);
      await listenerClosed;
      clearTimeout(grace);
      await release();
    },
  };
}

/**
 * Refused connections are logged at most once per 10 s per reason, with how many there were: a
 * flood of them must not flood the log.
 */
export function refusalLog(rt: Pick<Runtime, 'logger' | 'clock'>, what = 'gateway listener'): (peer: string, reason: string) => void {
  const last = new Map<string, { at: number; n: number }>();
  return (peer, reason) => {
    const now = rt.clock.now();
    const r = last.get(reason);
    if (r && now - r.at < 10_000) {
      r.n++;
      return;
    }
    const suppressed = r?.n ?? 0;
    last.set(reason, { at: now, n: 0 });
    rt.logger.warn({ peer, reason, ...(suppressed > 0 ? { alsoRefusedSinceLastLine: suppressed } : {}) }, `${what}: connection refused`);
  };
}
