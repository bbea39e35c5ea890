/**
 * Sign-in admission decided on the client's network alone.
 *
 * The attack: the first landing decided whether to show the login form (and accept a password)
 * from the rule that matched `rd`, a value the client chooses. `GET /.portcullis/login?rd=/healthz`
 * (a bypass rule) served the form on a network where every other rule denies; posting it gave a
 * password oracle and a session, and with that session the reviewer changed the user's password
 * on `/.portcullis/password` (no network check there), ended the user's sessions, and had their
 * own network recorded as one of the user's familiar networks. It is the shape of oauth2-proxy's
 * and Pomerium's "allowed by a client-controlled redirect/route" advisories: a security decision
 * that reads an input the client sets. The 2017 promise it broke: from an unknown network even
 * the right password gets nowhere.
 *
 * The safe answer: some `password` or `mfa` rule of the app must be able to admit this address
 * (lockdown respected; `bypass` admits nobody to sign-in), decided from the address alone, on
 * every portal page (login, mfa, enrol, password); familiar networks are recorded only after a
 * complete, allowed sign-in.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startPortalApp, type PortalApp } from '../helpers/portal-app.js';
import { hiddenField } from '../helpers/portal.js';

const OFFICE = '192.0.2.10';
const VPN = '198.51.100.20';
const OUTSIDE = '203.0.113.9';
const COOKIE = 'portcullis_dev_session';
const PW = { alice: 'correct horse battery staple', frank: 'granite lantern meadow 58' };

let pa: PortalApp;

before(async () => {
  pa = await startPortalApp(
    `
networks: { office: ["192.0.2.0/24"], vpn: ["198.51.100.0/24"] }
totp: { enrol: { networks: [office] } }
lockdown: { networks: [office] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { paths: ["/healthz"], policy: bypass }
      - { methods: [OPTIONS], policy: bypass }
      - { networks: [office], policy: password }
      - { networks: [vpn], policy: mfa }
      - { policy: deny }
`,
    { users: [{ name: 'alice', password: PW.alice }, { name: 'frank', password: PW.frank }] },
  );
});

after(async () => pa?.close());

beforeEach(async () => {
  pa.rt.lockdown = { on: false, since: 0, by: '' };
  await pa.rt.stores.sessions.deleteAll();
  pa.clock.advance(60 * 60_000); // lets any throttle block of an earlier test lapse
  pa.events.length = 0;
});

/** A login POST with a double-submit CSRF pair the attacker made up (no GET needed). */
function forgedLogin(ip: string, user: string, password: string, rd: string) {
  const c = pa.client('mail.test', ip);
  const token = 'A'.repeat(32);
  c.jar.set('portcullis_dev_csrf', token);
  return { c, r: c.post('/.portcullis/login', { csrf: token, username: user, password, rd }) };
}

describe('the login form and the password are refused where no sign-in rule admits the client', () => {
  for (const rd of ['/healthz', '/', '/inbox']) {
    it(`GET /.portcullis/login?rd=${rd} from outside: 403`, async () => {
      const r = await pa.client('mail.test', OUTSIDE).get(`/.portcullis/login?rd=${encodeURIComponent(rd)}`);
      assert.equal(r.status, 403);
      assert.doesNotMatch(r.body, /name="password"/);
    });
  }

  it('a forged POST with the right password and rd=/healthz: 403, no session, no password check', async () => {
    const { c, r } = forgedLogin(OUTSIDE, 'alice', PW.alice, '/healthz');
    const res = await r;
    assert.equal(res.status, 403);
    assert.equal(c.cookie(COOKIE), undefined);
    assert.ok(pa.events.some((e) => e.event === 'network_denied' && e.user === 'alice'));
    assert.ok(!pa.events.some((e) => e.event === 'login_failed' || e.event === 'login_succeeded'), 'refused before the password was looked at');
  });

  it('the same forged POST with a wrong password answers the same: no oracle', async () => {
    const right = await forgedLogin(OUTSIDE, 'alice', PW.alice, '/healthz').r;
    const wrong = await forgedLogin(OUTSIDE, 'alice', 'nope', '/healthz').r;
    assert.equal(right.status, wrong.status);
    assert.equal(right.body, wrong.body);
  });
});

