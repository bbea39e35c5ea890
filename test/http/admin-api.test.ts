/**
 * The admin listener through `buildAdminApp(...).inject()`: what an operator holding the token
 * can do to a running gateway, and what anyone without it cannot. Each route is checked for its
 * effect on the runtime (sessions, throttle blocks, lockdown, credentials), not only its answer.
 */
import type { ReloadOutcome } from '../../src/main.js';
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ManualClock, cryptoRandom } from '../../src/clock.js';
import { loadConfigText } from '../../src/config/index.js';
import { createRuntime, type RuntimeImpl } from '../../src/bootstrap.js';
import { silentLogger } from '../../src/audit/logger.js';
import { TEST_PARAMS } from '../../src/auth/password.js';
import { createMemoryStores } from '../../src/store/memory.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { gate } from '../../src/access/gate.js';
import type { LiveConnection } from '../../src/runtime.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { buildAdminApp } from '../../src/admin/server.js';
import { AdminToken } from '../../src/admin/token.js';
import { GatewayMetrics } from '../../src/admin/metrics.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';
import { usersYaml } from '../helpers/gateway.js';

const TOKEN = 'k2V7oR9wq3yT5uX1cB8nM4lJ6hG0fD2sA7pZ9eW3rQ1';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

let dir: TmpDir;
let clock: ManualClock;
let rt: RuntimeImpl;
let app: FastifyInstance;
let metrics: GatewayMetrics;
let healthy = true;
let events: AuditEvent[] = [];
let reloadImpl: ((trigger: string) => Promise<ReloadOutcome>) | undefined;

before(async () => {
  dir = await tmpDir('pc-admin');
  const usersFile = join(dir.dir, 'users.yaml');
  await writeFile(usersFile, await usersYaml([{ name: 'alice', password: 'correct horse battery staple' }, { name: 'bob', password: 'another fine passphrase' }]), { mode: 0o600 });
  const file = join(dir.dir, 'portcullis.yaml');
  const loaded = loadConfigText(
    `
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token_file: ${JSON.stringify(join(dir.dir, 'data', 'admin.token'))} }
data_dir: ${JSON.stringify(join(dir.dir, 'data'))}
users_file: ${JSON.stringify(usersFile)}
audit: { file: null }
networks: { office: ["192.0.2.0/24"] }
lockdown: { networks: [office] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { policy: password }
    basic_auth: { paths: ["/dav/**"] }
`,
    file,
  );
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.issues));
  clock = new ManualClock();
  const state = await FileStateStore.open(join(dir.dir, 'data'));
  const mem = createMemoryStores({ clock, state });
  const stores = { ...mem, healthy: () => healthy };
  rt = await createRuntime(loaded.config, { clock, random: cryptoRandom, logger: silentLogger(), argon2: TEST_PARAMS, stores });
  rt.audit.on((e) => events.push(e));
  metrics = new GatewayMetrics(rt, { processMetrics: false });
  app = await buildAdminApp(rt, {
    token: AdminToken.fixed(TOKEN, clock),
    metrics,
    reload: (t) => (reloadImpl ? reloadImpl(t) : Promise.resolve({ ok: true as const })),
    publicMetrics: false,
  });
});

after(async () => {
  await app?.close();
  metrics?.close();
  await rt?.audit.close();
  await rt?.stores.close();
  await dir?.cleanup();
});

beforeEach(async () => {
  events = [];
  healthy = true;
  reloadImpl = undefined;
  await rt.stores.sessions.deleteAll();
  rt.live.clear();
  rt.lockdown = { on: false, since: 0, by: '' };
  clock.advance(10 * 60_000); // lets any admin-auth block from an earlier test lapse
});

/** A fake open WebSocket registered like the proxy registers one. */
function liveConn(init: Partial<LiveConnection> & { ip: string }): LiveConnection & { closed: string | null } {
  const c = {
    user: null,
    sessionHash: null,
    app: 'mail',
    closed: null as string | null,
    ...init,
    close(reason: string) {
      c.closed = reason;
    },
  };
  rt.live.add(c);
  return c;
}

