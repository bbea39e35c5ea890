/**
 * The console's user pages through `buildAdminApp(...).inject()`, in front of a real gateway
 * runtime on the memory store.
 *
 * What an operator sees: every user of the users file with the factors the gateway holds for them
 * (TOTP, passkeys, recovery codes, app passwords, familiar networks, sessions), a page per user,
 * and buttons that revoke, unblock, reset TOTP and remove a passkey through the API's operations,
 * each audited. What an attacker sees: no page without the admin session, no action without its
 * CSRF token and this console's Origin, and nothing a user controls (a display name, a passkey
 * name, an app password label) rendered as markup.
 */
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import type { Response as InjectResponse } from 'light-my-request';
import { ManualClock, cryptoRandom } from '../../src/clock.js';
import { buildAdminApp } from '../../src/admin/server.js';
import { AdminToken } from '../../src/admin/token.js';
import { GatewayMetrics } from '../../src/admin/metrics.js';
import { addAppPassword } from '../../src/admin/operations.js';
import { USERS_PER_PAGE } from '../../src/admin/console/users.js';
import { PasswordHasher, TEST_PARAMS } from '../../src/auth/password.js';
import type { SessionRecord } from '../../src/store/ports.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { decodeEntities, hiddenField } from '../helpers/portal.js';

const TOKEN = 'Zq3vN8xR2mK5tW9yB4cH7jL1pF6sD0gA2eU8iO3uY5r';
const HOST = '127.0.0.1:9090';
const ORIGIN = `http://${HOST}`;
const ADMIN_IP = '127.0.0.1';
const FORM = 'application/x-www-form-urlencoded';

const CONFIG = `
networks:
  office: ["192.0.2.0/24"]
login_limits:
  per_ip: { max_failures: 3, window: 15m, block: 15m }
  per_user: { max_failures: 3, window: 15m, lockout: 15m }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "builtin:whoami"
    rules:
      - { policy: password }
`;

const EVIL_PASSKEY = '<script>alert(1)</script>';
const QUOTED_NAME = `Dan "the man" O'Neil <b>`;
const EVIL_LABEL = `"><img src=x onerror=alert(1)>`;
const PASSKEY_ID = 'Y3JlZC0x';

let clock: ManualClock;
let tg: TestGateway;
let app: FastifyInstance;
let metrics: GatewayMetrics;
let hash: string;

/** The users file: alice (TOTP), bob (a passkey), carol (disabled), dan (a display name with quotes). */
function usersFile(extra = 0): string {
  let out = `users:
  alice:
    password: ${JSON.stringify(hash)}
    name: "Alice Example"
    groups: [staff, admins]
  bob:
    password: ${JSON.stringify(hash)}
    groups: [staff]
  carol:
    password: ${JSON.stringify(hash)}
    groups: []
    disabled: true
  dan:
    password: ${JSON.stringify(hash)}
    name: ${JSON.stringify(QUOTED_NAME)}
    groups: [staff]
`;
  for (let i = 0; i < extra; i++) out += `  user${String(i).padStart(4, '0')}:\n    password: ${JSON.stringify(hash)}\n    groups: []\n`;
  return out;
}

async function writeUsers(extra = 0): Promise<void> {
  await writeFile(tg.usersFile, usersFile(extra), { mode: 0o600 });
  await tg.gw.rt.reloadUsers();
}

function sessionRec(user: string): SessionRecord {
  const now = clock.now();
  return { user, amr: ['pwd', 'otp'], pending: 'none', createdAt: now, lastSeenAt: now, ip: '192.0.2.7', csrf: 'x' };
}

before(async () => {
  clock = new ManualClock(Date.UTC(2026, 2, 1, 12, 0, 0));
  hash = await new PasswordHasher(TEST_PARAMS).hash('correct horse battery staple');
  tg = await startTestGateway(CONFIG, { clock, random: cryptoRandom });
  await writeUsers();
  metrics = new GatewayMetrics(tg.gw.rt, { processMetrics: false });
  app = await buildAdminApp(tg.gw.rt, {
    token: AdminToken.fixed(TOKEN, clock),
    metrics,
    publicMetrics: false,
    authLimits: { maxFailures: 3, windowMs: 60_000, blockMs: 60_000 },
  });
});

