/**
 * Signing in, end to end over real sockets, as a person and as an attacker would see it.
 *
 * One gateway with a fixed clock (so TOTP codes and timeouts are computed, never waited for) in
 * front of a recording app, with two apps: `mail.test` (password, a groups rule on /admin, app
 * passwords over Basic on the ActiveSync path) and `vault.test` (password then TOTP). Clients pick
 * their network by source address: 127.0.0.1 is the office (where a first authenticator may be
 * enrolled), 127.0.0.2 home (may sign in, may not enrol), 127.0.0.3 a trusted reverse proxy,
 * 127.0.0.4 a network no rule admits.
 *
 * The story: carol signs in, enrols an authenticator from the office, receives ten recovery codes
 * once, reaches the app, which sees who she is and can verify it, signs out, and her old cookie is
 * worthless. A recovery code works once. Enrolment from home is refused. A user disabled
 * mid-session is out at once, even half-way through signing in. Sessions end when idle and when
 * old. The assertion verifies against the published keys. App passwords work only where
 * configured; groups rules decide per user; a password change is held to the policy; cookies are
 * named and flagged for their scheme.
 *
 * The attacks once told here have their own narrated files in test/security/: a planted cookie
 * (session-fixation.test.ts), a code raced from two sessions (totp-replay.test.ts), unknown vs
 * wrong vs disabled users (user-enumeration.test.ts), forged identity headers
 * (identity-header-spoofing.test.ts).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import { ManualClock } from '../../src/clock.js';
import { generateCode } from '../../src/auth/totp.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { hashSessionId } from '../../src/session/sessions.js';
import { echoOf, startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway, type TestUser } from '../helpers/gateway.js';
import { PortalClient, decodeEntities, hiddenField, parseSetCookie, type PortalResponse } from '../helpers/portal.js';

const OFFICE = '127.0.0.1';
const HOME = '127.0.0.2';
const PROXY = '127.0.0.3';
const ELSEWHERE = '127.0.0.4';
const COOKIE = 'portcullis_dev_session';

const PW = {
  alice: 'amber lantern orchid gravel 1987',
  bob: 'copper meadow violin tractor 2044',
  carol: 'saffron kettle glacier pylon 3310',
  dave: 'walnut harbour cinder ribbon 5521',
  erin: 'juniper quarry mosaic beacon 7781',
  frank: 'tundra pepper lattice otter 9043',
  gina: 'pewter saddle monsoon falcon 6671',
  hank: 'velvet anchor prairie comet 8124',
} as const;

const USERS: TestUser[] = [
  { name: 'alice', password: PW.alice, groups: ['staff'], email: 'alice@example.org' },
  { name: 'bob', password: PW.bob, groups: ['admins'] },
  { name: 'carol', password: PW.carol, groups: ['staff'], email: 'carol@example.org' },
  { name: 'dave', password: PW.dave, groups: ['staff'] },
  { name: 'erin', password: PW.erin, groups: ['staff'], disabled: true },
  { name: 'frank', password: PW.frank, groups: ['staff'] },
  { name: 'gina', password: PW.gina, groups: ['staff'] },
  { name: 'hank', password: PW.hank, groups: ['staff'] },
];

/** The hardware token provisioned for dave and gina (20 bytes, base32; replay is tracked per user). */
const DAVE_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

const clock = new ManualClock(Date.UTC(2026, 0, 5, 9, 0, 0));
let up: Upstream;
let gw: TestGateway;
/** carol's recovery codes, as shown once at enrolment. */
let carolCodes: string[] = [];

