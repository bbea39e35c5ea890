/**
 * One sign-in across an organisation's hosts, in a real headless Chromium over TLS.
 *
 * The gateway listens with a self-signed certificate for mail.example.test and rdp.example.test
 * (two apps under `session.domain: example.test`), auth.example.test (the portal, no app's host)
 * and evilexample.test (an app outside the domain: a look-alike sibling that keeps its own
 * per-host cookie). Chromium's `--host-resolver-rules` maps them all to 127.0.0.1, which the
 * config calls the office; the browser ignores the certificate's issuer.
 *
 * What a person sees: opening mail sends them to the portal, one sign-in there brings them back
 * to mail, and rdp opens without asking again; the cookie Chromium keeps is `__Secure-portcullis`
 * for `.example.test` (Secure, HttpOnly, Lax). Signing out on rdp ends it on mail too. A session
 * cookie planted on the look-alike sibling outside `session.domain` (as `__Secure-portcullis`
 * or `__Host-portcullis`, carrying a live session's id) is ignored there: it must sign in itself.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const skip = chromiumSkip();
const PASSWORD = 'amber lantern orchid gravel 1987';
const HOSTS = ['auth.example.test', 'mail.example.test', 'rdp.example.test', 'evilexample.test'];
let gw: TestGateway;
let certs: TmpDir;
let port: number;

before(async () => {
  if (skip) return;
  certs = await tmpDir('pc-sso-tls');
  const cert = join(certs.dir, 'cert.pem');
  const key = join(certs.dir, 'key.pem');
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=auth.example.test',
    '-addext', `subjectAltName=${HOSTS.map((h) => `DNS:${h}`).join(',')}`,
  ]);
  // the portal URL names the port, so it is chosen before the gateway starts
  port = await freePort();
  gw = await startTestGateway(
    `
listen: "127.0.0.1:${port}"
tls: { cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(key)} }
networks: { office: ["127.0.0.1/32"] }
session: { domain: example.test, portal: "https://auth.example.test:${port}" }
apps:
  - name: mail
    hosts: ["mail.example.test"]
    upstream: "builtin:whoami"
    rules:
      - { networks: [office], policy: password }
      - { policy: deny }
  - name: rdp
    hosts: ["rdp.example.test"]
    upstream: "builtin:whoami"
    rules:
      - { networks: [office], policy: password }
      - { policy: deny }
  - name: legacy
    hosts: ["evilexample.test"]
    upstream: "builtin:whoami"
    rules:
      - { networks: [office], policy: password }
      - { policy: deny }
`,
    { users: [{ name: 'alice', password: PASSWORD, groups: ['staff'] }], port },
  );
});

after(async () => {
  await gw?.close();
  await certs?.cleanup();
});

async function browser() {
  return launchChromium({
    args: [`--host-resolver-rules=${HOSTS.map((h) => `MAP ${h} 127.0.0.1`).join(', ')}`, '--ignore-certificate-errors'],
  });
}

const url = (host: string, path: string) => `https://${host}:${port}${path}`;
const remoteUser = async (page: import('playwright-core').Page) =>
  (JSON.parse((await page.locator('body').textContent())!) as { headers: Record<string, string> }).headers['remote-user'];

test('one sign-in on the portal reaches both app hosts; logout on one ends both', { skip, timeout: 60_000 }, async (t) => {
  const b = await browser();
  t.after(() => b.close());
  const context = await b.newContext({ javaScriptEnabled: false, ignoreHTTPSErrors: true });
  const page = await context.newPage();

  const first = page.waitForResponse((r) => r.url() === url('mail.example.test', '/inbox?folder=1'));
  await page.goto(url('mail.example.test', '/inbox?folder=1'));
  // the app host itself (the full proxy) sends the browser straight to the portal
  assert.equal((await first).headers()['location'], url('auth.example.test', `/.portcullis/login?rd=${encodeURIComponent(url('mail.example.test', '/inbox?folder=1'))}`));
  const login = new URL(page.url());
  assert.equal(login.host, `auth.example.test:${port}`, 'the sign-in page is on the portal host');
  assert.equal(login.pathname, '/.portcullis/login');
  assert.equal(login.searchParams.get('rd'), url('mail.example.test', '/inbox?folder=1'));
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  assert.equal(page.url(), url('mail.example.test', '/inbox?folder=1'), `and back to the app: ${await page.locator('body').textContent()}`);
  assert.equal(await remoteUser(page), 'alice');

  const cookies = await context.cookies();
  const session = cookies.filter((c) => c.name.includes('portcullis') && !c.name.includes('csrf'));
  assert.equal(session.length, 1, JSON.stringify(cookies));
  assert.equal(session[0]!.name, '__Secure-portcullis');
  assert.equal(session[0]!.domain, '.example.test');
  assert.ok(session[0]!.secure && session[0]!.httpOnly);
  assert.equal(session[0]!.sameSite, 'Lax');
  const csrf = cookies.find((c) => c.name === '__Host-portcullis-csrf');
  assert.equal(csrf?.domain, 'auth.example.test', 'the login CSRF cookie stays host-only on the portal');

  // the other app host: no second sign-in
  await page.goto(url('rdp.example.test', '/desk'));
  assert.equal(page.url(), url('rdp.example.test', '/desk'));
  assert.equal(await remoteUser(page), 'alice');

  // the portal's root is the account page
  await page.goto(url('auth.example.test', '/'));
  assert.equal(await page.locator('#account-user').textContent(), 'alice');

  // sign out on rdp: mail is closed too
  await page.goto(url('rdp.example.test', '/.portcullis/logout'));
  await page.getByRole('button', { name: 'Sign out' }).click();
  assert.equal(await page.title(), 'Signed out');
  assert.equal((await context.cookies()).some((c) => c.name === '__Secure-portcullis'), false, 'the Domain cookie is cleared');
  await page.goto(url('mail.example.test', '/inbox'));
  assert.equal(new URL(page.url()).host, `auth.example.test:${port}`);
  assert.equal(new URL(page.url()).pathname, '/.portcullis/login');
  // and the old cookie value is worthless on both hosts, not merely forgotten by this browser
  await context.addCookies([{ ...session[0]! }]);
  for (const h of ['mail.example.test', 'rdp.example.test']) {
    await page.goto(url(h, '/'));
    assert.equal(new URL(page.url()).pathname, '/.portcullis/login', h);
  }
});

test('a session cookie planted on a sibling host outside session.domain is ignored there', { skip, timeout: 60_000 }, async (t) => {
  const b = await browser();
  t.after(() => b.close());
  // a victim signs in through the portal; their live session id is what the attacker plants
  const victim = await (await b.newContext({ javaScriptEnabled: false, ignoreHTTPSErrors: true })).newPage();
  await victim.goto(url('mail.example.test', '/'));
  await victim.getByLabel('Username').fill('alice');
  await victim.getByLabel('Password').fill(PASSWORD);
  await victim.getByRole('button', { name: 'Sign in' }).click();
  assert.equal(await remoteUser(victim), 'alice');
  const id = (await victim.context().cookies()).find((c) => c.name === '__Secure-portcullis')!.value;

  // the Domain cookie never travels to the look-alike sibling: it asks for its own sign-in
  await victim.goto(url('evilexample.test', '/'));
  assert.equal(new URL(victim.url()).host, `evilexample.test:${port}`, 'its own login page, not the portal');
  assert.equal(new URL(victim.url()).pathname, '/.portcullis/login');

  for (const name of ['__Secure-portcullis', '__Host-portcullis']) {
    const context = await b.newContext({ javaScriptEnabled: false, ignoreHTTPSErrors: true });
    await context.addCookies([{ name, value: id, url: url('evilexample.test', '/'), secure: true, httpOnly: true, sameSite: 'Lax' }]);
    const page = await context.newPage();
    await page.goto(url('evilexample.test', '/'));
    assert.equal(new URL(page.url()).pathname, '/.portcullis/login', `${name} planted on evilexample.test opens nothing`);
    await context.close();
  }
  // the planted id was the victim's live session all along
  await victim.goto(url('rdp.example.test', '/'));
  assert.equal(await remoteUser(victim), 'alice');
});
