/**
 * Session fixation: an attacker chooses the session id the victim will sign in with.
 *
 * The attack: the attacker obtains a session id (here mallory simply signs in herself, so the id
 * is even a valid one) and plants it in the victim's browser: a cookie set from a sibling host
 * ("cookie tossing"), a shared kiosk, a script gadget on the same site. If the gateway keeps that
 * id when the victim signs in, or when the victim completes the second factor, the attacker now
 * holds an authenticated session as the victim. It is CWE-384 and OWASP ASVS 3.2.1 ("a new session
 * token on user authentication"), and the advisory authenticating proxies keep meeting:
 * lookout/ngx_borderpatrol#52 (an nginx auth gateway that kept the pre-login cookie),
 * Yeraze/meshmonitor#4672 (a proxy-auth path writing the user into the attacker's session),
 * dbeaver/cloudbeaver#4249 ("No session rotation on login").
 *
 * The safe answer: a new 256-bit id at every privilege change. Signing in with a password
 * discards whatever id the browser had (even a valid session of someone else, which ends); the
 * half-signed-in id is replaced again when the second factor is done, and the id from between
 * the steps stops working. The app then sees the victim, never the planter. (The sibling class,
 * an app behind the gateway setting the gateway's cookie, is test/security/set-cookie-filter.test.ts;
 * a session cookie sent twice is test/security/session-cookie-parsing.test.ts.)
 *
 * Moved here from test/e2e/signin.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { ManualClock } from '../../src/clock.js';
import { generateCode } from '../../src/auth/totp.js';
import { echoOf, startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway, type TestUser } from '../helpers/gateway.js';
import { PortalClient } from '../helpers/portal.js';

const OFFICE = '127.0.0.1';
const HOME = '127.0.0.2';
const PROXY = '127.0.0.3';
const COOKIE = 'portcullis_dev_session';

const PW = {
  dave: 'walnut harbour cinder ribbon 5521',
  mallory: 'marble cobalt thistle engine 1102',
} as const;

const USERS: TestUser[] = [
  { name: 'dave', password: PW.dave, groups: ['staff'] },
  { name: 'mallory', password: PW.mallory, groups: ['staff'] },
];

/** dave's hardware token (20 bytes, base32). */
const DAVE_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

const clock = new ManualClock(Date.UTC(2026, 0, 5, 9, 0, 0));
let up: Upstream;
let gw: TestGateway;

// the configuration of test/e2e/signin.test.ts, where this test came from
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
      - { networks: [office, home], policy: password }
      - { policy: deny }
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
  await rt.stores.state.setTotp('dave', { secret: rt.box.seal(DAVE_SECRET, 'totp:dave'), enrolledAt: clock.now(), source: 'provisioned' });
});

after(async () => {
  await gw?.close();
  await up?.close();
});

/** Move the clock three time steps on, so the next code is one nobody has used yet. */
function freshStep(): void {
  clock.advance(3 * gw.gw.rt.config.totp.period * 1000);
}

function codeFor(secret: string, at = clock.now()): string {
  const t = gw.gw.rt.config.totp;
  return generateCode(secret, { time: at, period: t.period, digits: t.digits, algorithm: t.algorithm });
}

function client(from: string = OFFICE, host = 'mail.test'): PortalClient {
  return new PortalClient(gw.port, host, { localAddress: from });
}

test('dave signs in with a code; a planted cookie survives neither the password nor the code', async () => {
  // mallory signs in herself and plants her (valid) session id in dave's browser
  const mallory = client(OFFICE, 'mail.test');
  assert.equal((await mallory.login('mallory', PW.mallory)).status, 303);
  const planted = mallory.cookie(COOKIE)!;
  assert.equal(echoOf(await mallory.get('/')).headers['remote-user'], 'mallory');

  const v = client(OFFICE, 'vault.test');
  v.jar.set(COOKIE, planted);
  const login = await v.login('dave', PW.dave, '/inbox');
  assert.equal(login.status, 303);
  assert.equal(login.headers.location, '/.portcullis/mfa');
  const afterPassword = v.cookie(COOKIE)!;
  assert.match(afterPassword, /^[A-Za-z0-9_-]{43}$/, '256-bit id');
  assert.notEqual(afterPassword, planted, 'the id set before sign-in is not the one after it');
  assert.equal((await mallory.get('/')).status, 401, 'the pre-login id no longer works');

  // the password alone opens nothing
  assert.equal((await v.get('/inbox')).status, 401);
  assert.equal((await v.navigate('/inbox')).headers.location, '/.portcullis/mfa');

  freshStep();
  const mfa = await v.submit('/.portcullis/mfa', { code: codeFor(DAVE_SECRET) });
  assert.equal(mfa.status, 303);
  assert.equal(mfa.headers.location, '/inbox');
  const afterCode = v.cookie(COOKIE)!;
  assert.notEqual(afterCode, afterPassword, 'the id changes again after the code');
  const stale = client(OFFICE, 'vault.test');
  stale.jar.set(COOKIE, afterPassword);
  assert.equal((await stale.get('/inbox')).status, 401, 'the id from between the steps no longer works');
  assert.equal((await stale.get('/.portcullis/mfa')).headers.location, '/.portcullis/login');

  const app = echoOf(await v.get('/inbox'));
  assert.equal(app.headers['remote-user'], 'dave');
  assert.deepEqual(decodeJwt(String(app.headers['x-portcullis-assertion']))['amr'], ['pwd', 'otp']);
});
