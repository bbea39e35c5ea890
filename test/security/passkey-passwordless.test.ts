/**
 * Passwordless sign-in with a passkey alone (issue 13), against an attacker. A software
 * authenticator stands in for the browser and the key, so the test can lie where a browser never
 * would (no user verification, a non-discoverable credential, another origin, a replay, another
 * pre-session's challenge). Config: `passwordless: true`; `/ecp/**` needs a passkey (so from
 * anywhere but the lab a `passkey` rule could admit the client); the lab network is `mfa` for
 * every path (an unconditional rule before the passkey one: no passkey rule ever applies there);
 * the office a password; elsewhere `mfa`.
 *
 * - From an admitted network the login page offers "Sign in with a passkey"; the options name no
 *   credential and ask for user verification; the answer opens the `passkey` rule with amr hwk.
 * - Choice: a user-verified passkey alone is two factors (NIST 800-63B), so ["hwk"] meets
 *   `password`, `mfa` and `passkey` rules alike (no step-up to the password).
 * - Refused with the one generic answer: passwordless off, a network no passkey rule admits,
 *   lockdown, a disabled user, the UV flag off, a non-discoverable credential, a replayed
 *   assertion, another pre-session's challenge, a wrong origin, an unknown credential.
 * - Parallel answers for one account are throttled like passwords (in-flight cap, then lockout).
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { gate } from '../../src/access/gate.js';
import { editUsersFile, setDisabled } from '../../src/auth/users.js';
import { startPortalApp, type InjectClient, type PortalApp } from '../helpers/portal-app.js';
import { SoftAuthenticator, type CreationOptions, type RequestOptions } from '../helpers/soft-authenticator.js';

const HOST = 'mail.example.org';
const ORIGIN = `https://${HOST}`;
const OFFICE = '10.1.2.3';
const LAB = '10.9.0.7';
const REMOTE = '203.0.113.9';
const PW = {
  alice: 'amber lantern orchid gravel 1987',
  bob: 'silver quarry kettle meadow 42',
  carol: 'copper harbour violet thistle 7',
  dave: 'winter cobalt saddle pepper 19',
};
const SESSION_COOKIE = 'portcullis_dev_session';
const PRE_COOKIE = 'portcullis_dev_pk';

const config = (passwordless: boolean) => `
networks: { office: ["10.1.0.0/16"], lab: ["10.9.0.0/16"] }
enrol: { networks: [office] }
webauthn: { rp_id: example.org, rp_name: "Example Mail", origins: ["${ORIGIN}"], passwordless: ${passwordless} }
apps:
  - name: mail
    hosts: ["${HOST}"]
    upstream: "builtin:whoami"
    rules:
      - { networks: [lab], policy: mfa }
      - { paths: ["/ecp/**"], policy: passkey }
      - { networks: [office], policy: password }
      - { policy: mfa }
`;

let p: PortalApp;

before(async () => {
  p = await startPortalApp(config(true), { users: Object.entries(PW).map(([name, password]) => ({ name, password })) });
});

after(async () => {
  await p?.close();
});

const dataCsrf = (body: string) => /data-csrf="([^"]+)"/.exec(body)?.[1] ?? null;
const eventsOf = (from: number, event: string) => p.events.slice(from).filter((e) => e.event === event);

async function op(c: InjectClient, csrf: string, fields: Record<string, string>): Promise<{ status: number; json: Record<string, unknown>; headers: Record<string, unknown> }> {
  const r = await c.post('/.portcullis/passkey', { csrf, ...fields });
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(r.body) as Record<string, unknown>;
  } catch {
    json = { html: r.body };
  }
  return { status: r.status, json, headers: r.headers };
}

/** Register `auth` for `user` at the office (password, then the manage page). */
async function registerAtOffice(user: keyof typeof PW, auth: SoftAuthenticator): Promise<void> {
  const c = p.client(HOST, OFFICE);
  assert.equal((await c.login(user, PW[user])).status, 303);
  const page = await c.get('/.portcullis/passkey?manage=1');
  const csrf = dataCsrf(page.body)!;
  const o = await op(c, csrf, { op: 'register-options' });
  assert.equal(o.status, 200);
  const opts = o.json.options as CreationOptions & { authenticatorSelection?: { residentKey?: string } };
  assert.equal(opts.authenticatorSelection?.residentKey, 'required', 'with passwordless on, registration asks for a discoverable credential');
  const r = await op(c, csrf, { op: 'register', name: 'Key', response: JSON.stringify(auth.register(opts)) });
  assert.equal(r.status, 200, JSON.stringify(r.json));
}