function config(upstream: string): string {
  return `
trusted_proxies: ["${PROXY}/32"]
networks:
  office: ["${OFFICE}/32"]
  home: ["${HOME}/32"]
totp: { issuer: "Test Mail", enrol: { networks: [office] } }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${upstream}"
    rules:
      - { paths: ["/admin", "/admin/**"], groups: [admins], policy: password }
      - { paths: ["/admin", "/admin/**"], policy: deny }
      - { networks: [office, home], policy: password }
      - { policy: deny }
    basic_auth: { paths: ["/Microsoft-Server-ActiveSync", "/Microsoft-Server-ActiveSync/**"] }
  - name: vault
    hosts: ["vault.test"]
    upstream: "${upstream}"
    rules:
      - { networks: [office, home], policy: mfa }
      - { policy: deny }
`;
}

before(async () => {
  up = await startUpstream();
  gw = await startTestGateway(config(up.url), { users: USERS, clock });
  const rt = gw.gw.rt;
  for (const user of ['dave', 'gina']) {
    await rt.stores.state.setTotp(user, { secret: rt.box.seal(DAVE_SECRET, `totp:${user}`), enrolledAt: clock.now(), source: 'provisioned' });
  }
});

after(async () => {
  await gw?.close();
  await up?.close();
});

const totp = () => gw.gw.rt.config.totp;

/** Move the clock three time steps on, so the next code is one nobody has used yet. */
function freshStep(): void {
  clock.advance(3 * totp().period * 1000);
}

function codeFor(secret: string, at = clock.now()): string {
  const t = totp();
  return generateCode(secret, { time: at, period: t.period, digits: t.digits, algorithm: t.algorithm });
}

function client(from: string = OFFICE, host = 'mail.test', headers: string[] = []): PortalClient {
  return new PortalClient(gw.port, host, { localAddress: from, headers });
}

async function auditEvents(): Promise<AuditEvent[]> {
  const text = await readFile(join(gw.dir.dir, 'data', 'audit.jsonl'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditEvent);
}

/** The audit file is appended asynchronously; poll it (briefly) until `pred` matches a line. */
async function waitForAudit(pred: (e: AuditEvent) => boolean): Promise<AuditEvent> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const hit = (await auditEvents()).find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) assert.fail('no matching audit event was written');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const recoveryCodesIn = (body: string) => [...body.matchAll(/<li>([0-9a-z]{5}-[0-9a-z]{5})<\/li>/g)].map((m) => m[1]!);