after(async () => {
  await app?.close();
  metrics?.close();
  await tg?.close();
});

/** Fresh factors for every test: alice has TOTP, 3 recovery codes, an app password, a familiar network, a session; bob a passkey and a session. */
beforeEach(async () => {
  const rt = tg.gw.rt;
  const st = rt.stores.state;
  await rt.stores.sessions.deleteAll();
  for (const u of ['alice', 'bob', 'carol', 'dan']) await rt.throttle.unblock({ user: u });
  await st.setTotp('alice', { secret: rt.box.seal('JBSWY3DPEHPK3PXP', 'totp:alice'), enrolledAt: Date.UTC(2026, 0, 2, 3, 4, 5), source: 'enrolled' });
  await st.setRecoveryCodes('alice', ['h1', 'h2', 'h3']);
  for (const p of await st.listAppPasswords('alice')) await st.revokeAppPassword('alice', p.label);
  await addAppPassword(rt, 'alice', EVIL_LABEL, { ip: ADMIN_IP });
  await st.addKnownNetwork('alice', '192.0.2.0/24');
  await st.removePasskey('bob', PASSKEY_ID);
  const added = await st.addPasskey(
    'bob',
    { id: PASSKEY_ID, publicKey: rt.box.seal('pk', `passkey:bob:${PASSKEY_ID}`), counter: 0, transports: ['internal'], name: EVIL_PASSKEY, createdAt: clock.now(), lastUsedAt: Date.UTC(2026, 1, 3, 4, 5, 6) },
    10,
  );
  assert.ok(added);
  await rt.stores.sessions.set('a'.repeat(43), sessionRec('alice'), 3_600_000);
  await rt.stores.sessions.set('b'.repeat(43), sessionRec('bob'), 3_600_000);
  clock.advance(2 * 60_000);
});

/** A browser on the console: a cookie jar, this console's Host and Origin. */
class Agent {
  cookies = new Map<string, string>();

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

  async get(url: string): Promise<InjectResponse> {
    return this.keep(await app.inject({ method: 'GET', url, remoteAddress: ADMIN_IP, headers: { host: HOST, ...this.cookieHeader() } }));
  }

