/**
 * The portal through `buildApp(rt).inject()`: sign-in asks for the factor the policy needs,
 * steps up when a later request meets an `mfa` rule, and users enrol, replace and remove their
 * own authenticator from the networks the admin allows. A fixed clock; no sockets.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gate } from '../../src/access/gate.js';
import { generateCode } from '../../src/auth/totp.js';
import { startPortalApp, type InjectClient, type PortalApp } from '../helpers/portal-app.js';
import { decodeEntities, hiddenField } from '../helpers/portal.js';

const OFFICE = '192.0.2.10';
const VPN = '198.51.100.20';
const PROXY = '127.0.0.1';
const COOKIE = 'portcullis_dev_session';
const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const PW = { alice: 'correct horse battery staple', dave: 'amber quarry lantern 64', erin: 'silver orchard kettle 19' };

function config(extra = ''): string {
  return `
networks: { office: ["192.0.2.0/24"], vpn: ["198.51.100.0/24"] }
trusted_proxies: ["127.0.0.1/32"]
totp: { issuer: "Test Mail", enrol: { networks: [office], prompt: true } ${extra} }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { paths: ["/admin/**"], policy: mfa }
      - { networks: [office], policy: password }
      - { networks: [vpn], policy: mfa }
      - { policy: deny }
`;
}

let pa: PortalApp;
const USERS = [
  { name: 'alice', password: PW.alice, email: 'alice@example.org' },
  { name: 'dave', password: PW.dave },
  { name: 'erin', password: PW.erin },
];

before(async () => {
  pa = await startPortalApp(config(), { users: USERS });
});
after(async () => pa?.close());

beforeEach(async () => {
  pa.clock.advance(60 * 60_000);
  pa.events.length = 0;
  await pa.rt.stores.sessions.deleteAll();
});

const code = (secret: string) => {
  const t = pa.rt.config.totp;
  return generateCode(secret, { time: pa.clock.now(), period: t.period, digits: t.digits, algorithm: t.algorithm });
};
const nextStep = () => pa.clock.advance(30_000);

async function provision(user: string) {
  await pa.rt.stores.state.setTotp(user, { secret: pa.rt.box.seal(SECRET, `totp:${user}`), enrolledAt: pa.clock.now(), source: 'provisioned' });
}

function gateFor(c: InjectClient, target: string) {
  return gate(pa.rt, pa.rt.config, { method: 'GET', target, host: 'mail.test', ip: c.ip, proto: 'http', sessionId: c.cookie(COOKIE), authorization: undefined });
}

describe('`password` is one factor; an `mfa` rule steps up', () => {
  it('an enrolled user signs in from the office with the password alone, then is asked for a code once at an mfa path', async () => {
    await provision('dave');
    const c = pa.client('mail.test', OFFICE);
    const r = await c.login('dave', PW.dave, '/inbox');
    assert.equal(r.status, 303);
    assert.equal(r.location, '/inbox', 'no code asked for a password rule');
    assert.equal((await gateFor(c, '/inbox')).kind, 'proxy');

    const up = await gateFor(c, '/admin/users');
    assert.equal(up.kind, 'step');
    assert.equal(up.kind === 'step' && up.location, '/.portcullis/mfa?rd=%2Fadmin%2Fusers');
    nextStep();
    const m = await c.submit('/.portcullis/mfa?rd=%2Fadmin%2Fusers', { code: code(SECRET) });
    assert.equal(m.status, 303);
    assert.equal(m.location, '/admin/users');
    const done = await gateFor(c, '/admin/users');
    assert.equal(done.kind, 'proxy');
    assert.deepEqual(done.kind === 'proxy' && done.identity?.amr, ['pwd', 'otp']);
    assert.equal((await gateFor(c, '/inbox')).kind, 'proxy', 'and asked only once');
    await pa.rt.stores.state.setTotp('dave', null);
  });

  it('with rd at an mfa path the code is asked at once', async () => {
    await provision('dave');
    const c = pa.client('mail.test', OFFICE);
    assert.equal((await c.login('dave', PW.dave, '/admin/x')).location, '/.portcullis/mfa');
    await pa.rt.stores.state.setTotp('dave', null);
  });

  it('totp.always asks an enrolled user for a code at every sign-in', async () => {
    const always = await startPortalApp(config(', always: true'), { users: USERS });
    try {
      await always.rt.stores.state.setTotp('dave', { secret: always.rt.box.seal(SECRET, 'totp:dave'), enrolledAt: 0, source: 'provisioned' });
      const r = await always.client('mail.test', OFFICE).login('dave', PW.dave, '/inbox');
      assert.equal(r.location, '/.portcullis/mfa');
    } finally {
      await always.close();
    }
  });
});

describe('self-service enrolment', () => {
  it('a user with no authenticator enrols from the office through the account page, then signs in from the vpn with it', async () => {
    const c = pa.client('mail.test', OFFICE);
    const r = await c.login('erin', PW.erin, '/inbox');
    assert.equal(r.location, '/.portcullis/enrol?offer=1', 'totp.enrol.prompt offers it after sign-in');
    const offer = await c.get('/.portcullis/enrol?offer=1');
    assert.match(offer.body, /id="enrol-skip"/);

    pa.clock.advance(10 * 60_000); // the password proof of the sign-in is now stale
    const account = await c.get('/.portcullis/account');
    assert.equal(account.status, 200);
    assert.match(account.body, /Authenticator app: not set up/);
    assert.match(account.body, /id="enrol-link"/);

    const ask = await c.get('/.portcullis/enrol');
    assert.match(ask.body, /name="action" value="reauth"/, 'the password is asked again first');
    const wrong = await c.post('/.portcullis/enrol', { csrf: hiddenField(ask.body, 'csrf')!, action: 'reauth', password: 'nope' });
    assert.equal(wrong.status, 401);
    const ok = await c.post('/.portcullis/enrol', { csrf: hiddenField(ask.body, 'csrf')!, action: 'reauth', password: PW.erin });
    assert.equal(ok.status, 303);
    const page = await c.get('/.portcullis/enrol');
    const secret = /id="secret">([A-Z2-7 ]+)</.exec(page.body)![1]!.replace(/ /g, '');
    nextStep();
    const done = await c.post('/.portcullis/enrol', { csrf: hiddenField(page.body, 'csrf')!, code: code(secret) });
    assert.equal(done.status, 200);
    assert.match(done.body, /id="recovery-codes"/);
    assert.match(decodeEntities(done.body), /download="recovery-codes.txt"/, 'offered as a download too');
    assert.ok(pa.events.some((e) => e.event === 'totp_enrolled' && e.user === 'erin'));

    const remote = pa.client('mail.test', VPN);
    assert.equal((await remote.login('erin', PW.erin, '/inbox')).location, '/.portcullis/mfa');
    nextStep();
    const m = await remote.submit('/.portcullis/mfa', { code: code(secret) });
    assert.equal(m.status, 303);
    assert.equal(m.location, '/inbox');
  });

  it('replacing or removing an authenticator needs the password and the authenticator, and is audited', async () => {
    await provision('alice');
    const c = pa.client('mail.test', OFFICE);
    // a password-only sign-in (the office rule is `password`): not enough to touch the authenticator
    assert.equal((await c.login('alice', PW.alice, '/')).location, '/');
    const ask = await c.get('/.portcullis/enrol');
    assert.doesNotMatch(ask.body, /id="remove-totp"/);
    assert.match(ask.body, /name="code"/, 'a code is asked besides the password');
    const csrf = hiddenField(ask.body, 'csrf')!;
    assert.equal((await c.post('/.portcullis/enrol', { csrf, action: 'remove' })).status, 303, 'remove without the factor: back to the form');
    assert.ok(await pa.rt.stores.state.getTotp('alice'), 'still there');
    const noCode = await c.post('/.portcullis/enrol', { csrf, action: 'reauth', password: PW.alice, code: '000000' });
    assert.equal(noCode.status, 401);
    nextStep();
    const ok = await c.post('/.portcullis/enrol', { csrf, action: 'reauth', password: PW.alice, code: code(SECRET) });
    assert.equal(ok.status, 303);
    const page = await c.get('/.portcullis/enrol');
    assert.match(page.body, /id="remove-totp"/);
    const rm = await c.post('/.portcullis/enrol', { csrf: hiddenField(page.body, 'csrf')!, action: 'remove' });
    assert.equal(rm.status, 303);
    assert.equal(await pa.rt.stores.state.getTotp('alice'), null);
    assert.ok(pa.events.some((e) => e.event === 'totp_removed' && e.user === 'alice'));
  });

  it('a stolen password-only cookie cannot enrol through the step-up page without the password', async () => {
    const c = pa.client('mail.test', OFFICE);
    await c.login('dave', PW.dave, '/');
    pa.clock.advance(10 * 60_000); // the thief uses the cookie later
    const up = await c.get('/.portcullis/mfa?rd=%2Fadmin%2Fx');
    assert.equal(up.location, '/.portcullis/enrol');
    const page = await c.get('/.portcullis/enrol');
    assert.match(page.body, /name="action" value="reauth"/, 'the password is asked, no QR code shown');
    assert.doesNotMatch(page.body, /id="secret"/);
  });

  it('from outside enrol networks it is refused on every path, whatever the session', async () => {
    await provision('alice');
    const c = pa.client('mail.test', VPN);
    assert.equal((await c.login('alice', PW.alice, '/')).location, '/.portcullis/mfa');
    nextStep();
    assert.equal((await c.submit('/.portcullis/mfa', { code: code(SECRET) })).status, 303);
    const account = await c.get('/.portcullis/account');
    assert.match(account.body, /id="enrol-elsewhere"/);
    assert.equal((await c.get('/.portcullis/enrol')).status, 403);
    const csrf = hiddenField(account.body, 'csrf')!;
    const forms: Array<Record<string, string>> = [{ action: 'reauth', password: PW.alice }, { action: 'remove' }, { code: '123456' }];
    for (const form of forms) {
      const r = await c.post('/.portcullis/enrol', { csrf, ...form });
      assert.equal(r.status, 403, JSON.stringify(form));
    }
    assert.ok(await pa.rt.stores.state.getTotp('alice'), 'nothing was removed');
  });
});

describe('account pages need the factors the network asks for', () => {
  it('a password-only session taken to an mfa-only network is stepped up before the account page', async () => {
    await provision('dave');
    const c = pa.client('mail.test', OFFICE);
    await c.login('dave', PW.dave, '/');
    c.ip = VPN;
    const r = await c.get('/.portcullis/account');
    assert.equal(r.status, 303);
    assert.equal(r.location, '/.portcullis/mfa?rd=%2F.portcullis%2Faccount');
    assert.equal((await c.get('/.portcullis/password')).status, 303);
    await pa.rt.stores.state.setTotp('dave', null);
  });
});

describe('the second-factor pages', () => {
  it('the code field pattern is valid under the v flag, and recovery codes have their own form', async () => {
    await provision('dave');
    const c = pa.client('mail.test', VPN);
    await c.login('dave', PW.dave, '/');
    const page = await c.get('/.portcullis/mfa');
    const pattern = decodeEntities(/pattern="([^"]+)"/.exec(page.body)![1]!);
    assert.doesNotThrow(() => new RegExp(`^(?:${pattern})$`, 'v'));
    assert.match(page.body, /inputmode="numeric"/);
    const rec = await c.get('/.portcullis/mfa?recovery=1');
    assert.doesNotMatch(rec.body, /inputmode="numeric"/);
    const rp = decodeEntities(/pattern="([^"]+)"/.exec(rec.body)![1]!);
    assert.ok(new RegExp(`^(?:${rp})$`, 'v').test('abcd-efgh-2345'));
    await pa.rt.stores.state.setTotp('dave', null);
  });
});

describe('forms behind a proxy on a non-default port', () => {
  it('the Origin is compared with the external origin the trusted proxy reports', async () => {
    const c = pa.client('mail.test', PROXY);
    c.extraHeaders['x-forwarded-for'] = OFFICE;
    c.extraHeaders['x-forwarded-port'] = '8443';
    c.extraHeaders['x-forwarded-proto'] = 'https';
    const page = await c.get('/.portcullis/login');
    const csrf = hiddenField(page.body, 'csrf')!;
    const ok = await c.post('/.portcullis/login', { csrf, username: 'alice', password: PW.alice }, { origin: 'https://mail.test:8443' });
    assert.equal(ok.status, 303);
  });

  it('a genuine cross-origin POST is refused, audited with its reason, and the page says what to do', async () => {
    const c = pa.client('mail.test', OFFICE);
    const page = await c.get('/.portcullis/login');
    const csrf = hiddenField(page.body, 'csrf')!;
    const r = await c.post('/.portcullis/login', { csrf, username: 'alice', password: PW.alice }, { origin: 'https://evil.example' });
    assert.equal(r.status, 403);
    assert.match(r.body, /href="\/.portcullis\/login"/);
    const e = pa.events.find((x) => x.event === 'csrf_refused');
    assert.ok(e);
    assert.match(e.reason ?? '', /evil\.example/);
    assert.equal(c.cookie(COOKIE), undefined);
  });
});

describe('sign out everywhere', () => {
  it("ends every session of the user from the account page", async () => {
    const a = pa.client('mail.test', OFFICE);
    const b = pa.client('mail.test', OFFICE);
    await a.login('alice', PW.alice, '/');
    await b.login('alice', PW.alice, '/');
    await pa.rt.stores.state.setTotp('alice', null);
    const account = await a.get('/.portcullis/account');
    const r = await a.post('/.portcullis/logout', { csrf: hiddenField(account.body, 'csrf')!, everywhere: '1' });
    assert.equal(r.status, 200);
    assert.equal((await pa.rt.stores.sessions.list('alice')).length, 0);
  });
});