function signIn(user: string, ip = '198.51.100.7') {
  return rt.sessions.create({ user, amr: ['pwd', 'otp'], pending: 'none', ip });
}

const post = (url: string, payload: unknown, headers: Record<string, string> = AUTH) => app.inject({ method: 'POST', url, payload: payload as object, headers });
const get = (url: string, headers: Record<string, string> = AUTH) => app.inject({ method: 'GET', url, headers });

// ---------------------------------------------------------------------------------------------

test('without the token, every API route answers 401 PC_ADMIN_UNAUTHORIZED and changes nothing', async () => {
  const s = await signIn('alice');
  const routes: Array<[string, string, unknown]> = [
    ['GET', '/api/sessions', undefined],
    ['POST', '/api/sessions/revoke', { all: true }],
    ['POST', '/api/unblock', { user: 'alice' }],
    ['GET', '/api/blocks', undefined],
    ['GET', '/api/lockdown', undefined],
    ['POST', '/api/lockdown', { on: true }],
    ['POST', '/api/reload', {}],
    ['POST', '/api/totp/set', { user: 'alice', secret: SECRET }],
    ['POST', '/api/totp/reset', { user: 'alice' }],
    ['POST', '/api/app-passwords', { user: 'alice', label: 'x' }],
    ['GET', '/api/app-passwords?user=alice', undefined],
    ['DELETE', '/api/app-passwords', { user: 'alice', label: 'x' }],
    ['GET', '/metrics', undefined],
  ];
  let n = 0;
  for (const [method, url, payload] of routes) {
    for (const headers of [{}, { authorization: `Bearer ${TOKEN}x` }, { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }, { authorization: TOKEN }]) {
      const remoteAddress = `10.0.0.${++n}`; // this test is about the 401, not the throttle
      const r = await app.inject({ method: method as 'GET', url, headers, remoteAddress, ...(payload !== undefined ? { payload: payload as object } : {}) });
      assert.equal(r.statusCode, 401, `${method} ${url} with ${JSON.stringify(headers)}`);
      assert.equal(r.json().error.code, 'PC_ADMIN_UNAUTHORIZED');
      assert.match(String(r.headers['www-authenticate']), /^Bearer /);
    }
  }
  assert.equal(rt.lockdown.on, false);
  assert.ok(await rt.sessions.lookup(s.id), 'the session survived');
  assert.equal(await rt.stores.state.getTotp('alice'), null);
  assert.deepEqual(await rt.stores.state.listAppPasswords('alice'), []);
  assert.equal(events.length, 0, 'nothing was audited as done');
});

test('the bearer scheme is case-insensitive; the token itself is not', async () => {
  assert.equal((await get('/api/lockdown', { authorization: `bearer ${TOKEN}` })).statusCode, 200);
  assert.equal((await get('/api/lockdown', { authorization: `Bearer ${TOKEN.toLowerCase()}` })).statusCode, 401);
});

test('a source that keeps failing is throttled (429, even with the right token) until the block lapses; others are not', async () => {
  const attacker = '203.0.113.50';
  for (let i = 0; i < 9; i++) {
    const r = await app.inject({ method: 'GET', url: '/api/sessions', remoteAddress: attacker, headers: { authorization: `Bearer wrong-token-${i}-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa` } });
    assert.equal(r.statusCode, 401);
  }
  const tenth = await app.inject({ method: 'GET', url: '/api/sessions', remoteAddress: attacker, headers: { authorization: 'Bearer nope' } });
  assert.equal(tenth.statusCode, 401);
  const blocked = await app.inject({ method: 'GET', url: '/api/sessions', remoteAddress: attacker, headers: AUTH });
  assert.equal(blocked.statusCode, 429);
  assert.equal(blocked.json().error.code, 'PC_THROTTLED');
  assert.ok(Number(blocked.headers['retry-after']) > 0);
  // an IPv6 attacker is counted per /64: rotating addresses inside it does not help
  for (let i = 0; i < 10; i++) {
    await app.inject({ method: 'GET', url: '/api/sessions', remoteAddress: `2001:db8:1:2::${i + 1}`, headers: { authorization: 'Bearer nope' } });
  }
  assert.equal((await app.inject({ method: 'GET', url: '/api/sessions', remoteAddress: '2001:db8:1:2::ffff', headers: AUTH })).statusCode, 429);

  const operator = await app.inject({ method: 'GET', url: '/api/sessions', remoteAddress: '127.0.0.1', headers: AUTH });
  assert.equal(operator.statusCode, 200, 'another source is unaffected');
  clock.advance(61_000);
  assert.equal((await app.inject({ method: 'GET', url: '/api/sessions', remoteAddress: attacker, headers: AUTH })).statusCode, 200);
});