describe('every portal page checks the network, not only the login form', () => {
  async function officeSession() {
    const c = pa.client('mail.test', OFFICE);
    const r = await c.login('alice', PW.alice, '/');
    assert.equal(r.status, 303);
    assert.equal(r.location, '/');
    return c;
  }

  it('a session carried outside cannot change the password', async () => {
    const c = await officeSession();
    const page = await c.get('/.portcullis/password');
    assert.equal(page.status, 200);
    const csrf = hiddenField(page.body, 'csrf')!;
    c.ip = OUTSIDE;
    assert.equal((await c.get('/.portcullis/password')).status, 403);
    const r = await c.post('/.portcullis/password', { csrf, current: PW.alice, new: 'a brand new passphrase 9', confirm: 'a brand new passphrase 9' });
    assert.equal(r.status, 403);
    assert.equal((await pa.client('mail.test', OFFICE).login('alice', PW.alice)).status, 303, 'the password is unchanged');
    assert.ok(!pa.events.some((e) => e.event === 'session_revoked'), "the user's sessions were not ended");
  });

  for (const page of ['/.portcullis/mfa', '/.portcullis/enrol', '/.portcullis/password']) {
    it(`GET ${page} with a session, from outside: 403`, async () => {
      const c = await officeSession();
      c.ip = OUTSIDE;
      assert.equal((await c.get(page)).status, 403);
    });
  }

  it("an outsider's network is never recorded as familiar", async () => {
    await forgedLogin(OUTSIDE, 'alice', PW.alice, '/healthz').r;
    const c = await officeSession();
    c.ip = OUTSIDE;
    await c.get('/.portcullis/password');
    const known = await pa.rt.stores.state.knownNetworks('alice');
    assert.ok(!known.includes('203.0.113.0/24'), `known: ${known.join(', ')}`);
  });

  it('a sign-in that cannot complete from here records nothing (frank: vpn needs a second factor he cannot enrol there)', async () => {
    const c = pa.client('mail.test', VPN);
    const r = await c.login('frank', PW.frank, '/');
    assert.equal(r.status, 401);
    assert.deepEqual(await pa.rt.stores.state.knownNetworks('frank'), []);
  });
});

describe('a deny rule whose pattern covers every path is unconditional', () => {
  it('no login form, no session, no oracle for a network denied by paths: ["/**"]', async () => {
    const guest = await startPortalApp(
      `
networks: { guest: ["10.9.1.0/24"] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { networks: [guest], paths: ["/**"], policy: deny }
      - { networks: [guest], paths: ["^/"], policy: deny }
      - { policy: password }
`,
      { users: [{ name: 'alice', password: PW.alice }] },
    );
    try {
      assert.equal((await guest.client('mail.test', '10.9.1.5').get('/.portcullis/login')).status, 403);
      assert.equal((await guest.client('mail.test', '10.9.2.5').get('/.portcullis/login')).status, 200, 'elsewhere it is served');
    } finally {
      await guest.close();
    }
  });
});

describe('lockdown closes sign-in to everyone outside lockdown.networks', () => {
  it('from the vpn: the form and a forged POST are refused; from the office: signed in', async () => {
    pa.rt.lockdown = { on: true, since: pa.clock.now(), by: 'test' };
    assert.equal((await pa.client('mail.test', VPN).get('/.portcullis/login')).status, 403);
    const { c, r } = forgedLogin(VPN, 'alice', PW.alice, '/');
    assert.equal((await r).status, 403);
    assert.equal(c.cookie(COOKIE), undefined, 'no session during lockdown');
    const office = pa.client('mail.test', OFFICE);
    assert.equal((await office.login('alice', PW.alice, '/')).status, 303);
  });
});
