/**
 * The app behind every set-up: a trivial node:http server in a process of its own. It answers
 * every request with a small JSON body naming the user the proxy vouched for (`Remote-User`), so
 * a sanity check can tell a request that went through the access check from one that did not.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '../lib/ipc.js';

let served = 0;
const server = createServer((req, res) => {
  served++;
  req.resume();
  const user = req.headers['remote-user'];
  const body = JSON.stringify({ ok: true, path: req.url, user: typeof user === 'string' ? user : null, assertion: typeof req.headers['x-portcullis-assertion'] === 'string' });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  void serve({ port }, {
    stats: () => ({ served, memory: process.memoryUsage() }),
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  });
});