test('first sign-in: password, enrolment from the office, ten recovery codes once, the app sees carol, logout ends it', async () => {
  const c = client(OFFICE, 'vault.test');
  const anon = await c.navigate('/inbox');
  assert.equal(anon.status, 302);
  assert.equal(anon.headers.location, '/.portcullis/login?rd=%2Finbox');

  const login = await c.login('carol', PW.carol, '/inbox');
  assert.equal(login.status, 303);
  assert.equal(login.headers.location, '/.portcullis/enrol');
  const pending = c.cookie(COOKIE)!;
  assert.ok(pending);
  // half signed in: the app is still out of reach
  assert.equal((await c.get('/inbox')).status, 401);
  assert.equal((await c.navigate('/inbox')).headers.location, '/.portcullis/enrol');

  const page = await c.get('/.portcullis/enrol');
  assert.equal(page.status, 200);
  const csp = page.headers['content-security-policy']!;
  assert.match(csp, /default-src 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|script-src/);
  assert.doesNotMatch(page.body, /<script/i, 'no JavaScript needed');
  const qr = /<img class="qr" src="([^"]+)"/.exec(page.body);
  assert.ok(qr, 'a QR code image');
  assert.match(decodeEntities(qr[1]!), /^data:image\/png;base64,[A-Za-z0-9+/]+=*$/, 'the QR code is inline (img-src data: only)');
  const secret = /id="secret">([A-Z2-7 ]+)</.exec(page.body)![1]!.replace(/ /g, '');
  assert.equal(secret.length, 32, '160-bit key for SHA1');
  const uri = new URL(decodeEntities(/id="otpauth-uri"><code>([^<]+)</.exec(page.body)![1]!));
  assert.equal(uri.protocol, 'otpauth:');
  assert.equal(uri.searchParams.get('secret'), secret);
  assert.equal(uri.searchParams.get('issuer'), 'Test Mail');
  // reloading the page shows the same key (the candidate is kept in the session, sealed)
  assert.match((await c.get('/.portcullis/enrol')).body, new RegExp(secret.replace(/(.{4})/g, '$1 ').trim()));

  const done = await c.submit('/.portcullis/enrol', { code: codeFor(secret) });
  assert.equal(done.status, 200);
  carolCodes = recoveryCodesIn(done.body);
  assert.equal(carolCodes.length, 10);
  assert.equal(new Set(carolCodes).size, 10);
  assert.match(done.body, /<a href="\/inbox" id="continue">/);
  const signedIn = c.cookie(COOKIE)!;
  assert.notEqual(signedIn, pending, 'a new session id once the second factor is set up');

  // the secret is stored sealed, never in clear
  const rt = gw.gw.rt;
  const stored = await rt.stores.state.getTotp('carol');
  assert.ok(stored);
  assert.ok(!stored.secret.includes(secret));
  assert.equal(rt.box.open(stored.secret, 'totp:carol'), secret);

  const app = echoOf(await c.get('/inbox'));
  assert.equal(app.url, '/inbox');
  assert.equal(app.headers['remote-user'], 'carol');
  assert.equal(app.headers['remote-groups'], 'staff');
  assert.equal(app.headers['remote-email'], 'carol@example.org');
  const claims = decodeJwt(String(app.headers['x-portcullis-assertion']));
  assert.equal(claims.sub, 'carol');
  assert.deepEqual(claims['amr'], ['pwd', 'otp']);
  assert.ok(!String(app.headers.cookie ?? '').includes(signedIn), 'the gateway cookie is not passed to the app');

  // the codes are shown once: the enrolment page now offers to replace the authenticator, never the codes
  const again = await c.get('/.portcullis/enrol');
  assert.equal(recoveryCodesIn(again.body).length, 0);
  for (const code of carolCodes) assert.ok(!again.body.includes(code));
  await waitForAudit((e) => e.event === 'totp_enrolled' && e.user === 'carol');

  const out = await c.logout();
  assert.equal(out.status, 200);
  assert.match(out.body, /signed out/i);
  assert.equal(c.cookie(COOKIE), undefined, 'the cookie is cleared');
  assert.equal((await rt.stores.sessions.list('carol')).length, 0, 'no session left on the server');
  // someone who copied the cookie before logout gets nowhere
  const thief = client(OFFICE, 'vault.test');
  thief.jar.set(COOKIE, signedIn);
  const refused = await thief.navigate('/inbox');
  assert.equal(refused.status, 302);
  assert.match(refused.headers.location!, /^\/\.portcullis\/login\?rd=/);
  assert.equal((await thief.get('/inbox')).status, 401);
  await waitForAudit((e) => e.event === 'session_ended' && e.user === 'carol');
});

test('a recovery code stands in for the authenticator exactly once', async () => {
  assert.equal(carolCodes.length, 10, 'runs after the enrolment test');
  const c = client(OFFICE, 'vault.test');
  assert.equal((await c.login('carol', PW.carol, '/inbox')).headers.location, '/.portcullis/mfa');
  const ok = await c.submit('/.portcullis/mfa', { code: carolCodes[0]!.toUpperCase() });
  assert.equal(ok.status, 303);
  assert.equal(echoOf(await c.get('/inbox')).headers['remote-user'], 'carol');
  assert.equal(await gw.gw.rt.stores.state.countRecoveryCodes('carol'), 9);

  const d = client(OFFICE, 'vault.test');
  await d.login('carol', PW.carol, '/inbox');
  const reused = await d.submit('/.portcullis/mfa', { code: carolCodes[0]! });
  assert.equal(reused.status, 401);
  assert.equal((await d.get('/inbox')).status, 401);
});

