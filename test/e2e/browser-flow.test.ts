/**
 * What a person sees, in a real headless Chromium with JavaScript switched off (the portal must
 * not need it): opening the app sends them to the sign-in form; after the password they are asked
 * to set up an authenticator, with a QR code and the key spelled out (we read the key from the
 * page and compute the code as their phone would, at the real time); then their recovery codes;
 * then the app, which shows who they are. Signing out ends it: the app sends them back to the
 * sign-in form. Signing in again asks for a code from the authenticator.
 *
 * The page's own stylesheet must be applied under the strict CSP (its hash is in the policy), and
 * every input is reachable through its label.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { generateCode } from '../../src/auth/totp.js';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

const skip = chromiumSkip();
const PASSWORD = 'amber lantern orchid gravel 1987';
let gw: TestGateway;

before(async () => {
  if (skip) return;
  // the system clock: the code is computed as a phone would, from the real time
  gw = await startTestGateway(
    `
networks: { office: ["127.0.0.1/32"] }
totp: { issuer: "Example Mail", enrol: { networks: [office] } }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "builtin:whoami"
    rules:
      - { networks: [office], policy: mfa }
      - { policy: deny }
`,
    { users: [{ name: 'alice', password: PASSWORD, groups: ['staff'], email: 'alice@example.org' }] },
  );
});

after(async () => {
  await gw?.close();
});

interface Whoami {
  method: string;
  path: string;
  headers: Record<string, string>;
}

test('sign in, enrol, recovery codes, the app, sign out, refused: in Chromium without JavaScript', { skip, timeout: 60_000 }, async (t) => {
  const browser = await launchChromium({ args: ['--host-resolver-rules=MAP mail.test 127.0.0.1'] });
  t.after(() => browser.close());
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const base = `http://mail.test:${gw.port}`;
  const totp = gw.gw.rt.config.totp;
  const code = (secret: string, at: number) => generateCode(secret, { time: at, period: totp.period, digits: totp.digits, algorithm: totp.algorithm });

  // the app sends a signed-out visitor to the sign-in form
  await page.goto(`${base}/inbox?folder=1`);
  assert.equal(new URL(page.url()).pathname, '/.portcullis/login');
  assert.equal(await page.title(), 'Sign in');
  // the stylesheet is allowed by the CSP hash: the button is styled
  assert.equal(await page.locator('button[type=submit]').evaluate((b) => getComputedStyle(b).backgroundColor), 'rgb(36, 86, 211)');
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  assert.equal(await page.getByRole('alert').textContent(), 'Incorrect username or password.');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();

  // enrolment: QR code and key; the phone's code confirms it
  assert.equal(new URL(page.url()).pathname, '/.portcullis/enrol');
  const qr = page.locator('img.qr');
  assert.match((await qr.getAttribute('src'))!, /^data:image\/png;base64,/);
  assert.ok((await qr.evaluate((img) => (img as HTMLImageElement).naturalWidth)) > 0, 'the inline QR image is allowed by the CSP and loads');
  const secret = (await page.locator('#secret').textContent())!.replace(/\s/g, '');
  assert.match(secret, /^[A-Z2-7]{32}$/);
  assert.match((await page.locator('#otpauth-uri').getAttribute('href'))!, new RegExp(`^otpauth://totp/Example%20Mail:alice\\?.*secret=${secret}`));
  await page.getByLabel('Code from the app').fill(code(secret, Date.now()));
  await page.getByRole('button', { name: 'Confirm' }).click();

  // recovery codes, shown once, then on to the app
  assert.equal(await page.title(), 'Recovery codes');
  assert.equal(await page.locator('#recovery-codes li').count(), 10);
  await page.locator('#continue').click();
  assert.equal(new URL(page.url()).pathname, '/inbox');
  const who = JSON.parse((await page.locator('body').textContent())!) as Whoami;
  assert.equal(who.path, '/inbox');
  assert.equal(who.headers['remote-user'], 'alice');
  assert.equal(who.headers['remote-email'], 'alice@example.org');
  assert.deepEqual(decodeJwt(who.headers['x-portcullis-assertion']!)['amr'], ['pwd', 'otp']);
  const cookies = await context.cookies(base);
  const session = cookies.find((c) => c.name === 'portcullis_dev_session');
  assert.ok(session?.httpOnly, 'the session cookie is HttpOnly');
  assert.equal(session.sameSite, 'Lax');

  // sign out
  await page.goto(`${base}/.portcullis/logout`);
  await page.getByRole('button', { name: 'Sign out' }).click();
  assert.equal(await page.title(), 'Signed out');
  assert.equal((await context.cookies(base)).some((c) => c.name === 'portcullis_dev_session'), false);
  await page.goto(`${base}/inbox`);
  assert.equal(new URL(page.url()).pathname, '/.portcullis/login', 'the app is closed again');
  assert.equal(new URL(page.url()).searchParams.get('rd'), '/inbox');

  // signing in again asks for the authenticator's code (the next one: the last was spent)
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  assert.equal(new URL(page.url()).pathname, '/.portcullis/mfa');
  await page.getByLabel('Code').fill(code(secret, Date.now() + totp.period * 1000));
  await page.getByRole('button', { name: 'Verify' }).click();
  assert.equal(new URL(page.url()).pathname, '/inbox');
  assert.equal((JSON.parse((await page.locator('body').textContent())!) as Whoami).headers['remote-user'], 'alice');
});
