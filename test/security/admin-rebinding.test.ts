/**
 * DNS rebinding against the admin listener.
 *
 * The attack: a page on evil.example, open in an admin's browser, has its name re-resolved to
 * 127.0.0.1. The browser then treats the loopback admin listener as evil.example itself: same
 * origin, so the page can read /metrics (served without a token on loopback), /readyz, and the
 * console's pages, and post to them. It is the class of Transmission's RPC server
 * (CVE-2018-5702), of Geth's and of many "localhost-only" dashboards; Rails and Django answer it
 * with a Host allowlist. Here the console had a Host check, but skipped it for any peer in
 * `trusted_proxies`, and a gateway with nginx on the same host trusts 127.0.0.1: the browser's
 * own connection came from a "trusted proxy". /metrics, /readyz and the API had no check at all.
 *
 * The safe answer: every request to the admin listener, whoever the peer is, must carry a Host
 * that no rebinding can produce: an IP address literal, `localhost`, or the configured
 * `admin.listen` host (any port); anything else is 421 before any route runs. The CLI (which
 * addresses the listener by IP) and a TLS proxy that sends the listener's address as Host (and
 * the browser's name as X-Forwarded-Host) keep working.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { ManualClock, cryptoRandom } from '../../src/clock.js';
import { buildAdminApp } from '../../src/admin/server.js';
import { AdminToken } from '../../src/admin/token.js';
import { GatewayMetrics } from '../../src/admin/metrics.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp } from '../helpers/raw-http.js';

const TOKEN = 'Rb4vN8xR2mK5tW9yB4cH7jL1pF6sD0gA2eU8iO3uY5q';
const AUTH = { authorization: `Bearer ${TOKEN}` };
/** Names a rebinding page could be served under. */
const HOSTILE = ['evil.example', 'evil.example:9090', 'localhost.evil.example', '127.0.0.1.evil.example:9090', 'admin'];
/** What a browser or a client sends when it addressed the listener by address. */
const DIRECT = ['127.0.0.1:9090', '127.0.0.1', 'localhost:9090', 'LOCALHOST', '[::1]:9090', '10.20.30.40:9090'];

let clock: ManualClock;
let tg: TestGateway;
let app: FastifyInstance;
let metrics: GatewayMetrics;

before(async () => {
  clock = new ManualClock(Date.UTC(2026, 2, 1, 12, 0, 0));
  tg = await startTestGateway(
    `
# nginx runs on this host, in front of the gateway: the usual reason to trust loopback
trusted_proxies: ["127.0.0.1/32"]
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "builtin:whoami"
    rules: [ { policy: password } ]
`,
    { clock, random: cryptoRandom },
  );
  metrics = new GatewayMetrics(tg.gw.rt, { processMetrics: false });
  // as on a loopback listener: /metrics without a token
  app = await buildAdminApp(tg.gw.rt, { token: AdminToken.fixed(TOKEN, clock), metrics, publicMetrics: true });
});

after(async () => {
  await app?.close();
  metrics?.close();
  await tg?.close();
});

const inject = (method: 'GET' | 'POST', url: string, host: string, headers: Record<string, string> = {}, payload?: string) =>
  app.inject({ method, url, remoteAddress: '127.0.0.1', headers: { host, ...headers }, ...(payload !== undefined ? { payload } : {}) });

test('a hostile Host is refused on every route, though the peer is a trusted proxy', async () => {
  for (const host of HOSTILE) {
    const routes = [
      await inject('GET', '/metrics', host),
      await inject('GET', '/readyz', host),
      await inject('GET', '/api/lockdown', host, AUTH),
      await inject('POST', '/api/lockdown', host, { ...AUTH, 'content-type': 'application/json' }, JSON.stringify({ on: true })),
      await inject('GET', '/console/login', host),
      await inject('POST', '/console/login', host, { origin: `http://${host}`, 'content-type': 'application/x-www-form-urlencoded' }, `token=${TOKEN}`),
      // what the page itself may add cannot help it (fetch can set these headers)
      await inject('GET', '/metrics', host, { 'x-forwarded-host': '127.0.0.1:9090', 'x-forwarded-for': '127.0.0.1' }),
      await inject('GET', '/nope', host),
    ];
    for (const r of routes) {
      assert.equal(r.statusCode, 421, `${host}: ${r.statusCode} ${r.body.slice(0, 120)}`);
      assert.doesNotMatch(r.body, /portcullis_|"status":"ready"/, 'nothing of the route leaks');
      assert.equal(r.cookies.length, 0);
    }
  }
  assert.equal(tg.gw.rt.lockdown.on, false, 'the rebinding page did not turn lockdown on');
});

