/**
 * The admin console through `buildAdminApp(...).inject()`, in front of a real gateway runtime (a
 * real config file, so allowlist edits are written and reloaded by the gateway's own reload).
 *
 * What an operator sees: sign in with the token, a dashboard of attempts, attacks, blocks,
 * sessions, lockdown and allowlists, and each button doing what it says to the running gateway.
 * What an attacker sees: no way in without the token (and a per-source limit on guessing it), no
 * action without the session's CSRF token and this console's Origin, no rebinding a hostile name
 * onto the loopback listener, nothing they typed (a user name) rendered as markup.
 */
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import type { Response as InjectResponse } from 'light-my-request';
import { ManualClock, cryptoRandom } from '../../src/clock.js';
import { buildAdminApp } from '../../src/admin/server.js';
import { AdminToken } from '../../src/admin/token.js';
import { GatewayMetrics } from '../../src/admin/metrics.js';
import { barChart, niceCeil } from '../../src/admin/console/chart.js';
import { failureSeries, mostAttacked, recentAttempts } from '../../src/admin/console/stats.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { decodeEntities, hiddenField } from '../helpers/portal.js';

const TOKEN = 'Zq3vN8xR2mK5tW9yB4cH7jL1pF6sD0gA2eU8iO3uY5r';
const HOST = '127.0.0.1:9090';
const ORIGIN = `http://${HOST}`;
const ADMIN_IP = '127.0.0.1';
const PROXY_IP = '127.0.0.3';
const FORM = 'application/x-www-form-urlencoded';

const CONFIG = `
trusted_proxies: ["${PROXY_IP}/32"]
# Where staff sign in from. Keep this comment.
networks:
  office: ["192.0.2.0/24"]   # main building
  vpn: ["198.51.100.0/24"]
lockdown: { networks: [office] }
login_limits:
  per_ip: { max_failures: 3, window: 15m, block: 15m }
  per_user: { max_failures: 3, window: 15m, lockout: 15m }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "builtin:whoami"
    rules:
      - { networks: [office], policy: password }
      - { policy: password }
`;

let clock: ManualClock;
let tg: TestGateway;
let app: FastifyInstance;
let metrics: GatewayMetrics;
let nextIp = 10;

before(async () => {
  clock = new ManualClock(Date.UTC(2026, 2, 1, 12, 0, 0));
  tg = await startTestGateway(CONFIG, { clock, random: cryptoRandom });
  metrics = new GatewayMetrics(tg.gw.rt, { processMetrics: false });
  app = await buildAdminApp(tg.gw.rt, {
    token: AdminToken.fixed(TOKEN, clock),
    metrics,
    reload: (t) => tg.gw.reload(t),
    publicMetrics: false,
    authLimits: { maxFailures: 3, windowMs: 60_000, blockMs: 60_000 },
  });
});

after(async () => {
  await app?.close();
  metrics?.close();
  await tg?.close();
});

beforeEach(async () => {
  const rt = tg.gw.rt;
  await rt.stores.sessions.deleteAll();
  for (const b of await rt.throttle.listBlocks()) {
    if (b.user !== undefined) await rt.throttle.unblock({ user: b.user });
    if (b.source !== undefined) await rt.throttle.unblock({ ip: b.source.split('/')[0]! });
  }
  rt.lockdown = { on: false, since: 0, by: '' };
  clock.advance(2 * 60_000); // any admin sign-in block from an earlier test lapses
});

/** A browser on the console: a cookie jar, this console's Host and Origin. */
class Agent {
  cookies = new Map<string, string>();
  constructor(
    readonly ip = ADMIN_IP,
    readonly headers: Record<string, string> = {},
  ) {}

