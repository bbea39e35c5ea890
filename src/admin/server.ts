/**
 * The admin listener (`admin.listen`): a fastify app of its own, separate from the gateway's
 * listener, never reachable through an app host.
 *
 *   GET /readyz     200 {"status":"ready"} when the config is loaded and the store answers, else
 *                   503 with the reason; 503 "shutting down" from the moment SIGTERM arrives (the
 *                   gateway still serves for `shutdown.drain`, so a load balancer can notice). No token: orchestrators probe it; it says nothing more.
 *   GET /metrics    Prometheus exposition. Needs the token, unless the listener is on loopback
 *                   (only local processes can reach it, and metrics carry no user names,
 *                   addresses or secrets; a scraper elsewhere sends the token:
 *                   `authorization: { credentials_file: ... }` in prometheus.yml).
 *   /api/...        the admin API (see api.ts), always behind `Authorization: Bearer <token>`.
 *   /console...     the admin console for a browser (see console/routes.ts): sign in with the
 *                   token, then a session cookie; its own context (HTML, forms, CSRF).
 *
 * Every request, whoever sends it (a trusted proxy too), must name the listener in `Host` as a
 * browser would only when it was opened by address: an IP address literal, `localhost`, or the
 * configured `admin.listen` host; else 421. DNS rebinding (a hostile name resolved to 127.0.0.1)
 * cannot produce such a Host, so a page on another site cannot read /metrics or /readyz, or
 * guess tokens from the admin's browser. A TLS proxy in front keeps working as long as it sends
 * the listener's address as Host (nginx's default); the browser's name goes in X-Forwarded-Host.
 *
 * The listener has the gateway's connection limits (see net/listener.ts): headers and the whole
 * request within `requestMs`, an idle timeout, and a cap on connections per source.
 *
 * `buildAdminApp` returns the app without listening (tests call `inject()`); `startAdminServer`
 * opens the token file (creating it on first start) and listens.
 */
import type { ReloadOutcome } from '../runtime.js';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { ERRORS, isPortcullisError } from '../errors.js';
import { CidrSet, LOOPBACK } from '../net/cidr.js';
import { validHost } from '../net/client-ip.js';
import { parseIp } from '../net/ip.js';
import { checkingIntervalMs, connectionLimits, createListener, guardHttpServer, type ConnectionLimits } from '../net/listener.js';
import { refusalLog } from '../http/server.js';
import { CONSOLE_HEADERS, messagePage } from './console/pages.js';
import type { Runtime } from '../runtime.js';
import { adminApi } from './api.js';
import { AdminAuth, type AdminAuthLimits } from './auth.js';
import type { GatewayMetrics } from './metrics.js';
import { AdminToken } from './token.js';
import { adminConsole } from './console/routes.js';

export interface AdminAppDeps {
  token: AdminToken;
  metrics: GatewayMetrics;
  /** Gateway.reload; without it POST /api/reload answers 404. */
  reload?: ((trigger: string) => Promise<ReloadOutcome>) | undefined;
  /** Why the gateway is not ready regardless of its store (shutting down), or null. */
  notReady?: (() => string | null) | undefined;
  /** Serve /metrics without a token. Default: only when `admin.listen` is a loopback address. */
  publicMetrics?: boolean;
  /** Per-source limits on failed token checks. */
  authLimits?: Partial<AdminAuthLimits>;
  /** The http server to serve on (startAdminServer: one behind the connection-limiting listener). */
  serverFactory?: (handler: (req: IncomingMessage, res: ServerResponse) => void) => Server;
}

const NOBODY = CidrSet.parse([]);

export function isLoopback(host: string): boolean {
  return LOOPBACK.contains(host);
}

/**
 * Whether `hostHeader` names the admin listener the way only someone who opened it by address
 * would: an IP literal (IPv4, or bracketed IPv6), `localhost`, or the configured listen host; any
 * port. Null, malformed or any other name: false.
 */