test('a missing or malformed Host is refused too', async () => {
  for (const host of ['exa mple', 'a/b', '127.0.0.1:9090:1', '1.2.3']) {
    const r = await inject('GET', '/readyz', host);
    assert.equal(r.statusCode, 421, JSON.stringify(host));
  }
  // HTTP/1.0 needs no Host; the listener still wants one
  const none = await rawHttp(tg.gw.adminPort, 'GET /readyz HTTP/1.0\r\n\r\n');
  assert.equal(none.status, 421, none.head);
});

test('a Host naming the listener by address works on every route', async () => {
  for (const host of DIRECT) {
    assert.equal((await inject('GET', '/metrics', host)).statusCode, 200, host);
    assert.equal((await inject('GET', '/readyz', host)).statusCode, 200, host);
    assert.equal((await inject('GET', '/api/lockdown', host, AUTH)).statusCode, 200, host);
    assert.equal((await inject('GET', '/console/login', host)).statusCode, 200, host);
  }
});

test('a TLS proxy that sends the listener address as Host and the browser name as X-Forwarded-Host still serves the console', async () => {
  const r = await inject(
    'POST',
    '/console/login',
    '127.0.0.1:9090',
    { origin: 'https://admin.example.org', 'x-forwarded-host': 'admin.example.org', 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.9', 'content-type': 'application/x-www-form-urlencoded' },
    `token=${TOKEN}`,
  );
  assert.equal(r.statusCode, 303, r.body);
});

test('the running admin listener applies the same check (and the CLI-style request passes)', async () => {
  const base = `http://127.0.0.1:${tg.gw.adminPort}`;
  const evil = await request(`${base}/readyz`, { headers: { host: 'evil.example' } });
  assert.equal(evil.statusCode, 421);
  await evil.body.text();
  const metricsEvil = await request(`${base}/metrics`, { headers: { host: `evil.example:${tg.gw.adminPort}` } });
  assert.equal(metricsEvil.statusCode, 421);
  assert.doesNotMatch(await metricsEvil.body.text(), /portcullis_/);
  const ok = await request(`${base}/readyz`);
  assert.equal(ok.statusCode, 200);
  assert.deepEqual(await ok.body.json(), { status: 'ready' });
});

test('admin.hosts: a name the operator lists is accepted (a proxy passing the public name); nothing else becomes so', async () => {
  const { loadConfigText } = await import('../../src/config/load.js');
  const r = loadConfigText(
    `admin: { listen: "127.0.0.1:9090", hosts: ["Admin.Example.org", "ops.example.org"] }\napps: [{ name: a, hosts: [a.example.org], upstream: "builtin:whoami", rules: [{ policy: deny }] }]\n`,
    'p.yaml',
    { cwd: '/tmp', checkFiles: false },
  );
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  const hosts = r.ok ? r.config.admin.hosts : [];
  assert.deepEqual([...hosts], ['admin.example.org', 'ops.example.org']);
  const { adminHostOk } = await import('../../src/admin/server.js');
  for (const h of ['admin.example.org', 'ADMIN.example.org:443', 'ops.example.org:8443']) assert.ok(adminHostOk(h, '127.0.0.1', hosts), h);
  // the rebinding names stay refused
  for (const h of [...HOSTILE, 'admin.example.org.evil.example', 'evil-admin.example.org', 'example.org']) assert.ok(!adminHostOk(h, '127.0.0.1', hosts), h);
  // and without admin.hosts, the public name is refused as before
  assert.ok(!adminHostOk('admin.example.org', '127.0.0.1'));
});