  async post(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<InjectResponse> {
    return this.keep(
      await app.inject({
        method: 'POST',
        url,
        remoteAddress: ADMIN_IP,
        headers: { host: HOST, origin: ORIGIN, 'content-type': FORM, ...this.cookieHeader(), ...headers },
        payload: new URLSearchParams(fields).toString(),
      }),
    );
  }

  async csrf(): Promise<string> {
    const r = await this.get('/console/users');
    assert.equal(r.statusCode, 200, r.body);
    const t = hiddenField(r.body, 'csrf');
    assert.ok(t);
    return t;
  }

  async act(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<InjectResponse> {
    return this.post(url, { csrf: await this.csrf(), ...fields }, headers);
  }
}

async function signedIn(): Promise<Agent> {
  const a = new Agent();
  const r = await a.post('/console/login', { token: TOKEN });
  assert.equal(r.statusCode, 303, r.body);
  return a;
}

/** Visible text of a page, entities decoded and tags dropped. */
function text(body: string): string {
  return decodeEntities(body.replace(/<[^>]+>/g, ' '))
    .replace(/\s+/g, ' ')
    .replace(/ ([),.;])/g, '$1');
}

/** The visible text of the table row whose first cell links to `user`. */
function rowOf(body: string, user: string): string {
  const rows = body.split('<tr>').filter((r) => decodeEntities(r).includes(`href="/console/user?user=${user}"`));
  assert.equal(rows.length, 1, `one row for ${user}`);
  return text(rows[0]!.split('</tr>')[0]!).trim();
}

function audited(event: string, user?: string): number {
  return tg.gw.rt.audit.recent(Number.MAX_SAFE_INTEGER).filter((e) => e.event === event && (user === undefined || e.user === user)).length;
}

// ---------------------------------------------------------------------------------------------

test('without the admin session the user pages and actions lead to the sign-in form and change nothing', async () => {
  const a = new Agent();
  for (const url of ['/console/users', '/console/user?user=alice']) {
    const r = await a.get(url);
    assert.equal(r.statusCode, 303, url);
    assert.equal(r.headers.location, '/console/login');
  }
  const r = await a.post('/console/user/passkey-remove', { user: 'bob', id: PASSKEY_ID, csrf: 'x' });
  assert.equal(r.statusCode, 303);
  assert.equal(r.headers.location, '/console/login');
  assert.equal((await tg.gw.rt.stores.state.listPasskeys('bob')).length, 1);
});

test('the users page lists every user with their factors, linked from the dashboard', async () => {
  const a = await signedIn();
  const dash = await a.get('/console');
  assert.match(dash.body, /<a href="\/console\/users">Users<\/a>/);

  const r = await a.get('/console/users');
  assert.equal(r.statusCode, 200);
  assert.match(String(r.headers['content-security-policy']), /default-src 'none'/);
  const alice = rowOf(r.body, 'alice');
  assert.match(alice, /alice Alice Example staff, admins active/);
  assert.match(alice, /enrolled since 2026-01-02 03:04:05 UTC/);
  assert.match(alice, /none 3 /, 'no passkeys, 3 recovery codes left');
  assert.ok(alice.includes(`1: ${EVIL_LABEL} (never used) 1 1`), alice); // app password, 1 familiar network, 1 session

  const bob = rowOf(r.body, 'bob');
  assert.ok(bob.includes(`1: ${EVIL_PASSKEY} (last used 2026-02-03 04:05:06 UTC)`), bob);
  assert.match(bob, /bob\s+staff active none 1: .* 0 none 0 1$/);

  assert.match(rowOf(r.body, 'carol'), /carol\s+disabled none none 0 none 0 0/);
  assert.match(text(r.body), /Users 1 to 4 of 4/);
});

test('a user page shows the entry, the factors, the sessions and the blocks; a bad name is 400, an unknown one 404', async () => {
  const a = await signedIn();
  const r = await a.get('/console/user?user=alice');
  assert.equal(r.statusCode, 200);
  const t = text(r.body);
  assert.match(t, /User alice Display name Alice Example E-mail Groups staff, admins State active/);
  assert.match(t, /TOTP enrolled since 2026-01-02 03:04:05 UTC Recovery codes left 3 Passkeys 0 App passwords 1 Familiar networks 1 Active sessions 1/);
  assert.match(t, /192\.0\.2\.7 pwd \+ otp signed in/);
  assert.match(t, /Nothing is blocked on this account/);
  assert.match(r.body, /action="\/console\/user\/totp-reset"/);

  const bob = await a.get('/console/user?user=bob');
  assert.match(text(bob.body), new RegExp(`Passkeys Name Registered Last used Transports Action ${EVIL_PASSKEY.replace(/[()]/g, '\\$&')} 2026-03-01 \\d\\d:\\d\\d:\\d\\d UTC 2026-02-03 04:05:06 UTC internal Remove`));
  assert.equal(hiddenField(bob.body.slice(bob.body.indexOf('passkey-remove')), 'id'), PASSKEY_ID);

  const unknown = await a.get('/console/user?user=nobody');
  assert.equal(unknown.statusCode, 404);
  assert.match(text(unknown.body), /There is no user nobody in the users file/);
  for (const bad of ['/console/user?user=..%2Fetc', '/console/user', '/console/user?user=alice&user=bob', '/console/user?user=%3Cscript%3E']) {
    const b = await a.get(bad);
    assert.equal(b.statusCode, 400, bad);
    assert.doesNotMatch(b.body, /<script>/);
  }
});

test('a passkey named <script>, an app password label breaking out of an attribute and a display name with quotes render inert', async () => {
  const a = await signedIn();
  for (const url of ['/console/users', '/console/user?user=bob', '/console/user?user=dan', '/console/user?user=alice']) {
    const r = await a.get(url);
    assert.equal(r.statusCode, 200, url);
    assert.doesNotMatch(r.body, /<script/i, url);
    assert.doesNotMatch(r.body, /<img/i, url);
    assert.doesNotMatch(r.body, /<b>/, url);
    assert.doesNotMatch(r.body, /"the man"/, url);
    assert.doesNotMatch(String(r.headers['content-security-policy']), /script-src/);
  }
  const list = await a.get('/console/users');
  assert.ok(list.body.includes('&#60;script&#62;alert(1)&#60;/script&#62;'), 'the passkey name is shown escaped');
  assert.ok(list.body.includes('Dan &#34;the man&#34; O&#39;Neil &#60;b&#62;'), 'the display name is shown escaped');
  assert.ok(rowOf(list.body, 'dan').includes(QUOTED_NAME), 'and reads as typed');
});

test('every user action needs this console’s Origin and the session’s CSRF token', async () => {
  const a = await signedIn();
  const st = tg.gw.rt.stores.state;
  const actions: Array<[string, Record<string, string>]> = [
    ['/console/user/passkey-remove', { user: 'bob', id: PASSKEY_ID }],
    ['/console/user/totp-reset', { user: 'alice', confirm: 'yes' }],
    ['/console/user/revoke', { user: 'alice' }],
    ['/console/user/unblock', { user: 'alice' }],
  ];
  for (const [url, fields] of actions) {
    const noCsrf = await a.post(url, fields);
    assert.equal(noCsrf.statusCode, 403, url);
    const wrong = await a.post(url, { ...fields, csrf: 'A'.repeat(43) });
    assert.equal(wrong.statusCode, 403, url);
    const foreign = await a.act(url, fields, { origin: 'http://evil.test' });
    assert.equal(foreign.statusCode, 403, url);
  }
  assert.equal((await st.listPasskeys('bob')).length, 1);
  assert.notEqual(await st.getTotp('alice'), null);
  assert.equal((await tg.gw.rt.stores.sessions.list('alice')).length, 1);
});

test('removing a passkey: the API operation, audited, the user’s sessions end, back on the user page', async () => {
  const a = await signedIn();
  const before = audited('passkey_removed', 'bob');
  const r = await a.act('/console/user/passkey-remove', { user: 'bob', id: PASSKEY_ID });
  assert.equal(r.statusCode, 303, r.body);
  assert.equal(r.headers.location, '/console/user?user=bob#factors');
  assert.equal((await tg.gw.rt.stores.state.listPasskeys('bob')).length, 0);
  assert.equal((await tg.gw.rt.stores.sessions.list('bob')).length, 0);
  assert.equal(audited('passkey_removed', 'bob'), before + 1);
  const page = await a.get('/console/user?user=bob');
  assert.match(text(page.body), /Removed the passkey <script>alert\(1\)<\/script> of bob; 1 session ended\./);
  assert.doesNotMatch(page.body, /<script/);
  // the flash is shown once
  assert.doesNotMatch(text((await a.get('/console/user?user=bob')).body), /Removed the passkey/);

  const again = await a.act('/console/user/passkey-remove', { user: 'bob', id: PASSKEY_ID });
  assert.equal(again.statusCode, 404);
  assert.match(text(again.body), /has no passkey/);
});

test('resetting TOTP needs the confirmation box; then device and recovery codes are gone, audited', async () => {
  const a = await signedIn();
  const st = tg.gw.rt.stores.state;
  const unconfirmed = await a.act('/console/user/totp-reset', { user: 'alice' });
  assert.equal(unconfirmed.statusCode, 400);
  assert.match(text(unconfirmed.body), /Tick the box/);
  assert.match(text(unconfirmed.body), /User alice/, 'the refusal is shown on the user page');
  assert.notEqual(await st.getTotp('alice'), null);

  const before = audited('totp_reset', 'alice');
  const r = await a.act('/console/user/totp-reset', { user: 'alice', confirm: 'yes' });
  assert.equal(r.statusCode, 303, r.body);
  assert.equal(await st.getTotp('alice'), null);
  assert.equal(await st.countRecoveryCodes('alice'), 0);
  assert.equal((await tg.gw.rt.stores.sessions.list('alice')).length, 0);
  assert.equal(audited('totp_reset', 'alice'), before + 1);
  const list = await a.get('/console/users');
  assert.match(rowOf(list.body, 'alice'), /active none none 0 /);
});

test('revoking a user’s sessions and lifting their blocks, audited', async () => {
  const a = await signedIn();
  const rt = tg.gw.rt;
  const revoked = audited('session_revoked', 'alice');
  const r = await a.act('/console/user/revoke', { user: 'alice' });
  assert.equal(r.statusCode, 303, r.body);
  assert.equal((await rt.stores.sessions.list('alice')).length, 0);
  assert.equal((await rt.stores.sessions.list('bob')).length, 1, 'only alice’s sessions');
  assert.equal(audited('session_revoked', 'alice'), revoked + 1);

  for (let i = 0; i < 3; i++) await rt.throttle.recordFailure({ ip: `203.0.113.${i + 1}`, user: 'alice', passwordFingerprint: `fp${i}-${clock.now()}`, familiar: false });
  const blocked = await a.get('/console/user?user=alice');
  assert.match(text(blocked.body), /account locked out \(from unfamiliar networks\); lifts in/);
  const unblocked = audited('unblocked', 'alice');
  const u = await a.act('/console/user/unblock', { user: 'alice' });
  assert.equal(u.statusCode, 303, u.body);
  assert.equal((await rt.throttle.listBlocks()).filter((b) => b.user === 'alice').length, 0);
  assert.equal(audited('unblocked', 'alice'), unblocked + 1);
  assert.match(text((await a.get('/console/user?user=alice')).body), /Lifted 1 block on account alice\./);
});

test('actions on an unknown or malformed user are refused and change nothing', async () => {
  const a = await signedIn();
  const unknown = await a.act('/console/user/revoke', { user: 'nobody' });
  assert.equal(unknown.statusCode, 404);
  assert.match(text(unknown.body), /There is no user nobody/);
  const bad = await a.act('/console/user/totp-reset', { user: '<x>', confirm: 'yes' });
  assert.equal(bad.statusCode, 400);
  assert.doesNotMatch(bad.body, /<x>/);
  assert.notEqual(await tg.gw.rt.stores.state.getTotp('alice'), null);
});

test(`the users page shows at most ${USERS_PER_PAGE} users a page, with links to the others`, async () => {
  await writeUsers(450); // 454 users
  try {
    const a = await signedIn();
    const p1 = await a.get('/console/users');
    assert.equal(p1.statusCode, 200);
    const rows = (b: string) => (decodeEntities(b).match(/<tr><td><a href="\/console\/user\?user=/g) ?? []).length;
    assert.equal(rows(p1.body), USERS_PER_PAGE);
    assert.match(text(p1.body), /Users 1 to 200 of 454/);
    assert.match(p1.body, /<a href="\/console\/users\?page=2">Next page<\/a>/);
    const p3 = await a.get('/console/users?page=3');
    assert.equal(rows(p3.body), 54);
    assert.match(p3.body, /<a href="\/console\/users\?page=2">Previous page<\/a>/);
    assert.doesNotMatch(p3.body, /Next page/);
    assert.equal((await a.get('/console/users?page=4')).statusCode, 404);
    for (const bad of ['0', '-1', 'x', '1e3', '99999999']) assert.equal((await a.get(`/console/users?page=${bad}`)).statusCode, 400, bad);
    assert.equal((await a.get('/console/users?page=1&page=2')).statusCode, 400);
  } finally {
    await writeUsers();
  }
});
