/**
 * An app that cannot be reached gets the PC_UPSTREAM_UNREACHABLE page (502), one that does not
 * answer in time PC_UPSTREAM_TIMEOUT (504), and the gateway is told which (it logs a line).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { forward, type ForwardContext } from '../../src/proxy/forward.js';
import type { UpstreamPools } from '../../src/proxy/upstreams.js';
import type { CompiledApp, CompiledConfig } from '../../src/config/types.js';
import type { ErrorCode } from '../../src/errors.js';
import { freePort } from '../helpers/ports.js';

async function through(origin: string, pool: Pool): Promise<{ status: number; body: string; told: ErrorCode[] }> {
  const told: ErrorCode[] = [];
  const ctx: ForwardContext = {
    cfg: {} as CompiledConfig,
    app: { name: 'a', upstream: { kind: 'http', url: new URL(origin), origin } } as unknown as CompiledApp,
    pools: { get: () => pool } as unknown as UpstreamPools,
    sessionCookie: 'pc_session',
    onUpstreamError: (code) => told.push(code),
  };
  const gw: Server = createServer((req, res) => forward(req, res, '/', { host: 'a.test' }, ctx));
  await new Promise<void>((r) => gw.listen(0, '127.0.0.1', r));
  try {
    const { port } = gw.address() as AddressInfo;
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      request({ port, host: '127.0.0.1', path: '/' }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve({ status: res.statusCode!, body }));
      })
        .on('error', reject)
        .end();
    });
    return { ...r, told };
  } finally {
    gw.close();
    await pool.close();
  }
}

test('an unreachable app: 502 page, PC_UPSTREAM_UNREACHABLE reported', async () => {
  const origin = `http://127.0.0.1:${await freePort()}`;
  const r = await through(origin, new Pool(origin));
  assert.equal(r.status, 502);
  assert.match(r.body, /not reachable/);
  assert.deepEqual(r.told, ['PC_UPSTREAM_UNREACHABLE']);
});

test('an app that does not answer in time: 504 page, PC_UPSTREAM_TIMEOUT reported', async () => {
  const silent = createServer(() => {}); // accepts, never answers
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  try {
    const r = await through(origin, new Pool(origin, { headersTimeout: 200 }));
    assert.equal(r.status, 504);
    assert.deepEqual(r.told, ['PC_UPSTREAM_TIMEOUT']);
  } finally {
    silent.closeAllConnections();
    silent.close();
  }
});