test('a user disabled while signed in is refused at once, and a half-finished sign-in cannot be completed', async () => {
  const full = client(OFFICE, 'mail.test');
  await full.login('gina', PW.gina);
  freshStep();
  assert.equal((await full.submit('/.portcullis/mfa', { code: codeFor(DAVE_SECRET) })).status, 303);
  assert.equal(echoOf(await full.get('/')).headers['remote-user'], 'gina');
  const half = client(OFFICE, 'vault.test');
  assert.equal((await half.login('gina', PW.gina, '/inbox')).headers.location, '/.portcullis/mfa');
  const token = hiddenField((await half.get('/.portcullis/mfa')).body, 'csrf')!;

  // the admin disables gina (the users file is edited and re-read, as on a reload)
  const text = await readFile(gw.usersFile, 'utf8');
  const disabled = text.replace(/(\n  gina:\n(?: {4}.*\n)*)/, '$1    disabled: true\n');
  assert.notEqual(disabled, text);
  await writeFile(gw.usersFile, disabled);
  await gw.gw.rt.reloadUsers();

  assert.equal((await full.get('/')).status, 401, 'the open session is over');
  freshStep();
  const r = await half.post('/.portcullis/mfa', { csrf: token, code: codeFor(DAVE_SECRET) });
  assert.equal(r.status, 303);
  assert.equal(r.headers.location, '/.portcullis/login', 'a correct code does not finish the sign-in of a disabled user');
  assert.ok(!r.setCookies.some((l) => l.startsWith(`${COOKIE}=`)), 'no new session');
  assert.equal((await half.get('/inbox')).status, 401);
  assert.equal((await gw.gw.rt.stores.sessions.list('gina')).length, 0);
  assert.equal((await client(OFFICE, 'mail.test').login('gina', PW.gina)).status, 401);
});

test('enrolment is refused outside totp.enrol.networks, directly and through a trusted proxy', async () => {
  const rt = gw.gw.rt;
  // from home: sign-in is allowed there, enrolment is not; the right password leads nowhere, so
  // it is answered exactly as a wrong one (no password oracle), and the owner is told
  const home = client(HOME, 'vault.test');
  const r = await home.login('frank', PW.frank, '/');
  assert.equal(r.status, 401);
  assert.match(r.body, /Incorrect username or password\./);
  assert.doesNotMatch(r.body, /enrol/i);
  assert.equal(home.cookie(COOKIE), undefined, 'no session');
  await waitForAudit((e) => e.event === 'password_refused_correct' && e.user === 'frank');

  // an untrusted peer's X-Forwarded-For is ignored
  const liar = client(HOME, 'vault.test', ['X-Forwarded-For: 127.0.0.1']);
  assert.equal((await liar.login('frank', PW.frank, '/')).status, 401);

  // through the trusted proxy, the forwarded client address decides
  const viaHome = client(PROXY, 'vault.test', [`X-Forwarded-For: ${HOME}`]);
  assert.equal((await viaHome.login('frank', PW.frank, '/')).status, 401);
  const viaOffice = client(PROXY, 'vault.test', [`X-Forwarded-For: ${OFFICE}`]);
  const ok = await viaOffice.login('frank', PW.frank, '/');
  assert.equal(ok.status, 303);
  assert.equal(ok.headers.location, '/.portcullis/enrol');
  const page = await viaOffice.get('/.portcullis/enrol');
  assert.equal(page.status, 200);
  const secret = /id="secret">([A-Z2-7 ]+)</.exec(page.body)![1]!.replace(/ /g, '');

  // the same half-open session taken home: the enrolment page and its confirmation are refused
  const carried = client(HOME, 'vault.test');
  carried.jar.set(COOKIE, viaOffice.cookie(COOKIE)!);
  assert.equal((await carried.get('/.portcullis/enrol')).status, 403);
  freshStep();
  const confirm = await carried.post('/.portcullis/enrol', { csrf: hiddenField(page.body, 'csrf')!, code: codeFor(secret) });
  assert.equal(confirm.status, 403);
  assert.equal(await rt.stores.state.getTotp('frank'), null, 'nothing was enrolled');
  await waitForAudit((e) => e.event === 'network_denied' && e.user === 'frank');
});

