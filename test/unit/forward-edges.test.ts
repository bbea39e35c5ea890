/**
 * The proxy's answer path (src/proxy/forward.ts, an undici dispatch handler): what the client sees
 * for bodiless answers (HEAD, 204, 304), Set-Cookie lists and hop-by-hop headers, and that a client
 * leaving mid-response ends the request to the app (and the metrics still see it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { forward, type ForwardContext } from '../../src/proxy/forward.js';
import type { UpstreamPools } from '../../src/proxy/upstreams.js';
import type { CompiledApp, CompiledConfig } from '../../src/config/types.js';

interface Rig {
  port: number;
  observed: { status: number }[];
  close: () => Promise<void>;
}

async function rig(app: (req: IncomingMessage, res: ServerResponse) => void): Promise<Rig> {
  const upstream: Server = createServer(app);
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const pool = new Pool(origin, { connections: 4, pipelining: 1 });
  const observed: { status: number }[] = [];
  const ctx: ForwardContext = {
    cfg: {} as CompiledConfig,
    app: { name: 'a', upstream: { kind: 'http', url: new URL(origin), origin } } as unknown as CompiledApp,
    pools: { get: () => pool } as unknown as UpstreamPools,
    sessionCookie: 'pc_session',
    observe: (_app, status) => observed.push({ status }),
  };
  const gw: Server = createServer((req, res) => forward(req, res, req.url ?? '/', { host: 'a.test' }, ctx));
  await new Promise<void>((r) => gw.listen(0, '127.0.0.1', r));
  return {
    port: (gw.address() as AddressInfo).port,
    observed,
    close: async () => {
      gw.closeAllConnections();
      gw.close();
      await pool.destroy();
      upstream.closeAllConnections();
      upstream.close();
    },
  };
}

function fetchRaw(port: number, method: string, path: string): Promise<{ status: number; headers: IncomingMessage['headers']; rawHeaders: string[]; body: string }> {
  return new Promise((resolve, reject) => {
    request({ port, host: '127.0.0.1', method, path, agent: false }, (res) => {
      let body = '';
      res
        .setEncoding('utf8')
        .on('data', (c: string) => (body += c))
        .on('end', () => resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body }));
    })
      .on('error', reject)
      .end();
  });
}

test('HEAD, 204 and 304 answers reach the client without a body, headers intact', async () => {
  const r = await rig((req, res) => {
    if (req.url === '/204') {
      res.writeHead(204, { 'x-app': 'yes' });
      res.end();
    } else if (req.url === '/304') {
      res.writeHead(304, { etag: '"v1"' });
      res.end();
    } else {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5' });
      res.end(req.method === 'HEAD' ? undefined : 'hello');
    }
  });
  try {
    const head = await fetchRaw(r.port, 'HEAD', '/');
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '5');
    assert.equal(head.body, '');
    const get = await fetchRaw(r.port, 'GET', '/');
    assert.equal(get.body, 'hello');
    const nc = await fetchRaw(r.port, 'GET', '/204');
    assert.equal(nc.status, 204);
    assert.equal(nc.headers['x-app'], 'yes');
    assert.equal(nc.body, '');
    const nm = await fetchRaw(r.port, 'GET', '/304');
    assert.equal(nm.status, 304);
    assert.equal(nm.headers.etag, '"v1"');
    assert.equal(nm.body, '');
    assert.deepEqual(
      r.observed.map((o) => o.status),
      [200, 200, 204, 304],
    );
  } finally {
    await r.close();
  }
});

test("every app Set-Cookie line reaches the client except the gateway's own; hop-by-hop headers do not", async () => {
  const r = await rig((_req, res) => {
    res.setHeader('set-cookie', ['a=1; Path=/', 'pc_session=forged; Path=/', 'b=2; HttpOnly']);
    res.setHeader('connection', 'keep-alive, x-secret-hop');
    res.setHeader('x-secret-hop', 'should not pass');
    res.setHeader('keep-alive', 'timeout=99');
    res.setHeader('content-length', '2');
    res.end('ok');
  });
  try {
    const got = await fetchRaw(r.port, 'GET', '/');
    assert.equal(got.status, 200);
    assert.deepEqual(got.headers['set-cookie'], ['a=1; Path=/', 'b=2; HttpOnly']);
    assert.equal(got.headers['x-secret-hop'], undefined);
    assert.notEqual(got.headers['keep-alive'], 'timeout=99');
    assert.equal(got.body, 'ok');
  } finally {
    await r.close();
  }
});

test('a client that leaves mid-response ends the request to the app', async () => {
  let appSawClose!: () => void;
  const closed = new Promise<void>((resolve) => (appSawClose = resolve));
  const r = await rig((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.write(Buffer.alloc(1024, 1));
    // never ends on its own: only the gateway giving up closes it
    res.on('close', () => appSawClose());
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const req = request({ port: r.port, host: '127.0.0.1', path: '/', agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      req.on('timeout', () => reject(new Error('no data')));
      req.end();
    });
    await closed;
    // the metrics hear of it once, with the status the app had answered
    for (let i = 0; i < 50 && r.observed.length === 0; i++) await new Promise((res) => setImmediate(res));
    assert.deepEqual(r.observed, [{ status: 200 }]);
  } finally {
    await r.close();
  }
});
