/**
 * The baseline for forward-auth mode: a trivial endpoint at the gateway's auth-request route that
 * only checks that the session cookie is present and answers 200 with a fixed Remote-User (or
 * 401). nginx in front of it is configured exactly as in front of the gateway.
 *
 * `authz-stub.js` alone: a plain node:http server (the target's "trivial stub": what answering a
 * subrequest costs in Node before any decision). `authz-stub.js '["remote-user","alice",...]'`:
 * the same, answering 200 with exactly those headers (the gateway's own answer, so both sides send
 * the same bytes). `authz-stub.js fastify`: the same on Fastify (the baseline of earlier runs).
 */
import { createServer } from 'node:http';
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import { serve } from '../lib/ipc.js';

const COOKIE = 'portcullis_dev_session=';
const PATH = '/.portcullis/authz/auth-request';
const kind = process.argv[2] === 'fastify' ? 'fastify' : 'plain';

if (kind === 'fastify') {
  const app = Fastify({ logger: false });
  app.get(PATH, async (req, reply) => {
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
} else {
  // the 200 answer's headers: a fixed Remote-User, or (argv[2], a JSON list [name, value, ...])
  // the very headers the gateway answers with, so nginx and the app behind it do the same work
  // on both sides and the comparison is of the gate alone
  const given = kind === 'plain' && process.argv[2] ? (JSON.parse(process.argv[2]) as string[]) : null;
  const OK = given ? [...given, 'content-length', '0'] : ['cache-control', 'no-store', 'remote-user', 'benchuser', 'content-length', '0'];
  const server = createServer((req, res) => {
    req.resume();
    const cookie = req.headers.cookie;
    const path = (req.url ?? '').split('?')[0];
    if (path === PATH && typeof cookie === 'string' && cookie.includes(COOKIE)) res.writeHead(200, OK);
    else res.writeHead(path === PATH ? 401 : 404, { 'content-length': 0 });
    res.end();
  });
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 125_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await serve({ port }, {
    stats: () => ({ memory: process.memoryUsage() }),
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}
