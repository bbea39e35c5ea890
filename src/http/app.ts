/**
 * buildApp(rt): the fastify instance serving the reserved `/.portcullis/` routes (portal,
 * forward-auth, JWKS, health). It does not listen; `server.ts` puts it behind the gateway's
 * listener, and tests call `app.inject()`.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyCookie from '@fastify/cookie';
import fastifyFormbody from '@fastify/formbody';
import { isPortcullisError } from '../errors.js';
import { normaliseRequestTarget } from '../net/path.js';
import type { Runtime } from '../runtime.js';
import { errorPage, PAGE_HEADERS } from './html.js';
import { portalRoutes } from '../portal/routes.js';
import { authzRoutes } from './authz.js';

export async function buildApp(rt: Runtime, opts: { serverFactory?: Parameters<typeof Fastify>[0] extends infer O ? O extends { serverFactory?: infer F } ? F : never : never } = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    trustProxy: false,
    bodyLimit: 16 * 1024,
    requestIdHeader: false,
    return503OnClosing: true,
    routerOptions: { ignoreTrailingSlash: false, ignoreDuplicateSlashes: false, caseSensitive: true },
    ...(opts.serverFactory ? { serverFactory: opts.serverFactory } : {}),
  } as never) as unknown as FastifyInstance;

  // The portal's POSTs are HTML forms and nothing else: no JSON or text/plain bodies (415).
  app.removeAllContentTypeParsers();
  await app.register(fastifyFormbody);
  // The dummy hash that unknown and disabled users are verified against is made now, not on the
  // first such attempt (which would otherwise take twice as long as a wrong password).
  await rt.hasher.warmUp();

  app.setNotFoundHandler((_req, reply) => reply.code(404).headers(PAGE_HEADERS).send(errorPage(404)));
  app.setErrorHandler((err, req, reply) => {
    if (isPortcullisError(err)) {
      const status = err.status;
      if (status >= 500) rt.logger.error({ code: err.code, url: req.routeOptions.url }, err.message);
      return reply.code(status).headers({ ...PAGE_HEADERS, ...(status === 503 ? { 'retry-after': '5' } : {}) }).send(errorPage(status));
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (status && status >= 400 && status < 500) return reply.code(status).headers(PAGE_HEADERS).send(errorPage(status));
    rt.logger.error({ err: (err as Error).message, url: req.routeOptions.url }, 'request failed');
    return reply.code(500).headers(PAGE_HEADERS).send(errorPage(500));
  });

  app.get('/.portcullis/healthz', async (_req, reply) => reply.header('cache-control', 'no-store').send({ status: 'ok' }));
  app.get('/.portcullis/jwks.json', async (_req, reply) =>
    reply.header('cache-control', 'public, max-age=300').header('content-type', 'application/jwk-set+json').send(JSON.stringify(rt.signer.jwks())),
  );

  // cookies are parsed only where the portal needs them; forward-auth reads its one cookie itself
  await app.register(async (portal) => {
    // The same path rules as the proxy: a portal page reached through an unsafe path is refused.
    // (Only here: the forward-auth, JWKS and health routes are fixed paths that judge nothing by
    // their own URL, and a callback hook on every forward-auth request would only cost time.)
    portal.addHook('onRequest', (req, reply, done) => {
      if (!normaliseRequestTarget(req.raw.url ?? '/').ok) {
        reply.code(400).headers(PAGE_HEADERS).send(errorPage(400));
        return;
      }
      done();
    });
    await portal.register(fastifyCookie);
    await portal.register(portalRoutes(rt));
  });
  await app.register(authzRoutes(rt));
  return app;
}
