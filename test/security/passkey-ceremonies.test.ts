/**
 * Passkey ceremonies against an attacker (issue 13). A software authenticator (P-256 key,
 * hand-made CBOR, fmt "none") stands in for the browser and the key, so the test can lie where a
 * browser never would. The config: `/ecp/**` needs a passkey; `/calendar/**` a password from
 * anywhere (so a stolen password alone yields a session remotely); the office a password; the
 * rest a second factor; a first factor may be enrolled only from the office.
 *
 * - A passkey registered from the office signs in remotely after the password: amr pwd+hwk, and
 *   the `passkey` rule opens. A TOTP session meeting that rule is stepped up to the passkey page.
 * - An assertion (or a registration) made for another origin is refused and audited.
 * - An assertion replayed (its challenge used once already, or replaced by a newer one) is refused.
 * - An assertion answering a challenge issued to another session is refused.
 * - A cloned authenticator (the signature counter going backwards) is refused and audited.
 * - Removing a passkey needs a fresh password and factor; the last factor goes only from the office.
 * - A stolen password from outside the enrol networks registers no passkey by any path: the
 *   sign-in itself, the account page, the manage page, its re-authentication form, the enrolment
 *   and code pages, and the JSON endpoint called directly (options and a forged answer).
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { gate } from '../../src/access/gate.js';
import { generateCode } from '../../src/auth/totp.js';
import { startPortalApp, type InjectClient, type PortalApp } from '../helpers/portal-app.js';
import { hiddenField } from '../helpers/portal.js';
import { SoftAuthenticator, type CreationOptions, type RequestOptions } from '../helpers/soft-authenticator.js';

const HOST = 'mail.example.org';
const ORIGIN = `https://${HOST}`;
const OFFICE = '10.1.2.3';
const REMOTE = '203.0.113.9';
const PW = {
  alice: 'amber lantern orchid gravel 1987',
  bob: 'silver quarry kettle meadow 42',
  carol: 'copper harbour violet thistle 7',
  dave: 'winter cobalt saddle pepper 19',
};
const DAVE_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const SESSION_COOKIE = 'portcullis_dev_session';

let p: PortalApp;

before(async () => {
  p = await startPortalApp(
    `
networks: { office: ["10.1.0.0/16"] }
enrol: { networks: [office] }
webauthn: { rp_id: example.org, rp_name: "Example Mail", origins: ["${ORIGIN}"] }
apps:
  - name: mail
    hosts: ["${HOST}"]
    upstream: "builtin:whoami"
    rules:
      - { paths: ["/ecp/**"], policy: passkey }
      - { paths: ["/calendar/**"], policy: password }
      - { networks: [office], policy: password }
      - { policy: mfa }
`,
    { users: Object.entries(PW).map(([name, password]) => ({ name, password })) },
  );
  const rt = p.rt;
  await rt.stores.state.setTotp('dave', { secret: rt.box.seal(DAVE_SECRET, 'totp:dave'), enrolledAt: p.clock.now(), source: 'provisioned' });
});

after(async () => {
  await p?.close();
});

const dataCsrf = (body: string) => /data-csrf="([^"]+)"/.exec(body)?.[1] ?? null;

async function op(c: InjectClient, csrf: string, fields: Record<string, string>): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await c.post('/.portcullis/passkey', { csrf, ...fields });
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(r.body) as Record<string, unknown>;
  } catch {
    json = { html: r.body, location: r.location };
  }
  return { status: r.status, json };
}

/** Events since `from` of one kind. */
const eventsOf = (from: number, event: string, user?: string) => p.events.slice(from).filter((e) => e.event === event && (user === undefined || e.user === user));

async function signedInAtOffice(user: keyof typeof PW): Promise<InjectClient> {
  const c = p.client(HOST, OFFICE);
  const r = await c.login(user, PW[user]);
  assert.equal(r.status, 303, `${user} signs in at the office`);
  return c;
}

/** Register `auth` for the signed-in client through the manage page; returns the JSON answer. */
async function register(c: InjectClient, auth: SoftAuthenticator, name = 'Laptop') {
  const page = await c.get('/.portcullis/passkey?manage=1');
  assert.equal(page.status, 200);
  const csrf = dataCsrf(page.body);
  assert.ok(csrf, 'the manage page offers registration');
  const o = await op(c, csrf, { op: 'register-options' });
  assert.equal(o.status, 200);
  const options = o.json.options as CreationOptions;
  return op(c, csrf, { op: 'register', name, response: JSON.stringify(auth.register(options)) });
}

