/**
 * The gateway's listening side: an http or https server whose requests are split between the
 * proxy (plain node, the hot path) and the fastify app (reserved `/.portcullis/` routes), with
 * WebSocket upgrades, CONNECT refused, and the PROXY-protocol-aware listener in front.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { Server as NetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { Runtime } from '../runtime.js';
import { createListener } from '../net/listener.js';
import { createProxyHandler } from '../proxy/handler.js';
import { createUpgradeHandler } from '../proxy/websocket.js';
import { UpstreamPools } from '../proxy/upstreams.js';
import { buildApp } from './app.js';
import { hasDuplicateHost } from './request-context.js';
import { sendPage } from '../proxy/forward.js';

const RESERVED = '/.portcullis/';

export interface GatewayServer {
  app: FastifyInstance;
  server: Server;
  listener: NetServer;
  pools: UpstreamPools;
  /** Listen on cfg.listen (or the given port, e.g. 0 in tests); resolves to the bound port. */
  listen(port?: number, host?: string): Promise<number>;
  close(): Promise<void>;
}

export async function createGatewayServer(rt: Runtime, opts: { observe?: (app: string, status: number, seconds: number) => void } = {}): Promise<GatewayServer> {
  const cfg = rt.config;
  const pools = new UpstreamPools();
  let fastifyHandler: ((req: IncomingMessage, res: ServerResponse) => void) | null = null;
  const proxy = createProxyHandler({ rt, pools, ...(opts.observe ? { observe: opts.observe } : {}), onError: (err) => rt.logger.error({ err: (err as Error).message }, 'proxy request failed') });

  const dispatch = (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    if (hasDuplicateHost(req)) sendPage(res, 400, { connection: 'close' }); // RFC 9112 §3.2, on every path (upgrades: websocket.ts)
    else if (url.startsWith(RESERVED)) fastifyHandler!(req, res);
    else proxy(req, res);
  };
  const server: Server = cfg.tls
    ? (createHttpsServer({ cert: readFileSync(cfg.tls.cert), key: readFileSync(cfg.tls.key) }, dispatch) as unknown as Server)
    : createHttpServer(dispatch);
  server.headersTimeout = 30_000;
  server.requestTimeout = 0; // long uploads and downloads are fine; idle sockets are not
  server.keepAliveTimeout = 65_000;
  server.maxHeadersCount = 200;

  const upgrade = createUpgradeHandler(rt);
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
  });

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
    async close() {
      for (const c of rt.live) c.close('shutdown');
      // stop accepting, then end idle keep-alive connections at once (the listener's close
      // callback waits for every connection it accepted)
      const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
      server.closeIdleConnections?.();
      const grace = setTimeout(() => server.closeAllConnections?.(), 2_000);
      await closed;
      clearTimeout(grace);
      await app.close();
      await pools.close();
    },
  };
}