test('/readyz needs no token: 200 when the store answers, 503 with the reason when it does not', async () => {
  const ok = await app.inject({ method: 'GET', url: '/readyz' });
  assert.equal(ok.statusCode, 200);
  assert.equal(ok.json().status, 'ready');
  healthy = false;
  const down = await app.inject({ method: 'GET', url: '/readyz' });
  assert.equal(down.statusCode, 503);
  assert.match(down.json().reason, /store/);
});

test('/metrics exposes counters fed by the audit trail, the upstream histogram and state gauges', async () => {
  await signIn('alice');
  await signIn('bob');
  rt.audit.record({ event: 'login_succeeded', ip: '192.0.2.1', user: 'alice', outcome: 'success' });
  rt.audit.record({ event: 'login_failed', ip: '192.0.2.1', user: 'alice', outcome: 'failure', reason: 'wrong password' });
  rt.audit.record({ event: 'login_failed', ip: '192.0.2.1', user: 'alice', outcome: 'denied', reason: 'throttled (spray)' });
  rt.audit.record({ event: 'mfa_failed', ip: '192.0.2.1', user: 'alice', outcome: 'denied', reason: 'throttled' });
  rt.audit.record({ event: 'totp_replayed', ip: '192.0.2.1', user: 'alice', outcome: 'denied' });
  metrics.observeUpstream('mail', 204, 0.02);
  metrics.observeUpstream('mail', 502, 3);
  liveConn({ ip: '192.0.2.9' });
  clock.advance(60_000); // past the session-count cache

  const r = await get('/metrics');
  assert.equal(r.statusCode, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain/);
  const text = r.body;
  assert.match(text, /^portcullis_logins_total\{factor="password",outcome="success"\} 1$/m);
  assert.match(text, /^portcullis_logins_total\{factor="password",outcome="failure"\} 1$/m);
  assert.match(text, /^portcullis_logins_total\{factor="password",outcome="throttled"\} 1$/m);
  assert.match(text, /^portcullis_logins_total\{factor="otp",outcome="throttled"\} 1$/m);
  assert.match(text, /^portcullis_logins_total\{factor="otp",outcome="replayed"\} 1$/m);
  assert.match(text, /^portcullis_throttled_total\{kind="spray"\} 1$/m);
  assert.match(text, /^portcullis_throttled_total\{kind="mfa"\} 1$/m);
  assert.match(text, /^portcullis_audit_events_total\{event="login_failed"\} 2$/m);
  assert.match(text, /^portcullis_active_sessions 2$/m);
  assert.match(text, /^portcullis_open_connections 1$/m);
  assert.match(text, /^portcullis_upstream_duration_seconds_count\{app="mail",status_class="2xx"\} 1$/m);
  assert.match(text, /^portcullis_upstream_duration_seconds_count\{app="mail",status_class="5xx"\} 1$/m);
  assert.match(text, /^portcullis_hash_inflight 0$/m);
  assert.match(text, /^portcullis_hash_rejected_total 0$/m);
  assert.match(text, /^portcullis_lockdown 0$/m);
  assert.match(text, /^portcullis_store_up 1$/m);
  assert.doesNotMatch(text, /alice|192\.0\.2/, 'no user names or addresses in labels');
});

