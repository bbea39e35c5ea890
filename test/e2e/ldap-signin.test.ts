/**
 * Signing in against a real OpenLDAP (Debian's slapd, test/helpers/slapd.ts), end to end over real
 * sockets: the gateway in front of a recording app, users from the directory after the users file.
 *
 * The story: alice (in `staff`, and through it in the nested `employees`) signs in from the
 * office; the app sees her name, e-mail and groups. bob is in `admins`, so the /admin rule lets
 * him in where it keeps alice out. A wrong password, a locked account, a name two entries share:
 * one answer to the client, the real reason in the audit, and no bind for the locked account.
 * The break-glass admin in the users file wins over the directory. bob changes his password
 * through the portal and the directory has it. A password the directory says must change leads
 * to the change page, from a familiar network. alice is renamed alicia in the directory: her
 * authenticator (kept under the directory's entryUUID, not her name) still applies. Then the directory goes away: sign-ins get 503,
 * bob's established session goes on, /readyz says so; it comes back and sign-ins work again.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditEvent } from '../../src/audit/events.js';
import { echoOf, startUpstream, type Upstream } from '../helpers/upstream.js';
import { call, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { PortalClient } from '../helpers/portal.js';
import { generateCode } from '../../src/auth/totp.js';
import { directoryKey } from '../../src/directory/ldap.js';
import { addAppPassword, listAppPasswords } from '../../src/admin/operations.js';
import { BASE_DN, slapdMissing, startSlapd, type Slapd, ldapYaml } from '../helpers/slapd.js';

const missing = slapdMissing();
const OFFICE = '127.0.0.1';
/** Another /24: a network alice has never signed in from. */
const HOME = '127.0.1.2';
const PW = { alice: 'Wonderland-Rabbit-1865', bob: 'Can-We-Fix-It-2024', carol: 'Carol-Right-Password-7', dave: 'Dave-Password-Twin-1' };
const dn = (uid: string) => `uid=${uid},ou=people,${BASE_DN}`;

let slapd: Slapd;
let up: Upstream;
let gw: TestGateway;

export function ldapConfig(urls: string[], extra = ''): string {
  return `
${ldapYaml(urls, 'timeout: 2s')}
${extra}`;
}

function config(upstream: string, url: string): string {
  return `
networks:
  office: ["${OFFICE}/32"]
  home: ["${HOME}/32"]
password_policy: { min_length: 10, on_weak: change }
${ldapConfig([url])}
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${upstream}"
    rules:
      - { paths: ["/admin", "/admin/**"], groups: [admins], policy: password }
      - { paths: ["/admin", "/admin/**"], policy: deny }
      - { paths: ["/vault", "/vault/**"], networks: [office], policy: mfa }
      - { networks: [office, home], policy: password }
      - { policy: deny }
    basic_auth: { paths: ["/dav", "/dav/**"] }
`;
}

before(async () => {
  if (missing) return;
  slapd = await startSlapd();
  up = await startUpstream();
  gw = await startTestGateway(config(up.url, slapd.url), { users: [{ name: 'root', password: 'break glass admin password 42', groups: ['admins'] }] });
});

after(async () => {
  await gw?.close();
  await up?.close();
  await slapd?.close();
});

const client = (from = OFFICE) => new PortalClient(gw.port, 'mail.test', { localAddress: from });

