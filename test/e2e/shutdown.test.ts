/**
 * Rollouts (issue 14, item 4), over real sockets with a short injected drain and grace: on
 * SIGTERM (`Gateway.shutdown`) /readyz turns 503 at once while the listener keeps serving for the
 * drain; then new connections are refused, a slow request in flight still gets its whole answer
 * (and its keep-alive connection is ended once idle, so shutdown does not wait out the grace),
 * WebSockets are closed, a request slower than the grace is cut, and every phase is logged.
 */
import { strict as assert } from 'node:assert';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import WebSocket from 'ws';
import { createLogger } from '../../src/audit/logger.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { get, rawHttp } from '../helpers/raw-http.js';

let up: Upstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up?.close();
});

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const dest = new Writable({
    write(chunk, _e, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: createLogger({ level: 'info', destination: dest }), lines };
}

const config = (drain: string, grace: string) => `shutdown: { drain: ${drain}, grace: ${grace} }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    websocket: true
    rules:
      - { policy: bypass }
`;

async function readyz(gw: TestGateway): Promise<number> {
  return (await rawHttp(gw.gw.adminPort, get('/readyz', `127.0.0.1:${gw.gw.adminPort}`))).status;
}

/** Whether a new TCP connection to the port is accepted. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function until(pred: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) assert.fail('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const msgs = (lines: Array<Record<string, unknown>>) => lines.map((l) => String(l.msg));

describe('SIGTERM: drain, then grace', () => {
  it('readyz 503 at once, serves during the drain, refuses after it, and the slow request completes', async () => {
    const log = capture();
    const gw = await startTestGateway(config('400ms', '5s'), { logger: log.logger });
    try {
      assert.equal(await readyz(gw), 200);
      // a slow request on a keep-alive connection, in flight across the whole drain
      const slow = request(`${gw.url}/slow?ms=900`, { headers: { host: 'mail.test' } }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }));
      await until(() => up.requests.some((r) => r.url.startsWith('/slow')));
      const t0 = Date.now();
      const done = gw.gw.shutdown('SIGTERM');
      assert.equal(await readyz(gw), 503, '/readyz is 503 from the first moment');
      const during = await rawHttp(gw.port, get('/during-drain', 'mail.test'));
      assert.equal(during.status, 200, 'the listener still serves during the drain');
      await until(() => msgs(log.lines).some((m) => m.startsWith('shutdown: drain over')));
      assert.ok(Date.now() - t0 >= 350, 'the drain lasted as configured');
      assert.equal(await accepts(gw.port), false, 'new connections are refused after the drain');
      const r = await slow;
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.body).url, '/slow?ms=900', 'the in-flight request got its whole answer');
      await done;
      assert.ok(Date.now() - t0 < 3000, 'the idle keep-alive connection was ended: no waiting out the 5 s grace');
      const m = msgs(log.lines);
      for (const phase of [/^shutdown: not ready/, /^shutdown: drain over/, /^shutdown: every request in flight finished/, /^shutdown: done/]) {
        assert.ok(m.some((x) => phase.test(x)), `logged: ${phase}; got ${JSON.stringify(m)}`);
      }
      assert.equal(log.lines.find((l) => String(l.msg).startsWith('shutdown: every'))?.inFlight, 1);
    } finally {
      await gw.dir.cleanup();
    }
  });

  it('a request slower than the grace is cut when the grace is over, and that is logged', async () => {
    const log = capture();
    const gw = await startTestGateway(config('0s', '300ms'), { logger: log.logger });
    try {
      const slow = rawHttp(gw.port, get('/slow?ms=5000', 'mail.test'), { timeoutMs: 8000 });
      await until(() => up.requests.some((r) => r.url === '/slow?ms=5000'));
      const t0 = Date.now();
      await gw.gw.shutdown('SIGTERM');
      const took = Date.now() - t0;
      assert.ok(took >= 250 && took < 2500, `grace honoured (${took} ms)`);
      assert.ok((await slow).closedEmpty, 'cut');
      const cut = log.lines.find((l) => String(l.msg).startsWith('shutdown: grace over'));
      assert.equal(cut?.cut, 1);
    } finally {
      await gw.dir.cleanup();
    }
  });

  it('WebSockets are closed after the drain, and counted in the log', async () => {
    const log = capture();
    const gw = await startTestGateway(config('200ms', '2s'), { logger: log.logger });
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/socket`, { headers: { host: 'mail.test' } });
      await new Promise<void>((resolve, reject) => {
        ws.on('open', () => ws.send('ping'));
        ws.once('message', () => resolve());
        ws.on('error', reject);
      });
      const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
      ws.on('error', () => undefined);
      const done = gw.gw.shutdown('SIGTERM');
      await new Promise((r) => setTimeout(r, 100));
      ws.send('still open during the drain');
      assert.equal(ws.readyState, WebSocket.OPEN);
      const code = await closed;
      assert.equal(code, 1001, 'closed with 1001 going away');
      await done;
      assert.equal(log.lines.find((l) => l.msg === 'shutdown: WebSockets closed')?.websockets, 1);
    } finally {
      await gw.dir.cleanup();
    }
  });

  it('a second call closes at once (a second signal)', async () => {
    const gw = await startTestGateway(config('30s', '30s'), { logger: capture().logger });
    try {
      const t0 = Date.now();
      const first = gw.gw.shutdown('SIGTERM');
      await new Promise((r) => setTimeout(r, 50));
      await gw.gw.shutdown('SIGTERM');
      await first;
      assert.ok(Date.now() - t0 < 2000);
    } finally {
      await gw.dir.cleanup();
    }
  });
});

describe('shutdown config', () => {
  it('defaults to drain 10s, grace 30s, and validates durations', async () => {
    const { loadConfigText } = await import('../../src/config/index.js');
    const apps = 'apps:\n  - { name: a, hosts: [a.test], upstream: builtin:whoami, rules: [{ policy: deny }] }\n';
    const d = loadConfigText(apps, 'p.yaml');
    assert.ok(d.ok);
    assert.deepEqual(d.config.shutdown, { drainMs: 10_000, graceMs: 30_000 });
    const bad = loadConfigText(`shutdown: { drain: 10, grace: 2h, wait: 1s }\n${apps}`, 'p.yaml');
    assert.ok(!bad.ok);
    const text = bad.issues.map((i) => `${i.line}:${i.col} ${i.path}: ${i.message}`).join('\n');
    assert.match(text, /shutdown\.drain: .*no unit/);
    assert.match(text, /shutdown\.grace: at most 10m/);
    assert.match(text, /unknown key "wait"/);
  });
});