test('sessions are listed without ids, by a handle that revokes exactly that one', async () => {
  const a1 = await signIn('alice', '198.51.100.1');
  clock.advance(1000);
  const a2 = await signIn('alice', '198.51.100.2');
  const b1 = await signIn('bob');
  const ws = liveConn({ ip: '198.51.100.1', user: 'alice', sessionHash: a1.idHash });
  const other = liveConn({ ip: '198.51.100.2', user: 'alice', sessionHash: a2.idHash });

  const all = await get('/api/sessions');
  assert.equal(all.statusCode, 200);
  assert.equal(all.headers['cache-control'], 'no-store');
  const list = all.json().sessions as Array<Record<string, unknown>>;
  assert.equal(list.length, 3);
  for (const s of [a1, a2, b1]) {
    assert.ok(!all.body.includes(s.id), 'no session id');
    assert.ok(!all.body.includes(s.idHash), 'not even the full id hash');
  }
  const mine = (await get('/api/sessions?user=alice')).json().sessions as Array<{ handle: string; ip: string; amr: string[]; created: string; user: string; pending: string }>;
  assert.deepEqual(mine.map((s) => s.ip), ['198.51.100.1', '198.51.100.2']);
  assert.deepEqual(mine[0]!.amr, ['pwd', 'otp']);
  assert.equal(mine[0]!.pending, 'none');
  assert.equal(mine[0]!.created, new Date(a1.rec.createdAt).toISOString());

  const r = await post('/api/sessions/revoke', { handle: mine[0]!.handle });
  assert.equal(r.statusCode, 200);
  assert.deepEqual(r.json(), { revoked: 1, connectionsClosed: 1 });
  assert.equal(await rt.sessions.lookup(a1.id), null, 'that session no longer opens apps');
  assert.ok(await rt.sessions.lookup(a2.id), 'her other session is untouched');
  assert.equal(ws.closed, 'session revoked');
  assert.equal(other.closed, null);
  assert.ok(events.some((e) => e.event === 'session_revoked' && e.user === 'alice'));
  assert.ok(events.every((e) => !JSON.stringify(e).includes(a1.id)), 'the audit trail never carries the id');

  assert.equal((await post('/api/sessions/revoke', { handle: mine[0]!.handle })).statusCode, 404, 'gone');
  assert.equal((await post('/api/sessions/revoke', { handle: 'short' })).statusCode, 400);
});

test('revoking a user ends all their sessions and closes their connections, app-password ones too', async () => {
  const a1 = await signIn('alice');
  const a2 = await signIn('alice');
  const b1 = await signIn('bob');
  const aws = liveConn({ ip: '198.51.100.1', user: 'alice', sessionHash: a1.idHash });
  const abasic = liveConn({ ip: '198.51.100.1', user: 'alice', sessionHash: null });
  const bws = liveConn({ ip: '198.51.100.3', user: 'bob', sessionHash: b1.idHash });
  const r = await post('/api/sessions/revoke', { user: 'alice' });
  assert.deepEqual(r.json(), { revoked: 2, connectionsClosed: 2 });
  assert.equal(await rt.sessions.lookup(a1.id), null);
  assert.equal(await rt.sessions.lookup(a2.id), null);
  assert.ok(await rt.sessions.lookup(b1.id));
  assert.ok(aws.closed && abasic.closed);
  assert.equal(bws.closed, null);

  const all = await post('/api/sessions/revoke', { all: true });
  assert.equal(all.json().revoked, 1);
  assert.equal(await rt.sessions.lookup(b1.id), null);
  assert.ok(bws.closed);
});