test('a session ends after the idle timeout, and after the absolute timeout however active', async () => {
  const c = client(OFFICE, 'mail.test');
  await c.login('alice', PW.alice, '/');
  assert.equal(echoOf(await c.get('/')).headers['remote-user'], 'alice');
  clock.advance(29 * 60_000);
  assert.equal((await c.get('/')).status, 200, 'within the idle timeout');
  clock.advance(29 * 60_000);
  assert.equal((await c.get('/')).status, 200, 'activity resets the idle timer');
  clock.advance(30 * 60_000 + 1);
  const idle = await c.navigate('/');
  assert.equal(idle.status, 302, 'idle for 30 minutes: signed out');
  assert.match(idle.headers.location!, /^\/\.portcullis\/login/);

  const d = client(OFFICE, 'mail.test');
  await d.login('alice', PW.alice, '/');
  const started = clock.now();
  while (clock.now() - started < 12 * 3_600_000 - 20 * 60_000) {
    clock.advance(20 * 60_000);
    assert.equal((await d.get('/')).status, 200);
  }
  clock.advance(20 * 60_000);
  assert.equal((await d.get('/')).status, 401, 'twelve hours after sign-in the session is over');
});

test('the assertion verifies against /.portcullis/jwks.json: aud is the app, amr the factors used', async () => {
  // fetched over a closed connection (Connection: close), as an app would at start, then used locally
  const res = await client(OFFICE, 'vault.test').get('/.portcullis/jwks.json');
  assert.equal(res.status, 200);
  assert.match(res.headers['content-type']!, /^application\/(jwk-set\+)?json/);
  const set = JSON.parse(res.body) as JSONWebKeySet;
  assert.ok(set.keys.length >= 1);
  for (const k of set.keys) assert.equal((k as { d?: string }).d, undefined, 'no private key material');
  const jwks = createLocalJWKSet(set);
  const currentDate = () => new Date(clock.now());

  const v = client(OFFICE, 'vault.test');
  await v.login('dave', PW.dave, '/x');
  freshStep();
  assert.equal((await v.submit('/.portcullis/mfa', { code: codeFor(DAVE_SECRET) })).status, 303);
  const token = String(echoOf(await v.get('/x')).headers['x-portcullis-assertion']);
  const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer: 'portcullis', audience: 'vault', algorithms: ['ES256'], currentDate: currentDate() });
  assert.equal(protectedHeader.alg, 'ES256');
  assert.equal(payload.sub, 'dave');
  assert.deepEqual(payload['amr'], ['pwd', 'otp']);
  assert.deepEqual(payload['groups'], ['staff']);
  assert.equal(payload['ip'], OFFICE);
  assert.ok(payload.jti && payload.iat && payload.exp && payload.exp - payload.iat <= 300);
  await assert.rejects(jwtVerify(token, jwks, { issuer: 'portcullis', audience: 'mail', currentDate: currentDate() }), /aud/);
  const forged = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  await assert.rejects(jwtVerify(forged, jwks, { issuer: 'portcullis', audience: 'vault', currentDate: currentDate() }), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
  await assert.rejects(jwtVerify(token, jwks, { audience: 'vault', currentDate: new Date(clock.now() + 301_000) }), /exp/);

  const a = client(OFFICE, 'mail.test');
  await a.login('alice', PW.alice, '/');
  const t2 = String(echoOf(await a.get('/')).headers['x-portcullis-assertion']);
  const p2 = (await jwtVerify(t2, jwks, { issuer: 'portcullis', audience: 'mail', currentDate: currentDate() })).payload;
  assert.deepEqual(p2['amr'], ['pwd']);
  assert.equal(p2['email'], 'alice@example.org');
});

