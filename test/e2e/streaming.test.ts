/**
 * Bodies stream both ways: a 1 GiB download and a 1 GiB upload pass through the gateway with
 * constant memory (back-pressure end to end, nothing buffered whole), and a slow upstream gets a
 * 504 page while the gateway stays responsive.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request } from 'undici';
import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';

const GiB = 1024 ** 3;
let up: Upstream;
let gw: TestGateway;

before(async () => {
  up = await startUpstream();
  gw = await startTestGateway(`
upstream_timeouts: { connect: 2s, headers: 500ms, idle: 30s }
apps:
  - name: files
    hosts: ["files.test"]
    upstream: "${up.url}"
    rules:
      - { networks: ["127.0.0.0/8"], policy: bypass }
`);
});

after(async () => {
  await gw?.close();
  await up?.close();
});

// What "constant memory" means is memory still held, not garbage the collector has not reached
// yet: Node 24's larger young generation left 130-150 MiB of garbage at peak either way. So each
// sample collects first (the collector made callable for this test only).
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

function rssMiB(): number {
  collect();
  return process.memoryUsage().rss / 1024 / 1024;
}

test('a 1 GiB download streams through in constant memory', { timeout: 120_000 }, async () => {
  const before = rssMiB();
  let peak = before;
  const r = await request(`${gw.url}/big?bytes=${GiB}`, { headers: { host: 'files.test' } });
  assert.equal(r.statusCode, 200);
  let n = 0;
  for await (const chunk of r.body) {
    n += (chunk as Buffer).length;
    if ((n & 0x3ffffff) < (chunk as Buffer).length) peak = Math.max(peak, rssMiB());
  }
  assert.equal(n, GiB);
  assert.ok(peak - before < 128, `RSS grew ${Math.round(peak - before)} MiB while 1 GiB passed`);
});

test('a 1 GiB upload streams through in constant memory and arrives intact', { timeout: 120_000 }, async () => {
  const chunk = Buffer.alloc(1024 * 1024, 0x61);
  let sent = 0;
  const hash = createHash('sha256');
  const body = new Readable({
    read() {
      if (sent >= GiB) return this.push(null);
      sent += chunk.length;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  const before = rssMiB();
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, rssMiB())), 50);
  const r = await request(`${gw.url}/upload`, { method: 'POST', headers: { host: 'files.test', 'content-length': String(GiB) }, body });
  clearInterval(timer);
  const res = (await r.body.json()) as { bytes: number; sha256: string };
  assert.equal(r.statusCode, 200);
  assert.equal(res.bytes, GiB);
  assert.equal(res.sha256, hash.digest('hex'));
  assert.ok(peak - before < 128, `RSS grew ${Math.round(peak - before)} MiB while 1 GiB passed`);
});

test('a slow upstream gets a 504 page, and the gateway keeps answering', async () => {
  const slow = await rawHttp(gw.port, get('/slow?ms=3000', 'files.test'));
  assert.equal(slow.status, 504);
  assert.match(slow.body, /did not answer in time/);
  const fast = await rawHttp(gw.port, get('/quick', 'files.test'));
  assert.equal(fast.status, 200);
});