test('revoke refuses ambiguous or malformed requests', async () => {
  await signIn('alice');
  for (const payload of [{}, { user: 'alice', all: true }, { all: false }, { all: 'true' }, { user: 'alice', extra: 1 }, { user: '../../etc' }, [1, 2], { user: 42 }]) {
    const r = await post('/api/sessions/revoke', payload);
    assert.equal(r.statusCode, 400, JSON.stringify(payload));
    assert.equal(r.json().error.code, 'PC_BAD_REQUEST');
  }
  assert.equal((await rt.stores.sessions.list()).length, 1, 'nothing was revoked');
  const notJson = await app.inject({ method: 'POST', url: '/api/sessions/revoke', headers: { ...AUTH, 'content-type': 'application/json' }, payload: '{"all": tru' });
  assert.equal(notJson.statusCode, 400);
  const proto = await app.inject({ method: 'POST', url: '/api/sessions/revoke', headers: { ...AUTH, 'content-type': 'application/json' }, payload: '{"__proto__": {"all": true}}' });
  assert.equal(proto.statusCode, 400);
  const form = await app.inject({ method: 'POST', url: '/api/sessions/revoke', headers: { ...AUTH, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'all=true' });
  assert.equal(form.statusCode, 415);
  assert.equal((await rt.stores.sessions.list()).length, 1);
});

test('blocks are listed, and unblock lifts a user lockout or a source block', async () => {
  const L = rt.config.loginLimits;
  for (let i = 0; i < L.perUser.maxFailures; i++) {
    await rt.throttle.recordFailure({ ip: `198.51.100.${i + 1}`, user: 'alice', passwordFingerprint: `fp${i}`, familiar: false });
  }
  for (let i = 0; i < L.perIp.maxFailures; i++) {
    await rt.throttle.recordFailure({ ip: '203.0.113.9', user: `u${i % 3}`, passwordFingerprint: `g${i}`, familiar: false });
  }
  assert.equal((await rt.throttle.check({ ip: '198.51.100.200', user: 'alice' })).allowed, false);
  assert.equal((await rt.throttle.check({ ip: '203.0.113.9', user: 'bob' })).allowed, false);

  const blocks = (await get('/api/blocks')).json().blocks as Array<{ kind: string; user?: string; source?: string; until: string }>;
  assert.ok(blocks.some((b) => b.kind === 'user' && b.user === 'alice'));
  assert.ok(blocks.some((b) => b.kind === 'ip' && b.source === '203.0.113.9'));
  assert.ok(blocks.every((b) => !Number.isNaN(Date.parse(b.until))));

  const u = await post('/api/unblock', { user: 'alice' });
  assert.equal(u.statusCode, 200);
  assert.ok(u.json().lifted >= 1);
  assert.equal((await rt.throttle.check({ ip: '198.51.100.200', user: 'alice' })).allowed, true);
  const ip = await post('/api/unblock', { ip: '203.0.113.9' });
  assert.ok(ip.json().lifted >= 1);
  assert.equal((await rt.throttle.check({ ip: '203.0.113.9', user: 'bob' })).allowed, true);

  assert.equal((await post('/api/unblock', { ip: '203.0.113.300' })).statusCode, 400);
  assert.equal((await post('/api/unblock', { ip: '203.0.113.9', user: 'alice' })).statusCode, 400);
  assert.equal((await post('/api/unblock', {})).statusCode, 400);
});

test('lockdown on revokes every session, closes every connection, persists and is audited; off restores', async () => {
  const s = await signIn('alice', '192.0.2.10');
  const inOffice = liveConn({ ip: '192.0.2.10', user: 'alice', sessionHash: s.idHash });
  const bypass = liveConn({ ip: '203.0.113.7' });
  const basic = liveConn({ ip: '203.0.113.8', user: 'bob' });

  const on = await post('/api/lockdown', { on: true, by: 'cli:ops' });
  assert.equal(on.statusCode, 200);
  const v = on.json();
  assert.equal(v.on, true);
  assert.equal(v.by, 'cli:ops');
  assert.deepEqual(v.networks, ['office']);
  assert.equal(v.changed, true);
  assert.equal(v.sessionsRevoked, 1);
  assert.equal(v.connectionsClosed, 3);
  assert.ok(inOffice.closed && bypass.closed && basic.closed, 'every connection closed, whatever let it in');
  assert.equal(rt.live.size, 0);
  assert.equal(await rt.sessions.lookup(s.id), null);
  assert.equal(rt.lockdown.on, true);
  assert.deepEqual(await rt.stores.state.getLockdown(), { on: true, since: clock.now(), by: 'cli:ops' });
  assert.ok(events.some((e) => e.event === 'lockdown_changed' && e.reason === 'on by cli:ops'));

  // the gate now refuses everyone outside the lockdown networks
  const r = await gate(rt, rt.config, { method: 'GET', target: '/', host: 'mail.test', ip: '203.0.113.7', proto: 'https', sessionId: undefined, authorization: undefined });
  assert.equal(r.kind === 'error' && r.code, 'PC_LOCKDOWN');

  const status = (await get('/api/lockdown')).json();
  assert.equal(status.on, true);
  assert.equal(status.since, new Date(clock.now()).toISOString());

  // pressing the button again still sweeps sessions, but does not move `since`
  const since = rt.lockdown.since;
  clock.advance(5000);
  await signIn('alice', '192.0.2.10');
  const again = (await post('/api/lockdown', { on: true })).json();
  assert.equal(again.changed, false);
  assert.equal(again.sessionsRevoked, 1);
  assert.equal(rt.lockdown.since, since);

  events = [];
  const off = (await post('/api/lockdown', { on: false })).json();
  assert.equal(off.on, false);
  assert.equal(off.changed, true);
  assert.equal(rt.lockdown.on, false);
  assert.equal((await rt.stores.state.getLockdown())!.on, false);
  assert.ok(events.some((e) => e.event === 'lockdown_changed' && e.reason === 'off by admin-api'));

  for (const payload of [{}, { on: 'yes' }, { on: 1 }, { on: true, by: 'x\ny' }, { on: true, extra: 1 }]) {
    assert.equal((await post('/api/lockdown', payload)).statusCode, 400, JSON.stringify(payload));
  }
  assert.equal(rt.lockdown.on, false);
});

test('when the store cannot save, lockdown still takes effect here and the admin is told; off is refused and lockdown stays on', async () => {
  const state = rt.stores.state;
  const real = state.setLockdown.bind(state);
  state.setLockdown = async () => {
    throw new Error('disk full');
  };
  try {
    const bypass = liveConn({ ip: '203.0.113.7' });
    const on = await post('/api/lockdown', { on: true });
    assert.equal(on.statusCode, 503);
    assert.equal(on.json().error.code, 'PC_STORE_UNAVAILABLE');
    assert.match(on.json().error.message, /lockdown is on in this instance, but the lockdown state could not be saved/);
    assert.equal(rt.lockdown.on, true, 'fail closed: in force although not saved');
    assert.ok(bypass.closed);
    const off = await post('/api/lockdown', { on: false });
    assert.equal(off.statusCode, 503);
    assert.match(off.json().error.message, /lockdown stays on/);
    assert.equal(rt.lockdown.on, true);
  } finally {
    state.setLockdown = real;
  }
  assert.equal((await post('/api/lockdown', { on: false })).json().on, false);
});

test('reload reports the outcome Gateway.reload records: success, or the rejected config kept out', async () => {
  reloadImpl = async () => ({ ok: true });
  const ok = await post('/api/reload', {});
  assert.equal(ok.statusCode, 200);
  assert.equal(ok.json().reloaded, true);
  reloadImpl = async () => ({ ok: false, reason: 'portcullis.yaml:3:1 bogus: unknown key' });
  const bad = await post('/api/reload', {});
  assert.equal(bad.statusCode, 500);
  assert.equal(bad.json().error.code, 'PC_CONFIG_INVALID');
  assert.match(bad.json().error.message, /bogus: unknown key/);
  const noBody = await app.inject({ method: 'POST', url: '/api/reload', headers: AUTH });
  assert.equal(noBody.statusCode, 500, 'an empty body is fine; the (still failing) reload answers');
});

test('totp set provisions a sealed secret the user can sign in with; totp reset forgets it and the recovery codes', async () => {
  const s = await signIn('alice');
  assert.equal((await post('/api/totp/set', { user: 'mallory', secret: SECRET })).json().error.code, 'PC_USER_UNKNOWN');
  for (const secret of ['not base32!', 'JBSWY3DP', 42]) {
    const r = await post('/api/totp/set', { user: 'alice', secret });
    assert.equal(r.statusCode, 400, String(secret));
  }
  const r = await post('/api/totp/set', { user: 'alice', secret: 'jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp' });
  assert.equal(r.statusCode, 200);
  assert.deepEqual(r.json(), { sessionsRevoked: 1 });
  assert.ok(!r.body.toUpperCase().includes(SECRET), 'the secret is not echoed');
  assert.equal(await rt.sessions.lookup(s.id), null, 'sessions from before the new device end');

  const rec = await rt.stores.state.getTotp('alice');
  assert.ok(rec);
  assert.equal(rec.source, 'provisioned');
  assert.ok(!rec.secret.includes(SECRET), 'stored sealed, not in clear');
  const opened = rt.box.open(rec.secret, 'totp:alice');
  assert.equal(opened, SECRET);
  assert.throws(() => rt.box.open(rec.secret, 'totp:bob'), { code: 'PC_CONFIG_INVALID', message: /could not be opened/ }, 'bound to its user');
  assert.ok(events.some((e) => e.event === 'totp_enrolled' && e.user === 'alice' && !JSON.stringify(e).includes(SECRET)));

  await rt.stores.state.setRecoveryCodes('alice', ['h1', 'h2']);
  const reset = await post('/api/totp/reset', { user: 'alice' });
  assert.equal(reset.statusCode, 200);
  assert.equal(reset.json().hadDevice, true);
  assert.equal(await rt.stores.state.getTotp('alice'), null);
  assert.equal(await rt.stores.state.countRecoveryCodes('alice'), 0);
  assert.equal((await post('/api/totp/reset', { user: 'alice' })).json().hadDevice, false);
});

test('an app password is shown once, opens Basic paths for its user only, and stops when revoked', async () => {
  const created = await post('/api/app-passwords', { user: 'alice', label: 'phone mail' });
  assert.equal(created.statusCode, 201);
  const { password, label, user } = created.json() as { password: string; label: string; user: string };
  assert.equal(user, 'alice');
  assert.equal(label, 'phone mail');
  assert.match(password, /^pcap_[a-z2-7]{32}$/);

  const basic = (name: string, pass: string) => `Basic ${Buffer.from(`${name}:${pass}`).toString('base64')}`;
  const viaGate = (authorization: string) =>
    gate(rt, rt.config, { method: 'PROPFIND', target: '/dav/cal/', host: 'mail.test', ip: '198.51.100.20', proto: 'https', sessionId: undefined, authorization });
  const ok = await viaGate(basic('alice', password));
  assert.equal(ok.kind, 'proxy');
  assert.equal(ok.kind === 'proxy' && ok.identity?.user.name, 'alice');
  assert.equal((await viaGate(basic('bob', password))).kind, 'signin', 'bound to the user it was issued to');

  const listed = await get('/api/app-passwords?user=alice');
  assert.equal(listed.statusCode, 200);
  const rows = listed.json().appPasswords as Array<Record<string, unknown>>;
  assert.deepEqual(rows, [{ label: 'phone mail', created: new Date(clock.now()).toISOString(), lastUsed: null }]);
  assert.ok(!listed.body.includes(password), 'never shown again');
  const stored = (await rt.stores.state.listAppPasswords('alice'))[0]!;
  assert.ok(!listed.body.includes(stored.hash), 'nor its hash');

  assert.equal((await post('/api/app-passwords', { user: 'alice', label: 'phone mail' })).statusCode, 400, 'labels are unique per user');
  assert.equal((await post('/api/app-passwords', { user: 'nobody', label: 'x' })).statusCode, 404);
  assert.equal((await post('/api/app-passwords', { user: 'alice', label: 'bad\u001b[2Jlabel' })).statusCode, 400);
  assert.equal((await get('/api/app-passwords')).statusCode, 400);

  const davConn = liveConn({ ip: '198.51.100.20', user: 'alice', sessionHash: null });
  const del = await app.inject({ method: 'DELETE', url: '/api/app-passwords', headers: AUTH, payload: { user: 'alice', label: 'phone mail' } });
  assert.equal(del.statusCode, 200);
  assert.equal(del.json().connectionsClosed, 1);
  assert.ok(davConn.closed);
  assert.equal((await viaGate(basic('alice', password))).kind, 'signin', 'revoked: refused');
  const again = await app.inject({ method: 'DELETE', url: '/api/app-passwords', headers: AUTH, payload: { user: 'alice', label: 'phone mail' } });
  assert.equal(again.statusCode, 404);
});

test('unknown routes answer a JSON 404 (with the token) and the token check comes first', async () => {
  const r = await get('/api/nothing-here');
  assert.equal(r.statusCode, 404);
  assert.equal(r.json().error.code, 'PC_NOT_FOUND');
  assert.equal((await app.inject({ method: 'GET', url: '/api/nothing-here' })).statusCode, 401);
});

test('a generated token file is 0600 in a 0700 directory, and replacing it rotates the token', async () => {
  const { stat, writeFile: wf } = await import('node:fs/promises');
  const d = await tmpDir('pc-token');
  try {
    const file = join(d.dir, 'sub', 'admin.token');
    const c = new ManualClock();
    const t = await AdminToken.open(file, { random: cryptoRandom, clock: c });
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(join(d.dir, 'sub'))).mode & 0o777, 0o700);
    const { readFile } = await import('node:fs/promises');
    const first = (await readFile(file, 'utf8')).trim();
    assert.match(first, /^[A-Za-z0-9_-]{43}$/);
    assert.ok(t.matches(first));
    assert.ok(!t.matches(`${first}x`));
    assert.ok(!t.matches(null));
    const again = await AdminToken.open(file, { random: cryptoRandom, clock: c });
    assert.ok(again.matches(first), 'an existing token is kept');

    const second = 'Z'.repeat(40);
    await wf(file, `${second}\n`, { mode: 0o600 });
    c.advance(1500);
    await t.refresh();
    assert.ok(t.matches(second));
    assert.ok(!t.matches(first), 'the old token stops working');

    await wf(file, 'short\n');
    c.advance(1500);
    await t.refresh();
    assert.ok(!t.matches(second) && !t.matches('short'), 'an invalid file fails closed');

    const { chmod } = await import('node:fs/promises');
    await wf(file, `${second}\n`);
    await chmod(file, 0o644);
    await assert.rejects(AdminToken.open(file, { random: cryptoRandom, clock: c }), /accessible by group or others/);
  } finally {
    await d.cleanup();
  }
});