  private cookieHeader(): Record<string, string> {
    return this.cookies.size ? { cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ') } : {};
  }

  private keep(r: InjectResponse): InjectResponse {
    for (const c of r.cookies as Array<{ name: string; value: string; maxAge?: number }>) {
      if (c.value === '' || c.maxAge === 0) this.cookies.delete(c.name);
      else this.cookies.set(c.name, c.value);
    }
    return r;
  }

  async get(url: string, headers: Record<string, string> = {}): Promise<InjectResponse> {
    return this.keep(await app.inject({ method: 'GET', url, remoteAddress: this.ip, headers: { host: HOST, ...this.headers, ...this.cookieHeader(), ...headers } }));
  }

  async post(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<InjectResponse> {
    return this.keep(
      await app.inject({
        method: 'POST',
        url,
        remoteAddress: this.ip,
        headers: { host: HOST, origin: ORIGIN, 'content-type': FORM, ...this.headers, ...this.cookieHeader(), ...headers },
        payload: new URLSearchParams(fields).toString(),
      }),
    );
  }

  async signIn(token = TOKEN): Promise<InjectResponse> {
    return this.post('/console/login', { token });
  }

  /** The CSRF token of the dashboard's forms. */
  async csrf(): Promise<string> {
    const r = await this.get('/console');
    assert.equal(r.statusCode, 200, r.body);
    const t = hiddenField(r.body, 'csrf');
    assert.ok(t, 'the dashboard carries a CSRF token');
    return t;
  }

  /** POST an action with the session's CSRF token. */
  async act(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<InjectResponse> {
    return this.post(url, { csrf: await this.csrf(), ...fields }, headers);
  }
}

async function signedIn(ip = ADMIN_IP): Promise<Agent> {
  const a = new Agent(ip);
  const r = await a.signIn();
  assert.equal(r.statusCode, 303, r.body);
  return a;
}

/** A fresh loopback source for tests that count failed sign-ins. */
function freshIp(): string {
  return `127.0.1.${nextIp++}`;
}

/** Visible text of a page, entities decoded and tags dropped. */
function text(body: string): string {
  return decodeEntities(body.replace(/<[^>]+>/g, ' ')).replace(/\s+/g, ' ');
}

async function failLogin(user: string, ip: string, n: number): Promise<void> {
  const rt = tg.gw.rt;
  for (let i = 0; i < n; i++) {
    await rt.throttle.recordFailure({ ip, user, passwordFingerprint: createHash('sha256').update(`${user}:${ip}:${i}:${clock.now()}`).digest('hex'), familiar: false });
  }
}

// ---------------------------------------------------------------------------------------------
// Signing in

test('without a session every console page leads to the sign-in form; the form is a labelled password field under a strict CSP', async () => {
  const a = new Agent();
  const r = await a.get('/console');
  assert.equal(r.statusCode, 303);
  assert.equal(r.headers.location, '/console/login');

  const form = await a.get('/console/login');
  assert.equal(form.statusCode, 200);
  assert.match(String(form.headers['content-type']), /^text\/html/);
  assert.match(form.body, /<label for="token">Admin token<\/label>/);
  assert.match(form.body, /<input type="password" id="token" name="token"/);
  assert.doesNotMatch(form.body, /<script/i);
  const csp = String(form.headers['content-security-policy']);
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /form-action 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /script-src|unsafe-inline/);
  // the one stylesheet on the page is the one the policy names by hash
  const style = /<style>([\s\S]*?)<\/style>/.exec(form.body)![1]!;
  assert.ok(csp.includes(`'sha256-${createHash('sha256').update(style).digest('base64')}'`));
  assert.equal(form.headers['x-frame-options'], 'DENY');
  assert.equal(form.headers['cache-control'], 'no-store');
  assert.equal(form.headers['referrer-policy'], 'same-origin');

  // actions without a session go to sign-in too, and do nothing
  const act = await a.post('/console/lockdown', { state: 'on', confirm: 'yes', csrf: 'x' });
  assert.equal(act.statusCode, 303);
  assert.equal(act.headers.location, '/console/login');
  assert.equal(tg.gw.rt.lockdown.on, false);
});

test('a wrong token gets a 401 page and no cookie; the right one a new HttpOnly, SameSite=Strict session cookie and the dashboard', async () => {
  const a = new Agent(freshIp());
  const wrong = await a.signIn('not-the-token-not-the-token-not-the-token');
  assert.equal(wrong.statusCode, 401);
  assert.match(text(wrong.body), /That is not the admin token/);
  assert.equal(wrong.cookies.length, 0);
  const empty = await a.signIn('');
  assert.equal(empty.statusCode, 401);

  const ok = await a.signIn(` ${TOKEN}\n`); // pasted with white space around it
  assert.equal(ok.statusCode, 303);
  assert.equal(ok.headers.location, '/console');
  const c = (ok.cookies as Array<Record<string, unknown>>).find((x) => x.name === 'portcullis_admin')!;
  assert.ok(c, 'portcullis_admin is set over plain http');
  assert.match(String(c.value), /^[A-Za-z0-9_-]{43}$/);
  assert.equal(c.httpOnly, true);
  assert.equal(c.sameSite, 'Strict');
  assert.equal(c.path, '/');
  assert.equal(c.maxAge, 8 * 3600);
  assert.notEqual(c.secure, true);
  assert.ok(!ok.body.includes(TOKEN) && !String(ok.headers['set-cookie']).includes(TOKEN), 'the token itself is never sent back');

  const dash = await a.get('/console');
  assert.equal(dash.statusCode, 200);
  assert.match(dash.body, /<h2 id="lockdown-h">Lockdown<\/h2>/);
  assert.match(dash.body, /action="\/console\/logout"/);

  // signing in again replaces the session: the old cookie is worthless
  const old = a.cookies.get('portcullis_admin')!;
  assert.equal((await a.signIn()).statusCode, 303);
  assert.notEqual(a.cookies.get('portcullis_admin'), old);
  const stale = await app.inject({ method: 'GET', url: '/console', remoteAddress: a.ip, headers: { host: HOST, cookie: `portcullis_admin=${old}` } });
  assert.equal(stale.statusCode, 303);
});

test('guessing the token is limited per source, like the admin API: past the limit even the right token waits', async () => {
  const a = new Agent(freshIp());
  for (let i = 0; i < 3; i++) assert.equal((await a.signIn(`guess-${i}-guess-guess-guess-guess-guess`)).statusCode, 401);
  const blocked = await a.signIn();
  assert.equal(blocked.statusCode, 429);
  assert.ok(Number(blocked.headers['retry-after']) > 0);
  assert.equal(blocked.cookies.length, 0);
  // another source is not affected, and the block lifts by itself
  assert.equal((await new Agent(freshIp()).signIn()).statusCode, 303);
  clock.advance(61_000);
  assert.equal((await a.signIn()).statusCode, 303);
});

test('a console session ends after 30 minutes idle and after 8 hours in all, and when the admin token is rotated', async () => {
  const a = await signedIn();
  clock.advance(29 * 60_000);
  assert.equal((await a.get('/console')).statusCode, 200);
  clock.advance(30 * 60_000);
  assert.equal((await a.get('/console')).statusCode, 303, 'idle for 30 minutes');

  const b = await signedIn();
  for (let t = 0; t < 8 * 60; t += 20) {
    clock.advance(20 * 60_000);
    const r = await b.get('/console');
    if (t + 20 < 8 * 60) assert.equal(r.statusCode, 200, `active at ${t + 20} min`);
    else assert.equal(r.statusCode, 303, 'eight hours after sign-in');
  }

  // a token file rotated by the operator ends the sessions opened with the old token
  const file = tg.gw.rt.config.admin.tokenFile;
  const fileToken = await AdminToken.open(file, { random: cryptoRandom, clock });
  const rotApp = await buildAdminApp(tg.gw.rt, { token: fileToken, metrics, publicMetrics: false });
  try {
    const old = (await readFile(file, 'utf8')).trim();
    const login = await rotApp.inject({ method: 'POST', url: '/console/login', headers: { host: HOST, origin: ORIGIN, 'content-type': FORM }, payload: `token=${encodeURIComponent(old)}` });
    assert.equal(login.statusCode, 303);
    const cookie = `portcullis_admin=${(login.cookies as Array<{ value: string }>)[0]!.value}`;
    const get = () => rotApp.inject({ method: 'GET', url: '/console', headers: { host: HOST, cookie } });
    assert.equal((await get()).statusCode, 200);
    await writeFile(file, `${'R'.repeat(43)}\n`, { mode: 0o600 });
    clock.advance(2000);
    const after = await get();
    assert.equal(after.statusCode, 303);
    assert.equal(after.headers.location, '/console/login');
  } finally {
    await rotApp.close();
  }
});

test('signing out ends the session and clears the cookie; it needs the CSRF token', async () => {
  const a = await signedIn();
  const cookie = a.cookies.get('portcullis_admin')!;
  assert.equal((await a.post('/console/logout', { csrf: 'wrong' })).statusCode, 403);
  assert.equal((await a.get('/console')).statusCode, 200, 'a forged sign-out does nothing');
  const out = await a.act('/console/logout', {});
  assert.equal(out.statusCode, 303);
  assert.equal(out.headers.location, '/console/login');
  assert.match(String(out.headers['set-cookie']), /portcullis_admin=;/);
  const again = await app.inject({ method: 'GET', url: '/console', headers: { host: HOST, cookie: `portcullis_admin=${cookie}` } });
  assert.equal(again.statusCode, 303);
});

// ---------------------------------------------------------------------------------------------
// Cross-site requests and rebinding

test('an action without the CSRF token, with a wrong one, or from a foreign Origin is refused with 403 and changes nothing', async () => {
  const a = await signedIn();
  const csrf = await a.csrf();
  const cases: Array<[string, Record<string, string>, Record<string, string>]> = [
    ['no token', { state: 'on', confirm: 'yes' }, {}],
    ['wrong token', { state: 'on', confirm: 'yes', csrf: `${csrf.slice(0, -1)}${csrf.endsWith('A') ? 'B' : 'A'}` }, {}],
    ['foreign Origin', { state: 'on', confirm: 'yes', csrf }, { origin: 'https://evil.example' }],
    ['Origin on another port', { state: 'on', confirm: 'yes', csrf }, { origin: 'http://127.0.0.1:9091' }],
    ['Origin null', { state: 'on', confirm: 'yes', csrf }, { origin: 'null' }],
    ['https Origin for an http console', { state: 'on', confirm: 'yes', csrf }, { origin: 'https://127.0.0.1:9090' }],
  ];
  for (const [what, fields, headers] of cases) {
    const r = await a.post('/console/lockdown', fields, headers);
    assert.equal(r.statusCode, 403, what);
    assert.match(String(r.headers['content-type']), /^text\/html/);
    assert.equal(tg.gw.rt.lockdown.on, false, what);
  }
  // no Origin at all, but the browser says the request is cross-site
  const noOrigin = await app.inject({
    method: 'POST',
    url: '/console/lockdown',
    headers: { host: HOST, 'content-type': FORM, 'sec-fetch-site': 'cross-site', cookie: `portcullis_admin=${a.cookies.get('portcullis_admin')}` },
    payload: new URLSearchParams({ state: 'on', confirm: 'yes', csrf }).toString(),
  });
  assert.equal(noOrigin.statusCode, 403);
  // a sign-in posted from another site is refused before the token is looked at
  const x = await new Agent(freshIp()).post('/console/login', { token: TOKEN }, { origin: 'https://evil.example' });
  assert.equal(x.statusCode, 403);
  assert.equal(x.cookies.length, 0);
  assert.equal(tg.gw.rt.lockdown.on, false);
});

test('a hostile name rebound to the loopback listener is refused; a trusted TLS proxy gets a __Host- Secure cookie', async () => {
  for (const host of ['evil.example:9090', 'evil.example', 'localhost.evil.example']) {
    const r = await app.inject({ method: 'GET', url: '/console/login', headers: { host } });
    assert.equal(r.statusCode, 421, host);
    const p = await app.inject({ method: 'POST', url: '/console/login', headers: { host, origin: `http://${host}`, 'content-type': FORM }, payload: `token=${TOKEN}` });
    assert.equal(p.statusCode, 421, host);
    assert.equal(p.cookies.length, 0);
  }
  for (const host of ['localhost:9090', '127.0.0.1:9090', '[::1]:9090']) {
    assert.equal((await app.inject({ method: 'GET', url: '/console/login', headers: { host } })).statusCode, 200, host);
  }
  // a name is fine through a trusted proxy, which also says the browser used https
  const proxied = new Agent(PROXY_IP, { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'admin.example.org' });
  const r = await proxied.post('/console/login', { token: TOKEN }, { origin: 'https://admin.example.org' });
  assert.equal(r.statusCode, 303, r.body);
  const c = (r.cookies as Array<Record<string, unknown>>)[0]!;
  assert.equal(c.name, '__Host-portcullis-admin');
  assert.equal(c.secure, true);
  assert.equal(c.path, '/');
  assert.equal(c.domain, undefined);
  assert.equal((await proxied.get('/console')).statusCode, 200);
  // the same claims from a peer that is not a trusted proxy are ignored
  const spoof = await app.inject({
    method: 'GET',
    url: '/console/login',
    remoteAddress: '127.0.0.9',
    headers: { host: 'admin.example.org', 'x-forwarded-host': 'admin.example.org', 'x-forwarded-proto': 'https' },
  });
  assert.equal(spoof.statusCode, 421);
});

test('the console accepts form posts only, and its pages are HTML even for errors; the JSON API is untouched', async () => {
  const json = await app.inject({ method: 'POST', url: '/console/login', headers: { host: HOST, origin: ORIGIN, 'content-type': 'application/json' }, payload: JSON.stringify({ token: TOKEN }) });
  assert.equal(json.statusCode, 415);
  assert.match(String(json.headers['content-type']), /^text\/html/);
  assert.equal(json.cookies.length, 0);
  const missing = await app.inject({ method: 'GET', url: '/console/nope', headers: { host: HOST } });
  assert.equal(missing.statusCode, 404);
  assert.match(String(missing.headers['content-type']), /^text\/html/);
  const api = await app.inject({ method: 'GET', url: '/api/lockdown', headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(api.statusCode, 200);
  assert.equal(api.json().on, false);
  // a console session is not an API credential
  const a = await signedIn();
  const viaCookie = await app.inject({ method: 'GET', url: '/api/lockdown', headers: { cookie: `portcullis_admin=${a.cookies.get('portcullis_admin')}` } });
  assert.equal(viaCookie.statusCode, 401);
});

// ---------------------------------------------------------------------------------------------
// The dashboard

test('the dashboard shows recent attempts newest first, the most attacked accounts and sources, and an inline SVG chart; nothing typed by a client is markup', async () => {
  const rt = tg.gw.rt;
  const evil = '<script>alert(1)</script>"onmouseover="x';
  rt.audit.record({ event: 'login_succeeded', ip: '192.0.2.10', user: 'alice', app: 'mail', outcome: 'success' });
  clock.advance(1000);
  for (let i = 0; i < 4; i++) {
    rt.audit.record({ event: 'login_failed', ip: `203.0.113.${i + 1}`, user: 'bob', app: 'mail', outcome: 'failure', reason: 'wrong password' });
  }
  rt.audit.record({ event: 'login_failed', ip: '2001:db8:7:7::1', user: evil, app: 'mail', outcome: 'failure', reason: 'unknown user' });
  rt.audit.record({ event: 'login_failed', ip: '2001:db8:7:7::2', user: 'Bob', app: 'mail', outcome: 'failure', reason: 'wrong password' });
  clock.advance(1000);
  rt.audit.record({ event: 'mfa_failed', ip: '203.0.113.200', user: 'carol', app: 'mail', outcome: 'failure' });
  rt.audit.record({ event: 'session_started', ip: '192.0.2.10', user: 'alice', app: 'mail', outcome: 'success' });

  const a = await signedIn();
  const r = await a.get('/console');
  assert.equal(r.statusCode, 200);
  assert.doesNotMatch(r.body, /<script/i, 'the user name is escaped');
  assert.ok(!r.body.includes('"onmouseover="'), 'no attribute injection');
  assert.match(text(r.body), /<script>alert\(1\)<\/script>"onmouseover="x/, 'it is shown as text');

  const attempts = /<section id="attempts"[\s\S]*?<\/section>/.exec(r.body)![0];
  const rows = [...attempts.matchAll(/<tr><td><time[\s\S]*?<\/tr>/g)].map((m) => text(m[0]));
  assert.match(rows[0]!, /mfa_failed carol 203\.0\.113\.200 mail failure/);
  assert.ok(rows.some((x) => /login_succeeded alice 192\.0\.2\.10/.test(x)));
  assert.ok(!rows.some((x) => /session_started/.test(x)), 'only sign-in attempts are listed');
  assert.ok(rows.findIndex((x) => /login_succeeded/.test(x)) > rows.findIndex((x) => /mfa_failed/.test(x)), 'newest first');

  const attacks = /<section id="attacks"[\s\S]*?<\/section>/.exec(r.body)![0];
  const accountRows = [...attacks.split('Most active sources')[0]!.matchAll(/<tr><td class="mono">[\s\S]*?<\/tr>/g)].map((m) => text(m[0]).trim());
  assert.match(accountRows[0]!, /^Bob 5 2 /, 'bob and Bob are one account: 5 failures from 2 source networks');
  const sourceRows = [...attacks.split('Most active sources')[1]!.matchAll(/<tr><td class="mono">[\s\S]*?<\/tr>/g)].map((m) => text(m[0]).trim());
  assert.match(sourceRows[0]!, /^203\.0\.113\.0\/24 5 2 /, 'IPv4 sources grouped by /24: 5 failures on 2 accounts');
  assert.ok(sourceRows.some((x) => /^2001:db8:7:7::\/64 2 2 /.test(x)), 'IPv6 sources grouped by /64');

  const svg = /<svg class="chart" id="chart-hour"[\s\S]*?<\/svg>/.exec(r.body)![0];
  assert.match(svg, /role="img"/);
  assert.match(svg, /<title id="chart-hour-title">Failed attempts per minute, last hour \(UTC\)<\/title>/);
  assert.doesNotMatch(svg, /style=|<script|on[a-z]+=/i, 'no inline style or script for the CSP to refuse');
  const bars = [...svg.matchAll(/<rect class="bar"[^>]*><title>([^<]*)<\/title>/g)].map((m) => decodeEntities(m[1]!));
  assert.ok(bars.length >= 1 && bars.every((b) => /^\d\d:\d\d: \d+ failures?$/.test(b)), bars.join(' | '));
  assert.equal(bars.reduce((n, b) => n + Number(/: (\d+) failure/.exec(b)![1]), 0), 7, 'every failure is in the chart');
});

test('stats and chart, pure: failures bucketed by minute, labels escaped, an empty window says so', () => {
  const t0 = Date.UTC(2026, 0, 1, 10, 0, 0);
  const ev = (min: number, event: AuditEvent['event'], outcome: AuditEvent['outcome'] = 'failure', user = 'u', ip = '192.0.2.1'): AuditEvent => ({
    ts: new Date(t0 + min * 60_000).toISOString(),
    event,
    ip,
    user,
    outcome,
  });
  const events = [ev(-120, 'login_failed'), ev(1, 'login_failed'), ev(1, 'mfa_failed'), ev(2, 'login_succeeded', 'success'), ev(3, 'totp_replayed', 'denied'), ev(59, 'login_failed')];
  const s = failureSeries(events, t0 + 59 * 60_000 + 30_000, 60_000, 60);
  assert.equal(s.start, t0);
  assert.equal(s.counts.length, 60);
  assert.equal(s.counts[1], 2);
  assert.equal(s.counts[2], 0, 'a success is not a failure');
  assert.equal(s.counts[3], 1, 'a replayed code is');
  assert.equal(s.counts[59], 1);
  assert.equal(s.counts.reduce((a, b) => a + b, 0), 4, 'outside the window is not counted');
  assert.deepEqual(recentAttempts(events, 2).map((e) => e.ts), [events[5]!.ts, events[4]!.ts]);
  assert.equal(mostAttacked([ev(1, 'login_failed', 'failure', 'x', '-')], 5).sources.length, 0, 'a non-address is no source');

  const svg = barChart({ id: 'c', title: 'A <b>&"title"', series: s, label: () => '<i>"x"</i>', labelEvery: 10, unit: 'minute' });
  assert.doesNotMatch(svg, /<b>|<i>/);
  assert.match(svg, /A &#60;b&#62;&#38;&#34;title&#34;/);
  const empty = barChart({ id: 'e', title: 't', series: failureSeries([], t0, 60_000, 60), label: () => 'l', labelEvery: 10, unit: 'minute' });
  assert.match(empty, /No failed attempts in this window/);
  assert.doesNotMatch(empty, /class="bar"/);
  assert.throws(() => barChart({ id: '"><script>', title: 't', series: s, label: () => 'l', labelEvery: 1, unit: 'm' }), RangeError);
  assert.deepEqual([0, 1, 3, 7, 10, 11, 49, 51, 999].map(niceCeil), [1, 1, 5, 10, 10, 20, 50, 100, 1000]);
});

// ---------------------------------------------------------------------------------------------
// Actions

test('unblock: a blocked source (IPv4, or an IPv6 /64) and a locked-out account are listed with buttons that lift them', async () => {
  const rt = tg.gw.rt;
  for (const u of ['erin', 'frank', 'grace']) await failLogin(u, '203.0.113.50', 1); // per_ip.max_failures: 3 -> the source is blocked
  await failLogin('dave', '2001:db8:1:2::5', 3); // per_user too: dave is locked out (unfamiliar networks); the /64 is blocked
  assert.equal((await rt.throttle.check({ ip: '203.0.113.50', user: 'anyone' })).allowed, false);

  const a = await signedIn();
  const page = await a.get('/console');
  const blocks = text(/<section id="blocks"[\s\S]*?<\/section>/.exec(page.body)![0]);
  assert.match(blocks, /source 203\.0\.113\.50 too many failures from this source 15 min Unblock source 203\.0\.113\.50/);
  assert.match(blocks, /source 2001:db8:1:2::\/64/);
  assert.match(blocks, /account dave \(from unfamiliar networks\) account locked out/);
  assert.match(page.body, /<input type="hidden" name="ip" value="2001:db8:1:2::">/, 'an IPv6 source is unblocked by its network address');

  const r = await a.act('/console/unblock', { ip: '203.0.113.50' });
  assert.equal(r.statusCode, 303);
  assert.equal(r.headers.location, '/console#blocks');
  assert.equal((await rt.throttle.check({ ip: '203.0.113.50', user: 'anyone' })).allowed, true);
  const shown = await a.get('/console');
  assert.match(text(shown.body), /Lifted 1 block on source 203\.0\.113\.50\./);
  assert.doesNotMatch(text((await a.get('/console')).body), /Lifted 1 block/, 'the message is shown once');

  assert.equal((await a.act('/console/unblock', { ip: '2001:db8:1:2::' })).statusCode, 303);
  assert.equal((await rt.throttle.check({ ip: '2001:db8:1:2::99', user: 'nobody' })).allowed, true, 'the whole /64 is free');
  assert.equal((await rt.throttle.check({ ip: '2001:db8:1:3::1', user: 'dave' })).allowed, false, 'dave is still locked out');
  assert.equal((await a.act('/console/unblock', { user: 'dave' })).statusCode, 303);
  assert.equal((await rt.throttle.check({ ip: '2001:db8:1:3::1', user: 'dave' })).allowed, true);
  assert.match(text((await a.get('/console')).body), /Nothing is blocked\./);

  const bad = await a.act('/console/unblock', { ip: 'not-an-address' });
  assert.equal(bad.statusCode, 400);
  assert.match(text(bad.body), /"ip" must be an IPv4 or IPv6 address/);
  assert.equal((await a.act('/console/unblock', { ip: '192.0.2.1', user: 'dave' })).statusCode, 400, 'one target at a time');
});

test('sessions: listed with their handles; revoke one by handle, or all of a user', async () => {
  const rt = tg.gw.rt;
  const s1 = await rt.sessions.create({ user: 'alice', amr: ['pwd', 'otp'], pending: 'none', ip: '192.0.2.20' });
  const s2 = await rt.sessions.create({ user: 'alice', amr: ['pwd'], pending: 'mfa', ip: '198.51.100.4' });
  const s3 = await rt.sessions.create({ user: 'bob', amr: ['pwd', 'otp'], pending: 'none', ip: '192.0.2.21' });
  const a = await signedIn();
  const page = await a.get('/console');
  const section = /<section id="sessions"[\s\S]*?<\/section>/.exec(page.body)![0];
  const handles = [...section.matchAll(/name="handle" value="([^"]+)"/g)].map((m) => m[1]!);
  assert.equal(handles.length, 3);
  assert.ok(!section.includes(s1.id) && !section.includes(s2.id), 'session ids never appear');
  assert.match(text(section), /alice \S+ .* 198\.51\.100\.4 pwd pending mfa/);

  const bobHandle = handles.find((h) => section.includes(`value="${h}"><button type="submit" class="quiet">Revoke<span class="vh"> session ${h} of bob`))!;
  const r = await a.act('/console/sessions/revoke', { handle: bobHandle });
  assert.equal(r.statusCode, 303);
  assert.equal(await rt.sessions.lookup(s3.id), null);
  assert.notEqual(await rt.sessions.lookup(s1.id), null);
  assert.match(text((await a.get('/console')).body), /Revoked session \S+: 1 session ended/);

  assert.equal((await a.act('/console/sessions/revoke', { user: 'alice' })).statusCode, 303);
  assert.equal(await rt.sessions.lookup(s1.id), null);
  assert.equal(await rt.sessions.lookup(s2.id), null);
  assert.match(text((await a.get('/console')).body), /Revoked the sessions of alice: 2 sessions ended/);

  const unknown = await a.act('/console/sessions/revoke', { handle: 'AAAAAAAAAAAAAAAA' });
  assert.equal(unknown.statusCode, 404);
  assert.match(text(unknown.body), /no session with handle AAAAAAAAAAAAAAAA/);
});

test('lockdown: on needs the confirmation box, ends every session and is recorded; off restores access', async () => {
  const rt = tg.gw.rt;
  const events: AuditEvent[] = [];
  const off = rt.audit.on((e) => events.push(e));
  try {
    const s = await rt.sessions.create({ user: 'alice', amr: ['pwd', 'otp'], pending: 'none', ip: '192.0.2.20' });
    const a = await signedIn();
    const page = await a.get('/console');
    assert.match(text(page.body), /Lockdown is off/);
    assert.match(page.body, /<input type="checkbox" id="lockdown-confirm" name="confirm" value="yes" required>\s*<label for="lockdown-confirm">/);

    const unconfirmed = await a.act('/console/lockdown', { state: 'on' });
    assert.equal(unconfirmed.statusCode, 400);
    assert.match(text(unconfirmed.body), /tick the box/);
    assert.equal(rt.lockdown.on, false);

    const on = await a.act('/console/lockdown', { state: 'on', confirm: 'yes' });
    assert.equal(on.statusCode, 303);
    assert.equal(rt.lockdown.on, true);
    assert.equal(rt.lockdown.by, 'admin-console');
    assert.equal(await rt.sessions.lookup(s.id), null, 'every gateway session ended');
    assert.ok(events.some((e) => e.event === 'lockdown_changed' && e.reason === 'on by admin-console' && e.ip === ADMIN_IP));
    const shown = text((await a.get('/console')).body);
    assert.match(shown, /Lockdown is on\. 1 session revoked/);
    assert.match(shown, /Lockdown is ON since .* \(by admin-console\)\. While it is on, only office may still reach apps\./);

    assert.equal((await a.act('/console/lockdown', { state: 'off' })).statusCode, 303);
    assert.equal(rt.lockdown.on, false);
    assert.match(text((await a.get('/console')).body), /Lockdown is off: access is restored\./);
    assert.equal((await a.act('/console/lockdown', { state: 'sideways' })).statusCode, 400);
  } finally {
    off();
  }
});

test('allowlists: edits go through the validated editor, keep the file\'s comments, and the running gateway reloads; invalid edits write nothing', async () => {
  const rt = tg.gw.rt;
  const a = await signedIn();
  const page = await a.get('/console');
  const section = /<section id="allowlists"[\s\S]*?<\/section>/.exec(page.body)![0];
  assert.match(section, /<label for="net-0-add">Add to office<\/label><input type="text" id="net-0-add" name="cidr"/);
  assert.match(text(section), /192\.0\.2\.0\/24 Remove 192\.0\.2\.0\/24 from office/);

  const add = await a.act('/console/allow', { op: 'add', network: 'office', cidr: '203.0.113.0/25, 2001:db8:10::/48' });
  assert.equal(add.statusCode, 303);
  assert.equal(add.headers.location, '/console#allowlists');
  const file = await readFile(tg.configFile, 'utf8');
  assert.match(file, /office: \["192\.0\.2\.0\/24", "203\.0\.113\.0\/25", "2001:db8:10::\/48"\] {3}# main building/);
  assert.match(file, /# Where staff sign in from\. Keep this comment\./);
  assert.deepEqual(rt.config.networks.get('office')!.toStrings(), ['192.0.2.0/24', '203.0.113.0/25', '2001:db8:10::/48']);
  assert.ok(rt.config.lockdown.networks.contains('203.0.113.7'), 'the running gateway uses it');
  const shown = text((await a.get('/console')).body);
  assert.match(shown, /Added to office: 203\.0\.113\.0\/25, 2001:db8:10::\/48\./);
  assert.match(shown, /The running gateway has applied it\./);

  const before = await readFile(tg.configFile, 'utf8');
  const hostBits = await a.act('/console/allow', { op: 'add', network: 'office', cidr: '10.0.0.1/24' });
  assert.equal(hostBits.statusCode, 400);
  assert.match(text(hostBits.body), /host bits set; did you mean 10\.0\.0\.0\/24\?/);
  const everyone = await a.act('/console/allow', { op: 'add', network: 'vpn', cidr: '0.0.0.0/0' });
  assert.equal(everyone.statusCode, 400);
  const badName = await a.act('/console/allow', { op: 'add', network: 'Bad Name', cidr: '10.0.0.0/8' });
  assert.equal(badName.statusCode, 400);
  assert.match(text(badName.body), /not a valid network name/);
  const missing = await a.act('/console/allow', { op: 'remove', network: 'vpn', cidr: '10.9.0.0/16' });
  assert.equal(missing.statusCode, 400);
  assert.match(text(missing.body), /does not contain 10\.9\.0\.0\/16/);
  assert.equal(await readFile(tg.configFile, 'utf8'), before, 'nothing was written');

  // emptying a network a rule relies on is refused; removing one of several entries is not
  for (const c of ['203.0.113.0/25', '2001:db8:10::/48']) assert.equal((await a.act('/console/allow', { op: 'remove', network: 'office', cidr: c })).statusCode, 303);
  const last = await a.act('/console/allow', { op: 'remove', network: 'office', cidr: '192.0.2.0/24' });
  assert.equal(last.statusCode, 400);
  assert.match(text(last.body), /refusing to remove the last entry of network "office"/);
  assert.deepEqual(rt.config.networks.get('office')!.toStrings(), ['192.0.2.0/24']);

  // a new network
  assert.equal((await a.act('/console/allow', { op: 'add', network: 'branch', cidr: '100.64.0.0/10' })).statusCode, 303);
  assert.deepEqual(rt.config.networks.get('branch')!.toStrings(), ['100.64.0.0/10']);
  assert.match(text((await a.get('/console')).body), /Created network branch with 100\.64\.0\.0\/10\..*nothing uses it yet/);
});