export function adminHostOk(hostHeader: string | undefined, listenHost: string): boolean {
  const host = validHost(hostHeader ?? '');
  if (host === null) return false;
  if (host.startsWith('[')) return true; // a bracketed IPv6 literal (validHost checked it)
  const colon = host.lastIndexOf(':');
  const name = colon < 0 ? host : host.slice(0, colon);
  if (name === 'localhost' || parseIp(name)?.family === 4) return true;
  return name === listenHost.toLowerCase();
}

const JSON_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
} as const;

function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).headers(JSON_HEADERS).send({ error: { code, message } });
}

export async function buildAdminApp(rt: Runtime, deps: AdminAppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    ...(deps.serverFactory ? { serverFactory: deps.serverFactory } : {}),
    logger: false,
    trustProxy: false,
    bodyLimit: 16 * 1024,
    requestIdHeader: false,
    return503OnClosing: true,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    routerOptions: { ignoreTrailingSlash: false, ignoreDuplicateSlashes: false, caseSensitive: true },
  } as never) as unknown as FastifyInstance;

  const publicMetrics = deps.publicMetrics ?? isLoopback(rt.config.admin.listen.host);
  let blockLogged = 0;
  const auth = new AdminAuth(deps.token, rt.clock, deps.authLimits ?? {}, (source, blocked) => {
    deps.metrics.adminAuthFailed();
    if (blocked) {
      // one line per block, not per attempt: a scanner must not flood the log
      const now = rt.clock.now();
      if (now - blockLogged > 1000) rt.logger.warn({ source }, 'admin listener: too many requests without a valid token; source blocked for a while');
      blockLogged = now;
    }
  });

  const requireToken = async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const v = await auth.check(req.ip, req.headers.authorization);
    if (v.ok) return undefined;
    if (v.code === 'PC_THROTTLED') {
      reply.header('retry-after', String(v.retryAfterSec));
      return sendError(reply, 429, 'PC_THROTTLED', 'too many failed admin token attempts from this address; try again later');
    }
    reply.header('www-authenticate', 'Bearer realm="portcullis-admin"');
    return sendError(reply, 401, 'PC_ADMIN_UNAUTHORIZED', v.reason === 'missing' ? 'admin token required (Authorization: Bearer <token>)' : 'wrong admin token');
  };

  app.addHook('onSend', async (_req, reply, payload) => {
    reply.headers(JSON_HEADERS);
    return payload;
  });

  // DNS rebinding: the Host check comes first, for every route and every peer (see above)
  app.addHook('onRequest', async (req, reply) => {
    if (adminHostOk(req.headers.host, rt.config.admin.listen.host)) return undefined;
    reply.code(421);
    if (req.url === '/console' || req.url.startsWith('/console/') || req.url.startsWith('/console?')) {
      return reply.headers(CONSOLE_HEADERS).send(
        messagePage('Wrong address', 'Open the console by the admin listener’s address (for example http://127.0.0.1:9090/console). A TLS proxy in front must send that address as Host.', {
          link: { href: '/console/login', text: 'Sign in' },
        }),
      );
    }
    return sendError(reply, 421, 'PC_HOST_UNKNOWN', 'the admin listener answers only to its own address (an IP address or localhost) in Host');
  });

  app.setNotFoundHandler((_req, reply) => sendError(reply, 404, 'PC_NOT_FOUND', ERRORS.PC_NOT_FOUND.message));
  app.setErrorHandler((err, req, reply) => {
    if (isPortcullisError(err)) {
      if (err.status >= 500) rt.logger.error({ code: err.code, url: req.routeOptions.url }, err.message);
      if (err.status === 503) reply.header('retry-after', '5');
      return sendError(reply, err.status, err.code, err.message);
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (status && status >= 400 && status < 500) return sendError(reply, status, 'PC_BAD_REQUEST', (err as Error).message);
    rt.logger.error({ err: (err as Error).message, url: req.routeOptions.url }, 'admin request failed');
    return sendError(reply, 500, 'PC_INTERNAL', 'internal error; see the gateway log');
  });

  app.get('/readyz', async (_req, reply) => {
    const reason =
      deps.notReady?.() ?? (!rt.config ? 'no configuration loaded' : !rt.stores.healthy() ? 'the session and state store is unavailable' : null);
    if (reason !== null) return reply.code(503).header('retry-after', '5').send({ status: 'not ready', reason });
    // the directory down: sign-ins answer 503 but established sessions continue, so the
    // instance stays in its load balancer (every instance sees the same directory); it says so
    const directory = rt.directory ? await rt.directory.readiness() : null;
    if (directory !== null) return { status: 'degraded', reason: directory };
    return { status: 'ready' };
  });

  app.get('/metrics', { onRequest: publicMetrics ? [] : [requireToken] }, async (_req, reply) => {
    const m = await deps.metrics.render();
    return reply.header('content-type', m.contentType).send(m.body);
  });

  await app.register(async (api) => {
    api.addHook('onRequest', requireToken);
    await api.register(adminApi(rt, { reload: deps.reload }));
  });
  await app.register(adminConsole(rt, { token: deps.token, auth, reload: deps.reload }));
  await app.ready();
  return app;
}