/** Sign in remotely with the password; returns the client at the passkey page, and its csrf. */
async function remoteToPasskeyPage(user: keyof typeof PW, rd?: string): Promise<{ c: InjectClient; csrf: string }> {
  const c = p.client(HOST, REMOTE);
  const r = await c.login(user, PW[user], rd);
  assert.equal(r.status, 303);
  assert.equal(r.location, '/.portcullis/mfa');
  const mfa = await c.get('/.portcullis/mfa');
  assert.equal(mfa.location, '/.portcullis/passkey', 'a user with a passkey is offered it first');
  const page = await c.get('/.portcullis/passkey');
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-security-policy']), /script-src 'sha256-[A-Za-z0-9+/=]+'; connect-src 'self'/);
  return { c, csrf: dataCsrf(page.body)! };
}

async function gateFor(c: InjectClient, target: string) {
  return gate(p.rt, p.rt.config, { method: 'GET', target, host: HOST, ip: c.ip, proto: 'http', sessionId: c.cookie(SESSION_COOKIE), authorization: undefined });
}

const alice = new SoftAuthenticator(ORIGIN);

describe('passkeys', () => {
  test('registered at the office, a passkey signs in remotely after the password and opens the passkey rule', async () => {
    const c = await signedInAtOffice('alice');
    const from = p.events.length;
    const r = await register(c, alice, 'Alice laptop');
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.match(String(r.json.next), /manage=1&done=added/);
    assert.equal(eventsOf(from, 'passkey_enrolled', 'alice').length, 1);
    const stored = await p.rt.stores.state.listPasskeys('alice');
    assert.equal(stored.length, 1);
    assert.equal(stored[0]!.name, 'Alice laptop');
    assert.ok(!stored[0]!.publicKey.includes('pQECAyYgASFYI'), 'the public key is sealed, not stored as COSE');

    const { c: remote, csrf } = await remoteToPasskeyPage('alice', '/ecp/');
    const o = await op(remote, csrf, { op: 'authenticate-options' });
    assert.equal(o.status, 200);
    const a = await op(remote, csrf, { op: 'authenticate', response: JSON.stringify(alice.assert(o.json.options as RequestOptions)) });
    assert.equal(a.status, 200, JSON.stringify(a.json));
    assert.equal(a.json.next, '/ecp/');
    const g = await gateFor(remote, '/ecp/');
    assert.equal(g.kind, 'proxy');
    assert.deepEqual(g.kind === 'proxy' ? g.identity?.amr : null, ['pwd', 'hwk']);
    const used = (await p.rt.stores.state.listPasskeys('alice'))[0]!;
    assert.equal(used.counter, alice.counter);
    assert.equal(used.lastUsedAt, p.clock.now());
  });

  test('a TOTP session meeting the passkey rule is stepped up to the passkey page, not let in', async () => {
    const c = p.client(HOST, REMOTE);
    const r = await c.login('dave', PW.dave, '/ecp/');
    assert.equal(r.location, '/.portcullis/mfa');
    const page = await c.get('/.portcullis/mfa');
    const csrf = hiddenField(page.body, 'csrf')!;
    const code = generateCode(DAVE_SECRET, { time: p.clock.now(), period: 30, digits: 6, algorithm: 'SHA1' });
    const m = await c.post('/.portcullis/mfa', { csrf, code });
    assert.equal(m.status, 303);
    const g = await gateFor(c, '/ecp/');
    assert.equal(g.kind, 'step');
    assert.equal(g.kind === 'step' ? g.location : '', '/.portcullis/passkey?rd=%2Fecp%2F');
    assert.equal((await gateFor(c, '/inbox/')).kind, 'proxy', 'the mfa rule is met by the code');
    const pk = await c.get('/.portcullis/passkey?rd=%2Fecp%2F');
    assert.equal(pk.status, 403);
    assert.match(pk.body, /Passkey required/);
    assert.doesNotMatch(pk.body, /id="register-link"/, 'a code (relayable) does not open passkey registration remotely: the first passkey comes from the office');
  });

  test('an assertion or a registration made for another origin is refused and audited', async () => {
    const { c, csrf } = await remoteToPasskeyPage('alice');
    const o = await op(c, csrf, { op: 'authenticate-options' });
    // the real key, used on a relaying phishing page: the browser writes that page's origin
    alice.origin = 'https://mail.example.org.evil.test';
    const from = p.events.length;
    const a = await op(c, csrf, { op: 'authenticate', response: JSON.stringify(alice.assert(o.json.options as RequestOptions)) });
    alice.origin = ORIGIN;
    assert.equal(a.status, 401);
    const failed = eventsOf(from, 'passkey_failed', 'alice');
    assert.equal(failed.length, 1);
    assert.match(failed[0]!.reason ?? '', /origin/i);
    assert.equal((await gateFor(c, '/inbox/')).kind, 'step', 'still only the password');

    const office = await signedInAtOffice('bob');
    const page = await office.get('/.portcullis/passkey?manage=1');
    const oc = dataCsrf(page.body)!;
    const ro = await op(office, oc, { op: 'register-options' });
    const evil = new SoftAuthenticator('https://evil.test');
    const rr = await op(office, oc, { op: 'register', response: JSON.stringify(evil.register(ro.json.options as CreationOptions)) });
    assert.equal(rr.status, 400);
    assert.deepEqual(await p.rt.stores.state.listPasskeys('bob'), []);
    assert.match(eventsOf(from, 'passkey_failed', 'bob')[0]?.reason ?? '', /origin/i);
  });

  test('a replayed assertion is refused: its challenge was used once, or replaced by a newer one', async () => {
    const { c, csrf } = await remoteToPasskeyPage('alice');
    const o = await op(c, csrf, { op: 'authenticate-options' });
    const answer = JSON.stringify(alice.assert(o.json.options as RequestOptions));
    // a newer challenge replaces the old one: the captured answer is stale at once
    await op(c, csrf, { op: 'authenticate-options' });
    const from = p.events.length;
    const stale = await op(c, csrf, { op: 'authenticate', response: answer });
    assert.equal(stale.status, 401);
    // answered properly, then the same answer again on the next session: no live challenge
    const o2 = await op(c, csrf, { op: 'authenticate-options' });
    const good = JSON.stringify(alice.assert(o2.json.options as RequestOptions));
    assert.equal((await op(c, csrf, { op: 'authenticate', response: good })).status, 200);
    const again = await remoteToPasskeyPage('alice');
    await op(again.c, again.csrf, { op: 'authenticate-options' });
    const replay = await op(again.c, again.csrf, { op: 'authenticate', response: good });
    assert.equal(replay.status, 401);
    // and twice within one session, racing: only one can consume the challenge
    const o3 = await op(again.c, again.csrf, { op: 'authenticate-options' });
    const answer3 = JSON.stringify(alice.assert(o3.json.options as RequestOptions));
    const both = await Promise.all([
      op(again.c, again.csrf, { op: 'authenticate', response: answer3 }),
      op(again.c, again.csrf, { op: 'authenticate', response: answer3 }),
    ]);
    assert.equal(both.filter((x) => x.status === 200).length, 1, 'one of two racing copies passes, never both');
    assert.ok(eventsOf(from, 'passkey_failed', 'alice').length >= 3);
  });

  test('a replayed assertion of a key that keeps no counter is refused: a challenge answers once', async () => {
    // many passkeys (synced ones) sign with counter 0 forever: only the challenge stops a replay
    const bobKey = new SoftAuthenticator(ORIGIN, false);
    const office = await signedInAtOffice('bob');
    assert.equal((await register(office, bobKey, 'Synced passkey')).status, 200);
    const { c, csrf } = await remoteToPasskeyPage('bob');
    const o = await op(c, csrf, { op: 'authenticate-options' });
    const answer = JSON.stringify(bobKey.assert(o.json.options as RequestOptions));
    assert.equal((await op(c, csrf, { op: 'authenticate', response: answer })).status, 200);
    // the same answer again, in the session it opened (its token read from the store)
    const s = await p.rt.sessions.lookup(c.cookie(SESSION_COOKIE));
    const from = p.events.length;
    const again = await op(c, s!.rec.csrf, { op: 'authenticate', response: answer });
    assert.equal(again.status, 401);
    assert.match(eventsOf(from, 'passkey_failed', 'bob')[0]?.reason ?? '', /no live challenge/);
    // and in a new sign-in that asked for options of its own
    const other = await remoteToPasskeyPage('bob');
    await op(other.c, other.csrf, { op: 'authenticate-options' });
    assert.equal((await op(other.c, other.csrf, { op: 'authenticate', response: answer })).status, 401);
    assert.equal((await gateFor(other.c, '/inbox/')).kind, 'step');
  });

  test('an assertion answering a challenge issued to another session is refused', async () => {
    const victim = await remoteToPasskeyPage('alice');
    const attacker = await remoteToPasskeyPage('alice');
    const ov = await op(victim.c, victim.csrf, { op: 'authenticate-options' });
    await op(attacker.c, attacker.csrf, { op: 'authenticate-options' });
    // the key signs the victim's challenge; the attacker posts it in their own session
    const signed = JSON.stringify(alice.assert(ov.json.options as RequestOptions));
    const from = p.events.length;
    const r = await op(attacker.c, attacker.csrf, { op: 'authenticate', response: signed });
    assert.equal(r.status, 401);
    assert.match(eventsOf(from, 'passkey_failed', 'alice')[0]?.reason ?? '', /challenge/i);
    assert.equal((await gateFor(attacker.c, '/inbox/')).kind, 'step');
  });

  test('a cloned authenticator (the signature counter going backwards) is refused and audited', async () => {
    const { c, csrf } = await remoteToPasskeyPage('alice');
    const o = await op(c, csrf, { op: 'authenticate-options' });
    const saved = alice.counter;
    const before = (await p.rt.stores.state.listPasskeys('alice'))[0]!.counter;
    alice.counter = 1; // the clone was copied long ago: its counter is behind the original's
    const from = p.events.length;
    const r = await op(c, csrf, { op: 'authenticate', response: JSON.stringify(alice.assert(o.json.options as RequestOptions)) });
    alice.counter = saved;
    assert.equal(r.status, 401);
    const failed = eventsOf(from, 'passkey_failed', 'alice');
    assert.equal(failed.length, 1);
    assert.match(failed[0]!.reason ?? '', /cloned/);
    assert.equal((await p.rt.stores.state.listPasskeys('alice'))[0]!.counter, before, 'the stored counter did not move back');
  });

  test('a stolen password from outside the enrol networks registers no passkey by any path', async () => {
    const from = p.events.length;
    const forged = new SoftAuthenticator(ORIGIN);
    // carol has no second factor: remotely, the password opens only the `/calendar/**` rule
    const c = p.client(HOST, REMOTE);
    const r = await c.login('carol', PW.carol, '/calendar/');
    assert.equal(r.status, 303);
    assert.equal(r.location, '/calendar/');
    // the account page (the password rule admits this session) offers no way to add one from here
    const account = await c.get('/.portcullis/account');
    const pageCsrf = hiddenField(account.body, 'csrf');
    assert.doesNotMatch(account.body, /id="passkeys-link"/);
    assert.match(account.body, /id="passkeys-elsewhere"/);
    // the manage page, the enrolment page, the code page: refused
    assert.equal((await c.get('/.portcullis/passkey?manage=1')).status, 403);
    assert.equal((await c.get('/.portcullis/enrol')).status, 403);
    assert.equal((await c.get('/.portcullis/mfa')).status, 403);
    assert.equal((await c.get('/.portcullis/passkey?rd=%2Fecp%2F')).status, 403);
    // the JSON endpoint called directly, with the session's own token (read from its cookie's session)
    const s = await p.rt.sessions.lookup(c.cookie(SESSION_COOKIE));
    const csrf = pageCsrf ?? s!.rec.csrf;
    const o = await op(c, csrf, { op: 'register-options' });
    assert.equal(o.status, 403);
    const fake: CreationOptions = { challenge: 'AAAA', rp: { id: 'example.org', name: 'x' }, user: { id: 'AAAA', name: 'carol' } };
    assert.equal((await op(c, csrf, { op: 'register', response: JSON.stringify(forged.register(fake)) })).status, 403);
    // the re-authentication form of the manage page: refused before the password is looked at
    assert.equal((await op(c, csrf, { action: 'reauth', password: PW.carol })).status, 403);
    assert.deepEqual(await p.rt.stores.state.listPasskeys('carol'), []);
    assert.ok(eventsOf(from, 'network_denied', 'carol').length >= 3, 'each refusal is audited');

    // dave has an authenticator app: his password alone (no code) is not enough from anywhere
    const d = p.client(HOST, REMOTE);
    const dr = await d.login('dave', PW.dave, '/calendar/');
    assert.equal(dr.location, '/calendar/');
    const ds = await p.rt.sessions.lookup(d.cookie(SESSION_COOKIE));
    // dave has TOTP but no passkey: a code can be relayed by a phishing proxy, so it does not
    // open the registration of the phishing-resistant factor from outside the enrol networks
    const manage = await d.get('/.portcullis/passkey?manage=1');
    assert.equal(manage.status, 403);
    assert.equal((await op(d, ds!.rec.csrf, { op: 'register-options' })).status, 403);
    assert.equal((await op(d, ds!.rec.csrf, { action: 'reauth', password: PW.dave, code: '000000' })).status, 403);
    // the password and the RIGHT code, both relayed in real time: still no registration
    p.clock.advance(30_000); // a fresh time step: the code an earlier test used is spent
    const code = generateCode(DAVE_SECRET, { time: p.clock.now(), period: 30, digits: 6, algorithm: 'SHA1' });
    const mfaPage = await d.get('/.portcullis/mfa?code=1');
    const mcsrf = hiddenField(mfaPage.body, 'csrf') ?? ds!.rec.csrf;
    await d.post('/.portcullis/mfa', { csrf: mcsrf, code });
    const relayed = await p.rt.sessions.lookup(d.cookie(SESSION_COOKIE));
    assert.deepEqual(relayed!.rec.amr, ['pwd', 'otp']);
    assert.equal((await op(d, relayed!.rec.csrf, { action: 'reauth', password: PW.dave, code })).status, 403);
    const ro = await op(d, relayed!.rec.csrf, { op: 'register-options' });
    assert.equal(ro.status, 403, 'password + relayed code open no passkey registration remotely');
    assert.deepEqual(await p.rt.stores.state.listPasskeys('dave'), []);

    // and a session carried from the office to a remote network is judged where it is now
    const moved = await signedInAtOffice('carol');
    moved.ip = REMOTE;
    const ms = await p.rt.sessions.lookup(moved.cookie(SESSION_COOKIE));
    assert.equal((await op(moved, ms!.rec.csrf, { op: 'register-options' })).status, 403);
    assert.equal((await moved.get('/.portcullis/passkey?manage=1')).status, 403);
    assert.deepEqual(await p.rt.stores.state.listPasskeys('carol'), []);
  });

  test('removing a passkey needs the password again and the passkey itself, and the last factor the office; audited', async () => {
    const { c, csrf } = await remoteToPasskeyPage('alice');
    const o = await op(c, csrf, { op: 'authenticate-options' });
    assert.equal((await op(c, csrf, { op: 'authenticate', response: JSON.stringify(alice.assert(o.json.options as RequestOptions)) })).status, 200);
    const s = await p.rt.sessions.lookup(c.cookie(SESSION_COOKIE));
    const id = alice.id;
    // the password was proved at sign-in, minutes ago at most; later it is not fresh
    p.clock.advance(6 * 60_000);
    const stale = await c.post('/.portcullis/passkey', { csrf: s!.rec.csrf, action: 'remove', id });
    assert.equal(stale.status, 303);
    assert.equal((await p.rt.stores.state.listPasskeys('alice')).length, 1, 'not removed without a fresh password');
    const page = await c.get('/.portcullis/passkey?manage=1');
    assert.match(page.body, /name="password"/);
    const re = await c.post('/.portcullis/passkey', { csrf: s!.rec.csrf, action: 'reauth', password: PW.alice });
    assert.equal(re.status, 303);
    // the factor was proved 6 minutes ago: the passkey once more
    const confirm = await c.get('/.portcullis/passkey?manage=1');
    const cc = dataCsrf(confirm.body)!;
    const o2 = await op(c, cc, { op: 'authenticate-options' });
    const a2 = await op(c, cc, { op: 'authenticate', then: 'manage', response: JSON.stringify(alice.assert(o2.json.options as RequestOptions)) });
    assert.equal(a2.json.next, '/.portcullis/passkey?manage=1');
    const manage = await c.get('/.portcullis/passkey?manage=1');
    assert.match(manage.body, /Alice laptop/);
    const from = p.events.length;
    // her only second factor: not removed from outside the enrol networks (nothing could replace it there)
    const remote = await c.post('/.portcullis/passkey', { csrf: hiddenField(manage.body, 'csrf')!, action: 'remove', id });
    assert.equal(remote.status, 403);
    assert.match(remote.body, /only second factor/);
    assert.equal((await p.rt.stores.state.listPasskeys('alice')).length, 1);
    assert.equal(eventsOf(from, 'network_denied', 'alice').length, 1);
    c.ip = OFFICE;
    const rm = await c.post('/.portcullis/passkey', { csrf: hiddenField(manage.body, 'csrf')!, action: 'remove', id });
    assert.equal(rm.location, '/.portcullis/passkey?manage=1&done=removed');
    assert.deepEqual(await p.rt.stores.state.listPasskeys('alice'), []);
    assert.equal(eventsOf(from, 'passkey_removed', 'alice').length, 1);
  });
});
