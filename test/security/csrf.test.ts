/**
 * Cross-site request forgery on the portal's forms. Every POST changes something (who is signed
 * in, which authenticator is trusted, the password, whether the session exists), so a page on
 * another site must not be able to submit one in a signed-in user's browser. Before sign-in the
 * login form carries a token that must match a cookie (double submit); after sign-in every form
 * carries the session's own token. A POST without the token, with a wrong one, with another
 * session's, or from a foreign Origin (including the opaque `null` of sandboxed frames) is
 * refused with 403 and changes nothing; the same POST done properly succeeds.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/clock.js';
import { generateCode } from '../../src/auth/totp.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { PortalClient, hiddenField, type PortalResponse } from '../helpers/portal.js';

const COOKIE = 'portcullis_dev_session';
const CSRF_COOKIE = 'portcullis_dev_csrf';
const PW = { alice: 'amber lantern orchid gravel 1987', carol: 'saffron kettle glacier pylon 3310', dave: 'walnut harbour cinder ribbon 5521' };
const DAVE_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const clock = new ManualClock(Date.UTC(2026, 0, 5, 9, 0, 0));
let gw: TestGateway;

before(async () => {
  gw = await startTestGateway(
    `
networks: { office: ["127.0.0.1/32"] }
totp: { enrol: { networks: [office] } }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "builtin:whoami"
    rules: [ { paths: ["/secure/**"], networks: [office], policy: mfa }, { networks: [office], policy: password } ]
`,
    {
      clock,
      users: [
        { name: 'alice', password: PW.alice, groups: ['staff'] },
        { name: 'carol', password: PW.carol, groups: ['staff'] },
        { name: 'dave', password: PW.dave, groups: ['staff'] },
      ],
    },
  );
  const rt = gw.gw.rt;
  await rt.stores.state.setTotp('dave', { secret: rt.box.seal(DAVE_SECRET, 'totp:dave'), enrolledAt: clock.now(), source: 'provisioned' });
});

after(async () => {
  await gw?.close();
});

const client = () => new PortalClient(gw.port, 'mail.test', { localAddress: '127.0.0.1' });
const FOREIGN = ['Origin: https://evil.example', 'Origin: null', 'Origin: http://mail.test.evil.example', 'Origin: http://evil.example/mail.test'];

function refused(r: PortalResponse, what: string): void {
  assert.equal(r.status, 403, `${what}: ${r.status} ${r.headers.location ?? ''}`);
  assert.match(r.body, /form has expired/, what);
  assert.ok(!r.setCookies.some((l) => l.startsWith(`${COOKIE}=`) && !l.startsWith(`${COOKIE}=;`)), `${what}: no session was started`);
}

function totpCode(at = clock.now()): string {
  const t = gw.gw.rt.config.totp;
  return generateCode(DAVE_SECRET, { time: at, period: t.period, digits: t.digits, algorithm: t.algorithm });
}

test('login: no token, a wrong token, a token without its cookie, or a foreign Origin are refused', async () => {
  const c = client();
  const csrf = hiddenField((await c.get('/.portcullis/login')).body, 'csrf')!;
  assert.ok(c.cookie(CSRF_COOKIE), 'the login page sets the double-submit cookie');
  assert.equal(c.cookie(CSRF_COOKIE), csrf);
  const creds = { username: 'alice', password: PW.alice };
  refused(await c.post('/.portcullis/login', creds), 'no token');
  refused(await c.post('/.portcullis/login', { ...creds, csrf: '' }), 'empty token');
  refused(await c.post('/.portcullis/login', { ...creds, csrf: csrf.slice(0, -1) + (csrf.endsWith('A') ? 'B' : 'A') }), 'wrong token');
  refused(await c.post('/.portcullis/login', { ...creds, csrf }, { cookies: false }), 'token without its cookie');
  // an attacker's own token and cookie pair cannot be combined with the victim's cookie
  const attacker = client();
  const theirs = hiddenField((await attacker.get('/.portcullis/login')).body, 'csrf')!;
  refused(await c.post('/.portcullis/login', { ...creds, csrf: theirs }), "another browser's token");
  for (const o of FOREIGN) refused(await c.post('/.portcullis/login', { ...creds, csrf }, { headers: [o] }), o);
  assert.equal((await gw.gw.rt.stores.sessions.list('alice')).length, 0, 'nobody was signed in');

  const ok = await c.post('/.portcullis/login', { ...creds, csrf }, { headers: ['Origin: http://mail.test'] });
  assert.equal(ok.status, 303, 'the same form from its own origin works');
  assert.ok(c.cookie(COOKIE));
});

test('logout: refused without the session token or cross-site, and the session lives on', async () => {
  const c = client();
  await c.login('alice', PW.alice);
  const other = client();
  await other.login('alice', PW.alice);
  const otherToken = hiddenField((await other.get('/.portcullis/logout')).body, 'csrf')!;
  const token = hiddenField((await c.get('/.portcullis/logout')).body, 'csrf')!;
  refused(await c.post('/.portcullis/logout', {}), 'no token');
  refused(await c.post('/.portcullis/logout', { csrf: 'x'.repeat(32) }), 'wrong token');
  refused(await c.post('/.portcullis/logout', { csrf: otherToken }), "another session's token");
  refused(await c.post('/.portcullis/logout', { csrf: c.cookie(CSRF_COOKIE) ?? 'none' }), 'the login token');
  for (const o of FOREIGN) refused(await c.post('/.portcullis/logout', { csrf: token }, { headers: [o] }), o);
  assert.equal((await c.get('/')).status, 200, 'still signed in');

  const ok = await c.post('/.portcullis/logout', { csrf: token });
  assert.equal(ok.status, 200);
  assert.equal((await c.get('/')).status, 401);
  assert.equal((await other.get('/')).status, 200, 'only this session ended');
});

test('second factor: a forged post does not consume the code, the real one does', async () => {
  const c = client();
  assert.equal((await c.login('dave', PW.dave, '/secure/x')).headers.location, '/.portcullis/mfa');
  const token = hiddenField((await c.get('/.portcullis/mfa')).body, 'csrf')!;
  clock.advance(90_000);
  const code = totpCode();
  refused(await c.post('/.portcullis/mfa', { code }), 'no token');
  refused(await c.post('/.portcullis/mfa', { code, csrf: token.toLowerCase() === token ? token.toUpperCase() : token.toLowerCase() }), 'wrong token');
  for (const o of FOREIGN) refused(await c.post('/.portcullis/mfa', { code, csrf: token }, { headers: [o] }), o);
  assert.equal((await c.get('/secure/x')).status, 401, 'still waiting for the code');
  const ok = await c.post('/.portcullis/mfa', { code, csrf: token });
  assert.equal(ok.status, 303, 'the code was not spent by the refused posts');
  assert.equal((await c.get('/secure/x')).status, 200);
});

test('enrolment: a forged confirmation enrols nothing', async () => {
  const c = client();
  assert.equal((await c.login('carol', PW.carol, '/secure/x')).headers.location, '/.portcullis/enrol');
  const page = await c.get('/.portcullis/enrol');
  const token = hiddenField(page.body, 'csrf')!;
  const secret = /id="secret">([A-Z2-7 ]+)</.exec(page.body)![1]!.replace(/ /g, '');
  const t = gw.gw.rt.config.totp;
  clock.advance(90_000);
  const code = generateCode(secret, { time: clock.now(), period: t.period, digits: t.digits, algorithm: t.algorithm });
  refused(await c.post('/.portcullis/enrol', { code }), 'no token');
  refused(await c.post('/.portcullis/enrol', { code, csrf: 'A'.repeat(32) }), 'wrong token');
  for (const o of FOREIGN) refused(await c.post('/.portcullis/enrol', { code, csrf: token }, { headers: [o] }), o);
  assert.equal(await gw.gw.rt.stores.state.getTotp('carol'), null);
  const ok = await c.post('/.portcullis/enrol', { code, csrf: token });
  assert.equal(ok.status, 200);
  assert.ok(await gw.gw.rt.stores.state.getTotp('carol'));
});

test('password change: a forged post changes nothing', async () => {
  const c = client();
  await c.login('alice', PW.alice);
  const token = hiddenField((await c.get('/.portcullis/password')).body, 'csrf')!;
  const change = { current: PW.alice, new: 'attacker chosen passphrase 4242', confirm: 'attacker chosen passphrase 4242' };
  refused(await c.post('/.portcullis/password', change), 'no token');
  refused(await c.post('/.portcullis/password', { ...change, csrf: token.slice(1) }), 'short token');
  for (const o of FOREIGN) refused(await c.post('/.portcullis/password', { ...change, csrf: token }, { headers: [o] }), o);
  const again = client();
  assert.equal((await again.login('alice', PW.alice)).status, 303, 'the old password still works');
  assert.equal((await client().login('alice', change.new)).status, 401, 'the attacker-chosen one does not');
});