async function audit(): Promise<AuditEvent[]> {
  const text = await readFile(join(gw.dir.dir, 'data', 'audit.jsonl'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditEvent);
}
async function waitForAudit(pred: (e: AuditEvent) => boolean): Promise<AuditEvent> {
  for (let i = 0; i < 100; i++) {
    const hit = (await audit()).find(pred);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no such audit event; have:\n${(await audit()).map((e) => JSON.stringify(e)).join('\n')}`);
}

test('alice signs in against the directory; the app sees her e-mail and her groups, nested ones included', { skip: missing ?? false }, async () => {
  const c = client();
  const r = await c.login('alice', PW.alice, '/inbox');
  assert.equal(r.status, 303);
  assert.equal(r.headers.location, '/inbox');
  const app = echoOf(await c.get('/inbox'));
  assert.equal(app.headers['remote-user'], 'alice');
  assert.equal(app.headers['remote-email'], 'alice@example.org');
  assert.equal(app.headers['remote-name'], 'Alice Liddell');
  assert.equal(app.headers['remote-groups'], 'employees,staff', 'staff directly, employees through staff');
  assert.equal((await c.get('/admin')).status, 403, 'not in admins');
  await waitForAudit((e) => e.event === 'login_succeeded' && e.user === 'alice');
});

test('groups from the directory decide rules: bob is in admins', { skip: missing ?? false }, async () => {
  const c = client();
  assert.equal((await c.login('bob', PW.bob, '/admin')).status, 303);
  const app = echoOf(await c.get('/admin'));
  assert.equal(app.headers['remote-user'], 'bob');
  assert.equal(app.headers['remote-groups'], 'admins,employees');
});

test('wrong password, locked account, ambiguous name: one answer, the reason in the audit, no bind for the locked one', { skip: missing ?? false }, async () => {
  const wrong = await client().login('alice', 'not her password');
  assert.equal(wrong.status, 401);
  await waitForAudit((e) => e.event === 'login_failed' && e.user === 'alice' && e.reason === 'wrong password');

  await slapd.modify(dn('carol'), 'add', 'pwdAccountLockedTime', ['000001010000Z']);
  const locked = await client().login('carol', PW.carol);
  assert.equal(locked.status, 401);
  const message = (b: string) => /<p class="error"[^>]*>([^<]*)</.exec(b)?.[1];
  assert.equal(message(locked.body), message(wrong.body), 'the same message as a wrong password');
  await waitForAudit((e) => e.event === 'login_failed' && e.user === 'carol' && /account disabled \(pwdAccountLockedTime\)/.test(e.reason ?? ''));
  assert.equal(await slapd.failures('carol'), 0, 'a locked account is never bound');

  const twin = await client().login('dave', PW.dave);
  assert.equal(twin.status, 401, 'two entries match: no such user');
  await waitForAudit((e) => e.event === 'login_failed' && e.user === 'dave' && e.reason === 'unknown user');

  const empty = await client().login('bob', '');
  assert.notEqual(empty.status, 303, 'an empty password never signs in (it would be an unauthenticated bind)');
});

test('the users file comes first: the break-glass admin signs in with the directory in place', { skip: missing ?? false }, async () => {
  const c = client();
  assert.equal((await c.login('root', 'break glass admin password 42', '/admin')).status, 303);
  assert.equal(echoOf(await c.get('/admin')).headers['remote-user'], 'root');
});

test('bob changes his password through the portal: the directory has the new one', { skip: missing ?? false }, async () => {
  const c = client();
  assert.equal((await c.login('bob', PW.bob, '/inbox')).status, 303);
  const next = 'Brand-New-Directory-Password-99';
  const tooShort = await c.submit('/.portcullis/password', { current: PW.bob, new: 'short', confirm: 'short' });
  assert.equal(tooShort.status, 400, 'held to password_policy');
  const done = await c.submit('/.portcullis/password', { current: PW.bob, new: next, confirm: next });
  assert.equal(done.status, 200, done.body);
  assert.equal(await slapd.canBind(dn('bob'), next), true);
  assert.equal(await slapd.canBind(dn('bob'), PW.bob), false);
  PW.bob = next;
  assert.equal((await client().login('bob', next, '/inbox')).status, 303);
});

test('a password the directory says must change leads to the change page (from a familiar network)', { skip: missing ?? false }, async () => {
  // alice signed in from the office before: a familiar network
  await slapd.modify(dn('alice'), 'add', 'pwdReset', ['TRUE']);
  const c = client();
  const r = await c.login('alice', PW.alice, '/inbox');
  assert.equal(r.status, 303);
  assert.equal(r.headers.location, '/.portcullis/password');
  // from home (never used by alice, no second factor): refused like a wrong password
  const home = await client(HOME).login('alice', PW.alice, '/inbox');
  assert.equal(home.status, 401);
  await waitForAudit((e) => e.event === 'password_refused_correct' && e.user === 'alice' && /password expired/.test(e.reason ?? ''));
  await slapd.modify(dn('alice'), 'delete', 'pwdReset', []);
});

test('the directory goes away: sign-ins answer 503, an established session goes on, /readyz says so; then it comes back', { skip: missing ?? false }, async () => {
  const bob = client();
  assert.equal((await bob.login('bob', PW.bob, '/inbox')).status, 303);
  await slapd.stop();
  try {
    const r = await client().login('alice', PW.alice, '/inbox');
    assert.equal(r.status, 503);
    assert.equal(echoOf(await bob.get('/inbox')).headers['remote-user'], 'bob', 'the established session continues');
    const ready = await call(`http://127.0.0.1:${gw.gw.adminPort}/readyz`);
    assert.equal(ready.status, 200);
    assert.match(ready.text, /"status":"degraded".*directory is unreachable/);
  } finally {
    await slapd.start();
  }
  const again = await client().login('alice', PW.alice, '/inbox');
  assert.equal(again.status, 303);
});

test('a renamed user keeps her authenticator: second factors are kept under the stable id (entryUUID)', { skip: missing ?? false }, async () => {
  const rt = gw.gw.rt;
  const id = rt.directory!.cached('alice')!.directoryId!;
  assert.match(id, /^[0-9a-f-]{36}$/);
  const key = directoryKey(id);
  const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
  await rt.stores.state.setTotp(key, { secret: rt.box.seal(SECRET, `totp:${key}`), enrolledAt: Date.now(), source: 'provisioned' });
  await slapd.rename(dn('alice'), 'uid=alicia');
  try {
    const c = client();
    const r = await c.login('alicia', PW.alice, '/vault');
    assert.equal(r.status, 303);
    assert.equal(r.headers.location, '/.portcullis/mfa', 'the authenticator enrolled as alice is asked for');
    const t = rt.config.totp;
    const code = generateCode(SECRET, { time: Date.now(), period: t.period, digits: t.digits, algorithm: t.algorithm });
    const m = await c.submit('/.portcullis/mfa', { code });
    assert.equal(m.status, 303);
    const app = echoOf(await c.get('/vault'));
    assert.equal(app.headers['remote-user'], 'alicia', 'the app sees the new name');
    assert.equal((await client().login('alice', PW.alice)).status, 401, 'the old name is gone');
  } finally {
    await slapd.rename(dn('alicia'), 'uid=alice');
  }
});

test('app passwords for a directory user: issued by name, kept under the stable id, accepted over Basic; no bind', { skip: missing ?? false }, async () => {
  const rt = gw.gw.rt;
  const issued = await addAppPassword(rt, 'bob', 'phone', { ip: '127.0.0.1' });
  assert.equal(issued.user, 'bob');
  assert.equal((await listAppPasswords(rt, 'bob')).length, 1);
  const before = await slapd.failures('bob');
  const basic = (user: string, pw: string) =>
    call(`${gw.url}/dav/cal`, { headers: { host: 'mail.test', authorization: `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}` } });
  const ok = await basic('bob', issued.password);
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.text).headers['remote-user'], 'bob');
  assert.equal((await basic('bob', 'pcap_WRONGWRONGWRONGWRONGWRONGWRONGWR')).status, 401);
  assert.equal(await slapd.failures('bob'), before, 'app passwords never reach the directory');
});