test('passkeys: listed without key material; one removed ends the user\'s sessions; audited (issue 13)', async () => {
  await rt.stores.state.addPasskey('alice', { id: 'cred-1', publicKey: 'sealed-secret-material', counter: 3, transports: ['usb'], name: 'YubiKey', createdAt: clock.now() }, 10);
  const listed = await get('/api/passkeys?user=alice');
  assert.equal(listed.statusCode, 200);
  const body = listed.json() as { passkeys: Array<Record<string, unknown>> };
  assert.deepEqual(body.passkeys.map((p) => [p.id, p.name, p.lastUsed, p.transports]), [['cred-1', 'YubiKey', null, ['usb']]]);
  assert.doesNotMatch(listed.body, /sealed-secret-material/);
  await rt.sessions.create({ user: 'alice', amr: ['pwd', 'hwk'], pending: 'none', ip: '192.0.2.1' });
  const removed = await app.inject({ method: 'DELETE', url: '/api/passkeys', payload: { user: 'alice', id: 'cred-1' }, headers: AUTH });
  assert.equal(removed.statusCode, 200, removed.body);
  assert.deepEqual(removed.json(), { removed: true, sessionsRevoked: 1 });
  assert.deepEqual(await rt.stores.state.listPasskeys('alice'), []);
  assert.ok(events.some((e) => e.event === 'passkey_removed' && e.user === 'alice' && e.reason === 'by admin'));
  const again = await app.inject({ method: 'DELETE', url: '/api/passkeys', payload: { user: 'alice', id: 'cred-1' }, headers: AUTH });
  assert.equal(again.statusCode, 404);
  assert.equal((await app.inject({ method: 'GET', url: '/api/passkeys?user=alice' })).statusCode, 401, 'the token is needed');
});