test('app passwords over Basic: accepted on basic_auth paths only, never from a denied network, never the account password', async () => {
  const rt = gw.gw.rt;
  const appPw = randomBytes(20).toString('base64url');
  const add = (user: string, pw: string) =>
    rt.stores.state.addAppPassword(user, { label: 'phone', hash: rt.box.hmac('app-password', `${user}\u0000${pw}`), createdAt: clock.now() });
  await add('alice', appPw);
  await add('erin', appPw);
  const basic = (user: string, pw: string) => `Authorization: Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;
  const sync = '/Microsoft-Server-ActiveSync?Cmd=Sync';
  const phone = (from: string, user: string, pw: string, path = sync) => client(from, 'mail.test').get(path, { headers: [basic(user, pw)] });

  const before = up.requests.length;
  const ok = await phone(HOME, 'alice', appPw);
  const app = echoOf(ok);
  assert.equal(app.url, sync);
  assert.equal(app.headers['remote-user'], 'alice');
  assert.equal(app.headers.authorization, undefined, 'the app password is not passed on');
  assert.deepEqual(decodeJwt(String(app.headers['x-portcullis-assertion']))['amr'], ['pwd']);

  const offPath = await phone(HOME, 'alice', appPw, '/inbox');
  assert.equal(offPath.status, 401, 'off the basic_auth paths an app password is no credential');
  const denied = await phone(ELSEWHERE, 'alice', appPw);
  assert.equal(denied.status, 403, 'network rules come first');
  const account = await phone(HOME, 'alice', PW.alice);
  assert.equal(account.status, 401, 'the account password is not an app password');
  assert.match(account.headers['www-authenticate']!, /^Basic realm="mail"/);
  assert.equal((await phone(HOME, 'alice', 'x' + appPw)).status, 401);
  assert.equal((await phone(HOME, 'erin', appPw)).status, 401, 'a disabled user\'s app passwords are dead');
  assert.equal(up.requests.length, before + 1, 'only the good request reached the app');
});

test('a groups rule: anonymous users must sign in, then the rule decides by group', async () => {
  const anon = await client(OFFICE).navigate('/admin/users');
  assert.equal(anon.status, 302, 'a groups rule never bypasses');
  assert.match(anon.headers.location!, /^\/\.portcullis\/login\?rd=%2Fadmin%2Fusers$/);

  const alice = client(OFFICE);
  await alice.login('alice', PW.alice, '/admin/users');
  assert.equal((await alice.get('/admin/users')).status, 403, 'staff are not admins');
  assert.equal((await alice.get('/inbox')).status, 200);

  const bob = client(OFFICE);
  const r = await bob.login('bob', PW.bob, '/admin/users');
  assert.equal(r.headers.location, '/admin/users');
  const app = echoOf(await bob.get('/admin/users'));
  assert.equal(app.headers['remote-user'], 'bob');
  assert.equal(app.headers['remote-groups'], 'admins');
  await waitForAudit((e) => e.event === 'access_denied' && e.user === 'alice');
});

test('password change: held to the policy, the session id changes, the old password stops working', async () => {
  const c = client(OFFICE, 'mail.test');
  await c.login('hank', PW.hank);
  const before = c.cookie(COOKIE)!;
  const page = await c.get('/.portcullis/password');
  assert.equal(page.status, 200);
  assert.doesNotMatch(page.body, /<script/i);
  const change = (current: string, next: string, confirm = next) => c.submit('/.portcullis/password', { current, new: next, confirm });
  const refusals: Array<[() => Promise<PortalResponse>, number, RegExp]> = [
    [() => change(PW.hank, 'short'), 400, /at least 8 characters/],
    [() => change(PW.hank, 'password123'), 400, /too common|too easy/],
    [() => change(PW.hank, 'hank hank hank hank'), 400, /user name|too easy|too common/],
    [() => change(PW.hank, 'glacier orbit mango 5513', 'glacier orbit mango 5514'), 400, /do not match/],
    [() => change('not the current one', 'glacier orbit mango 5513'), 401, /current password is not correct/],
  ];
  for (const [send, status, msg] of refusals) {
    const r = await send();
    assert.equal(r.status, status, r.body);
    assert.match(r.body, msg);
  }
  const next = 'glacier orbit mango lighthouse 5513';
  const ok = await change(PW.hank, next);
  assert.equal(ok.status, 200, ok.body);
  assert.match(ok.body, /Password changed/);
  assert.notEqual(c.cookie(COOKIE), before, 'a new session id after the change');
  assert.equal(echoOf(await c.get('/')).headers['remote-user'], 'hank');
  assert.equal((await client(OFFICE).login('hank', PW.hank)).status, 401, 'the old password no longer works');
  assert.equal((await client(OFFICE).login('hank', next)).status, 303, 'the new one does');
  assert.match(await readFile(gw.usersFile, 'utf8'), /hank:\n {4}password: "\$argon2id\$/, 'stored as an argon2id hash');
});

test('cookies: __Host-portcullis over https (Secure, Path=/, no Domain), a plain name on http; ids stored only as hashes', async () => {
  const https = client(PROXY, 'mail.test', [`X-Forwarded-For: ${OFFICE}`, 'X-Forwarded-Proto: https']);
  const r = await https.login('alice', PW.alice, '/');
  assert.equal(r.status, 303);
  const set = r.setCookies.map(parseSetCookie).find((c) => c.name === '__Host-portcullis');
  assert.ok(set, r.setCookies.join('\n'));
  assert.ok(set.attrs.has('secure'));
  assert.ok(set.attrs.has('httponly'));
  assert.equal(set.attrs.get('path'), '/');
  assert.equal(set.attrs.has('domain'), false);
  assert.equal(set.attrs.get('samesite')?.toLowerCase(), 'lax');
  assert.equal(echoOf(await https.get('/')).headers['remote-user'], 'alice');

  const http = client(OFFICE, 'mail.test');
  const h = await http.login('alice', PW.alice, '/');
  const plain = h.setCookies.map(parseSetCookie).find((c) => c.name === COOKIE);
  assert.ok(plain, h.setCookies.join('\n'));
  assert.ok(!plain.attrs.has('secure'));
  assert.ok(!h.setCookies.some((l) => l.startsWith('__Host-')));

  // 256 bits, and the store knows only the hash
  for (const id of [set.value, plain.value]) {
    assert.equal(Buffer.from(id, 'base64url').length, 32);
    const all = await gw.gw.rt.stores.sessions.list('alice');
    assert.ok(all.some((s) => s.idHash === hashSessionId(id)));
    assert.ok(!JSON.stringify(all).includes(id), 'the bearer id is never stored');
  }
});

test('malformed sign-in forms get 4xx, never a 500', async () => {
  const c = client(OFFICE);
  const page = await c.get('/.portcullis/login');
  const csrf = hiddenField(page.body, 'csrf')!;
  const bodies: Array<[string, string]> = [
    ['application/x-www-form-urlencoded', `csrf=${csrf}&username=alice&username=bob&password=x`],
    ['application/x-www-form-urlencoded', `csrf=${csrf}&csrf=${csrf}&username=alice&password=x`],
    ['application/json', JSON.stringify({ csrf, username: ['alice'], password: 'x' })],
    ['application/json', JSON.stringify({ csrf, username: 'alice', password: { a: 1 } })],
    ['application/x-www-form-urlencoded', `csrf=${csrf}&username=alice&password=${'x'.repeat(20_000)}`],
  ];
  for (const [type, body] of bodies) {
    const r = await c.request('POST', '/.portcullis/login', { body, contentType: type });
    assert.ok(r.status >= 400 && r.status < 500, `${type} ${body.slice(0, 80)}: ${r.status}`);
  }
});