/** The login page from `ip`, and the passwordless options (a fresh pre-session). */
async function passwordlessStart(c: InjectClient, rd?: string): Promise<{ csrf: string; options: RequestOptions & { userVerification?: string; allowCredentials?: unknown[] } }> {
  const page = await c.get(`/.portcullis/login${rd ? `?rd=${encodeURIComponent(rd)}` : ''}`);
  assert.equal(page.status, 200);
  assert.match(page.body, /data-mode="passwordless"/, 'the login page offers the passkey');
  assert.match(String(page.headers['content-security-policy']), /script-src 'sha256-/);
  const csrf = dataCsrf(page.body)!;
  const o = await op(c, csrf, { op: 'passwordless-options' });
  assert.equal(o.status, 200, JSON.stringify(o.json));
  assert.ok(c.cookie(PRE_COOKIE), 'a pre-session cookie');
  return { csrf, options: o.json.options as RequestOptions & { userVerification?: string; allowCredentials?: unknown[] } };
}

async function gateFor(c: InjectClient, target: string) {
  return gate(p.rt, p.rt.config, { method: 'GET', target, host: HOST, ip: c.ip, proto: 'http', sessionId: c.cookie(SESSION_COOKIE), authorization: undefined });
}

const alice = new SoftAuthenticator(ORIGIN);
/** Keeps no counter (as synced passkeys): only the single-use claim stops a replay. */
const bob = new SoftAuthenticator(ORIGIN, false);
const carol = new SoftAuthenticator(ORIGIN);
const dave = new SoftAuthenticator(ORIGIN);

describe('passwordless passkey sign-in', () => {
  before(async () => {
    await registerAtOffice('alice', alice);
    await registerAtOffice('bob', bob);
    await registerAtOffice('carol', carol);
    await registerAtOffice('dave', dave);
  });

  test('from a network a passkey rule admits, a passkey alone opens the passkey rule with amr hwk', async () => {
    const c = p.client(HOST, REMOTE);
    const { csrf, options } = await passwordlessStart(c, '/ecp/');
    assert.equal(options.userVerification, 'required');
    assert.deepEqual(options.allowCredentials ?? [], [], 'no credential named: the authenticator offers its resident passkeys');
    const from = p.events.length;
    const r = await op(c, csrf, { op: 'passwordless', then: '/ecp/', response: JSON.stringify(alice.assert(options, 'example.org')) });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.next, '/ecp/');
    assert.equal(c.cookie(PRE_COOKIE), undefined, 'the pre-session is spent');
    const s = await p.rt.sessions.lookup(c.cookie(SESSION_COOKIE));
    assert.deepEqual(s?.rec.amr, ['hwk']);
    assert.equal(s?.rec.pending, 'none');
    const g = await gateFor(c, '/ecp/');
    assert.equal(g.kind, 'proxy');
    assert.deepEqual(g.kind === 'proxy' ? g.identity?.amr : null, ['hwk']);
    assert.equal(eventsOf(from, 'login_succeeded').length, 1);
    assert.equal(eventsOf(from, 'session_started').at(-1)?.outcome, 'success');
    assert.ok((await p.rt.stores.state.knownNetworks('alice')).includes('203.0.113.0/24'), 'the network is recorded as for any sign-in');
  });

  test('choice: a user-verified passkey alone also meets mfa rules (no step-up to the password)', async () => {
    const c = p.client(HOST, REMOTE);
    const { csrf, options } = await passwordlessStart(c);
    const r = await op(c, csrf, { op: 'passwordless', response: JSON.stringify(alice.assert(options, 'example.org')) });
    assert.equal(r.status, 200);
    const g = await gateFor(c, '/inbox/');
    assert.equal(g.kind, 'proxy');
    assert.deepEqual(g.kind === 'proxy' ? g.identity?.amr : null, ['hwk']);
  });

  test('a network no passkey rule admits is offered no passkey and refused at the endpoint', async () => {
    const c = p.client(HOST, LAB);
    const page = await c.get('/.portcullis/login');
    assert.equal(page.status, 200, 'the lab may sign in (mfa) ...');
    assert.doesNotMatch(page.body, /passwordless/, '... but not with a passkey alone');
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)![1]!;
    const o = await op(c, csrf, { op: 'passwordless-options' });
    assert.equal(o.status, 403);
    // an answer made elsewhere and carried into the lab
    const r = p.client(HOST, REMOTE);
    const st = await passwordlessStart(r);
    c.jar.set(PRE_COOKIE, r.cookie(PRE_COOKIE)!);
    const a = await op(c, csrf, { op: 'passwordless', response: JSON.stringify(alice.assert(st.options, 'example.org')) });
    assert.equal(a.status, 403);
    assert.equal(c.cookie(SESSION_COOKIE), undefined);
  });

  test('lockdown refuses it (the remote network is not in lockdown.networks)', async () => {
    const c = p.client(HOST, REMOTE);
    const { csrf, options } = await passwordlessStart(c);
    p.rt.lockdown = { on: true, since: p.clock.now(), by: 'test' };
    try {
      const r = await op(c, csrf, { op: 'passwordless', response: JSON.stringify(alice.assert(options, 'example.org')) });
      assert.equal(r.status, 403);
      assert.equal(c.cookie(SESSION_COOKIE), undefined);
    } finally {
      p.rt.lockdown = { on: false, since: 0, by: '' };
    }
  });

  /** One refused answer: 401 with the generic message, no session, a passkey_failed with `reason`. */
  async function refused(c: InjectClient, csrf: string, response: unknown, reason: RegExp) {
    const from = p.events.length;
    const r = await op(c, csrf, { op: 'passwordless', response: JSON.stringify(response) });
    assert.equal(r.status, 401, JSON.stringify(r.json));
    assert.equal(r.json.error, 'That passkey was not accepted.');
    assert.equal(c.cookie(SESSION_COOKIE), undefined, 'no session');
    const ev = eventsOf(from, 'passkey_failed');
    assert.equal(ev.length, 1);
    assert.match(String(ev[0]!.reason), reason);
  }

  test('a disabled user is refused with the generic answer', async () => {
    await editUsersFile(p.usersFile, (doc) => setDisabled(doc, 'carol', true));
    await p.rt.reloadUsers();
    try {
      const c = p.client(HOST, REMOTE);
      const { csrf, options } = await passwordlessStart(c);
      await refused(c, csrf, carol.assert(options, 'example.org'), /user disabled/);
    } finally {
      await editUsersFile(p.usersFile, (doc) => setDisabled(doc, 'carol', false));
      await p.rt.reloadUsers();
    }
  });

  test('without user verification (UV flag off) it is refused', async () => {
    const c = p.client(HOST, REMOTE);
    const { csrf, options } = await passwordlessStart(c);
    carol.uv = false;
    try {
      await refused(c, csrf, carol.assert(options, 'example.org'), /user verification/i);
    } finally {
      carol.uv = true;
    }
  });

  test('a non-discoverable credential (no user handle) is refused', async () => {
    const c = p.client(HOST, REMOTE);
    const { csrf, options } = await passwordlessStart(c);
    carol.discoverable = false;
    try {
      await refused(c, csrf, carol.assert(options, 'example.org'), /not a discoverable credential/);
    } finally {
      carol.discoverable = true;
    }
  });

  test('a replayed assertion is refused (the challenge is single-use), even with the pre-session cookie put back', async () => {
    const c = p.client(HOST, REMOTE);
    const { csrf, options } = await passwordlessStart(c);
    const pre = c.cookie(PRE_COOKIE)!;
    const answer = bob.assert(options, 'example.org');
    const ok = await op(c, csrf, { op: 'passwordless', response: JSON.stringify(answer) });
    assert.equal(ok.status, 200);
    const thief = p.client(HOST, REMOTE);
    const page = await thief.get('/.portcullis/login');
    const tcsrf = dataCsrf(page.body)!;
    thief.jar.set(PRE_COOKIE, pre);
    await refused(thief, tcsrf, answer, /already used/);
  });

  test('an answer to a challenge issued to another pre-session is refused', async () => {
    const victim = p.client(HOST, REMOTE);
    const v = await passwordlessStart(victim);
    const attacker = p.client(HOST, REMOTE);
    const a = await passwordlessStart(attacker);
    // the attacker relays the victim's challenge to the victim's authenticator, answers with it
    await refused(attacker, a.csrf, bob.assert(v.options, 'example.org'), /another pre-session/);
  });

  test('an answer made for another origin is refused', async () => {
    const c = p.client(HOST, REMOTE);
    const { csrf, options } = await passwordlessStart(c);
    bob.origin = 'https://mail.example.org.evil.test';
    try {
      await refused(c, csrf, bob.assert(options, 'example.org'), /origin/i);
    } finally {
      bob.origin = ORIGIN;
    }
  });

  test('an unknown credential is refused the same way', async () => {
    const c = p.client(HOST, REMOTE);
    const { csrf, options } = await passwordlessStart(c);
    await refused(c, csrf, new SoftAuthenticator(ORIGIN).assert(options, 'example.org'), /unknown credential/);
  });

  test('parallel answers for one account are throttled like passwords', async () => {
    const c = p.client(HOST, REMOTE);
    const page = await c.get('/.portcullis/login');
    const csrf = dataCsrf(page.body)!;
    // forged answers naming dave's credential: every one reserved before it is checked
    const forged = (i: number) => ({ id: dave.id, rawId: dave.id, type: 'public-key', response: { clientDataJSON: Buffer.from(`{"n":${i}}`).toString('base64url'), authenticatorData: 'AA', signature: 'AA' } });
    const burst = await Promise.all(Array.from({ length: 8 }, (_, i) => op(c, csrf, { op: 'passwordless', response: JSON.stringify(forged(i)) })));
    const statuses = burst.map((r) => r.status);
    assert.ok(statuses.includes(429), `some are refused while others are in flight: ${statuses.join(',')}`);
    assert.ok(statuses.every((s) => s === 401 || s === 429), statuses.join(','));
    // then, sequentially, until dave's account is locked for unfamiliar networks
    let last = 0;
    for (let i = 100; i < 110 && last !== 429; i++) last = (await op(c, csrf, { op: 'passwordless', response: JSON.stringify(forged(i)) })).status;
    assert.equal(last, 429, 'the per-user limit locks the account');
    assert.ok(p.events.some((e) => e.event === 'locked_out' && e.user === 'dave'), 'dave is locked out (unfamiliar networks)');
    // now even dave's real passkey waits, from another unfamiliar network too: the lockout is
    // the account's (for unfamiliar networks), not only the source's
    const other = p.client(HOST, '198.51.100.7');
    const { csrf: c2, options } = await passwordlessStart(other);
    const r = await op(other, c2, { op: 'passwordless', response: JSON.stringify(dave.assert(options, 'example.org')) });
    assert.equal(r.status, 429);
    assert.ok(r.headers['retry-after']);
  });
});

describe('passwordless off', () => {
  test('no passkey on the login page, the endpoint refuses, and passkeys still work after the password', async () => {
    const q = await startPortalApp(config(false), { users: [{ name: 'alice', password: PW.alice }] });
    try {
      const c = q.client(HOST, REMOTE);
      const page = await c.get('/.portcullis/login');
      assert.equal(page.status, 200);
      assert.doesNotMatch(page.body, /passwordless/);
      const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)![1]!;
      const r = await c.post('/.portcullis/passkey', { csrf, op: 'passwordless-options' });
      assert.equal(r.status, 404);
      const a = await c.post('/.portcullis/passkey', { csrf, op: 'passwordless', response: '{}' });
      assert.equal(a.status, 404);
      assert.equal(c.cookie(SESSION_COOKIE), undefined);
    } finally {
      await q.close();
    }
  });
});
