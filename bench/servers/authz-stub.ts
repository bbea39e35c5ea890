/**
 * The baseline for forward-auth mode: a trivial Fastify endpoint at the gateway's auth-request
 * route that only checks that the session cookie is present and answers 200 with a fixed
 * Remote-User (or 401). nginx in front of it is configured exactly as in front of the gateway.
 */
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import { serve } from '../lib/ipc.js';

const COOKIE = 'portcullis_dev_session=';
const app = Fastify({ logger: false });
app.get('/.portcullis/authz/auth-request', async (req, reply) => {
  const cookie = req.headers.cookie;
  if (typeof cookie === 'string' && cookie.includes(COOKIE)) {
    return reply.code(200).header('cache-control', 'no-store').header('remote-user', 'benchuser').send();
  }
  return reply.code(401).send();
});
await app.listen({ port: 0, host: '127.0.0.1' });
const { port } = app.server.address() as AddressInfo;
await serve({ port }, {
  stats: () => ({ memory: process.memoryUsage() }),
  stop: () => app.close(),
});