export interface AdminServer {
  app: FastifyInstance;
  host: string;
  port: number;
  /** `http://host:port` */
  url: string;
  close(): Promise<void>;
}

export interface StartAdminOptions extends Omit<AdminAppDeps, 'token' | 'serverFactory'> {
  /** Default: read (and on first start create) `admin.token_file`. */
  token?: AdminToken;
  /** Override `admin.listen` (tests). */
  port?: number;
  host?: string;
  /** Default DEFAULT_CONNECTION_LIMITS (tests pass short ones). */
  limits?: Partial<ConnectionLimits> | undefined;
}

export async function startAdminServer(rt: Runtime, opts: StartAdminOptions): Promise<AdminServer> {
  const cfg = rt.config;
  const token = opts.token ?? (await AdminToken.open(cfg.admin.tokenFile, { random: rt.random, clock: rt.clock, logger: rt.logger }));
  const host = opts.host ?? cfg.admin.listen.host;
  const loopback = isLoopback(host);
  const limits = connectionLimits(opts.limits);
  let server: Server | null = null;
  const app = await buildAdminApp(rt, {
    ...opts,
    token,
    publicMetrics: opts.publicMetrics ?? loopback,
    serverFactory: (handler) => (server = createServer({ connectionsCheckingInterval: checkingIntervalMs(limits) }, handler)),
  });
  const srv = server as Server | null;
  if (!srv) throw new Error('admin listener: fastify did not create its server');
  // nothing here takes a long body: the whole request is time-limited
  guardHttpServer(srv, limits, { wholeRequest: true });
  // every peer is counted here, a trusted proxy too: nothing in front of this listener needs
  // hundreds of connections at once
  const listener = createListener({
    server: srv,
    trusted: () => NOBODY,
    proxyProtocol: () => false,
    maxConnectionsPerSource: limits.maxPerSource,
    onRefused: refusalLog(rt, 'admin listener'),
  });
  try {
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(opts.port ?? cfg.admin.listen.port, host, () => {
        listener.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await app.close();
    throw err;
  }
  const addr = listener.address();
  const port = typeof addr === 'object' && addr ? addr.port : (opts.port ?? cfg.admin.listen.port);
  if (!loopback) {
    rt.logger.warn(
      { listen: `${host}:${port}` },
      'the admin listener is reachable from the network over plain HTTP: the admin token crosses it in clear. Prefer a loopback address (the CLI runs on this host), or reach it only through a TLS tunnel.',
    );
  }
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    app,
    host,
    port,
    url: `http://${urlHost}:${port}`,
    async close() {
      // stop accepting, end idle keep-alive connections at once, the rest after a short grace
      const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
      srv.closeIdleConnections();
      const grace = setTimeout(() => srv.closeAllConnections(), 2_000);
      await closed;
      clearTimeout(grace);
      await app.close();
    },
  };
}
