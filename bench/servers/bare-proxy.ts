/**
 * The baseline for full-proxy mode: what any reverse proxy in Node costs before it does anything
 * useful. A node:http server and an undici Pool (the engine the gateway uses, with the same pool
 * settings), forwarding to the same upstream, that only checks that the session cookie is present.
 * No session lookup, no policy, no identity headers, no assertion: the gateway's overhead is
 * everything above this.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { serve } from '../lib/ipc.js';

const origin = process.argv[2];
if (!origin) throw new Error('usage: bare-proxy.js UPSTREAM_ORIGIN');
const COOKIE = 'portcullis_dev_session=';
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

const pool = new Pool(origin, { connections: 256, pipelining: 1, keepAliveTimeout: 30_000, keepAliveMaxTimeout: 600_000 });

function strip(h: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const k in h) {
    const v = h[k];
    if (v !== undefined && !HOP.has(k)) out[k] = v;
  }
  return out;
}

const server = createServer((req, res) => {
  const cookie = req.headers.cookie;
  if (!cookie || !cookie.includes(COOKIE)) {
    req.resume();
    res.writeHead(401, { 'content-length': 0 });
    res.end();
    return;
  }
  pool
    .stream({ path: req.url ?? '/', method: (req.method ?? 'GET') as 'GET', headers: strip(req.headers), body: null }, ({ statusCode, headers }) => {
      res.writeHead(statusCode, strip(headers as Record<string, string | string[] | undefined>));
      return res;
    })
    .catch(() => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-length': 0 });
        res.end();
      } else res.destroy();
    });
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  void serve({ port }, {
    stats: () => ({ memory: process.memoryUsage() }),
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pool.close();
    },
  });
});
