/**
 * Idle connections are found by a sweep (net/listener.ts) that compares byte counts over time.
 * That time must be monotonic: measured with the wall clock, a forward step (an NTP step, a VM
 * resumed after a pause) made every connection with a request in hand look idle for the whole
 * limit at once, so a legitimate upload that had paused for a moment was answered 408 and cut;
 * a backward step let a stalled client keep its connection for the length of the step.
 *
 * Here: idle limit 60 s, an upload pauses for a second, the wall clock jumps two minutes ahead;
 * the connection must still be open a few sweeps later.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawConnection } from '../helpers/raw-http.js';
import { idleSweepMs } from '../../src/net/listener.js';

const IDLE_MS = 60_000;
let up: Upstream;
let gw: TestGateway;

before(async () => {
  up = await startUpstream();
  gw = await startTestGateway(
    `
apps:
  - name: files
    hosts: ["files.test"]
    upstream: "${up.url}"
    rules:
      - { networks: ["127.0.0.0/8"], policy: bypass }
`,
    { connectionLimits: { idleMs: IDLE_MS } },
  );
});

after(async () => {
  await gw?.close();
  await up?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a step of the wall clock does not cut a paused upload', { timeout: 20_000 }, async () => {
  const sweep = idleSweepMs(IDLE_MS);
  const c = rawConnection(gw.port);
  await c.ready;
  c.write(['POST /upload HTTP/1.1', 'Host: files.test', 'Content-Length: 100', 'Connection: close', '', ''].join('\r\n') + 'z'.repeat(10));
  await sleep(sweep + 200); // a sweep has seen the connection
  const real = Date.now;
  Date.now = () => real() + 2 * IDLE_MS;
  let closed = false;
  void c.closed.then(() => (closed = true));
  try {
    await sleep(3 * sweep);
  } finally {
    Date.now = real;
  }
  assert.equal(closed, false, 'the paused upload was cut when the wall clock stepped');
  // and it is still served when it goes on
  c.write('z'.repeat(90));
  const r = await c.closed;
  assert.equal(r.status, 200, r.head);
});
