/**
 * Passkeys in a real headless Chromium (issue 13), with a CDP virtual authenticator (ctap2,
 * internal transport, resident keys, user verification) standing in for the laptop's platform
 * authenticator, and the portal's own script driving navigator.credentials.
 *
 * WebAuthn needs a secure context: `http://mail.localhost:PORT` is one in Chromium (a `localhost`
 * name), mapped to the gateway with --host-resolver-rules. The gateway trusts 127.0.0.1 as a proxy
 * and the browser context sends the `X-Forwarded-For` of the network it stands for (changed
 * between requests as a laptop moving from the office would).
 *
 * - Alice registers a passkey from the office through the account page, then signs in "remotely"
 *   with her password and the passkey and reaches `/ecp/`, whose rule is `passkey`: amr pwd+hwk.
 * - Dave (authenticator app only) signs in remotely with a code: `/ecp/` is not opened; he is
 *   stepped up to the passkey page, which says a passkey is required.
 * - Erin (`webauthn.passwordless: true`) registers a passkey at the office, then, remotely, signs
 *   in with the passkey alone ("Sign in with a passkey": discoverable, user verified): amr hwk.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ManualClock } from '../../src/clock.js';
import { generateCode } from '../../src/auth/totp.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';

const skip = chromiumSkip();
const OFFICE = '10.1.2.3';
const REMOTE = '203.0.113.9';
const HOST = 'mail.localhost';
const PW = { alice: 'amber lantern orchid gravel 1987', dave: 'copper harbour violet thistle 7', erin: 'silver quarry kettle meadow 42' };
const DAVE_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const clock = new ManualClock(Date.UTC(2026, 0, 5, 9, 0, 0));
let gw: TestGateway;
let base: string;
const events: AuditEvent[] = [];

before(async () => {
  if (skip) return;
  const port = await freePort();
  base = `http://${HOST}:${port}`;
  gw = await startTestGateway(
    `
listen: "127.0.0.1:${port}"
trusted_proxies: ["127.0.0.1/32"]
networks: { office: ["10.1.0.0/16"] }
enrol: { networks: [office] }
webauthn: { rp_id: ${HOST}, rp_name: "Example Mail", origins: ["${base}"], passwordless: true }
apps:
  - name: mail
    hosts: ["${HOST}"]
    upstream: "builtin:whoami"
    rules:
      - { paths: ["/ecp/**"], policy: passkey }
      - { networks: [office], policy: password }
      - { policy: mfa }
`,
    { users: Object.entries(PW).map(([name, password]) => ({ name, password })), clock, port },
  );
  const rt = gw.gw.rt;
  await rt.stores.state.setTotp('dave', { secret: rt.box.seal(DAVE_SECRET, 'totp:dave'), enrolledAt: clock.now(), source: 'provisioned' });
  rt.audit.on((e) => events.push(e));
});

after(async () => {
  await gw?.close();
});

async function browser(): Promise<Browser> {
  return launchChromium({ args: [`--host-resolver-rules=MAP ${HOST} 127.0.0.1`] });
}

/** A person on `ip`'s network, with a platform authenticator (passkeys kept on the device). */
async function person(b: Browser, ip: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await b.newContext({ extraHTTPHeaders: { 'x-forwarded-for': ip } });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  return { context, page };
}

const path = (page: Page) => new URL(page.url()).pathname;
async function whoami(page: Page): Promise<{ path: string; user: string | undefined; amr: unknown }> {
  const w = JSON.parse((await page.locator('body').textContent())!) as { path: string; headers: Record<string, string> };
  return { path: w.path, user: w.headers['remote-user'], amr: decodeJwt(w.headers['x-portcullis-assertion']!)['amr'] };
}

async function signIn(page: Page, user: keyof typeof PW): Promise<void> {
  assert.equal(path(page), '/.portcullis/login');
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(PW[user]);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

test('a passkey registered at the office signs in remotely after the password and opens the passkey rule', { skip, timeout: 90_000 }, async (t) => {
  const b = await browser();
  t.after(() => b.close());
  const { context, page } = await person(b, OFFICE);
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });

  await page.goto(`${base}/inbox`);
  await signIn(page, 'alice');
  assert.deepEqual(await whoami(page), { path: '/inbox', user: 'alice', amr: ['pwd'] });

  await page.goto(`${base}/.portcullis/account`);
  assert.match((await page.locator('#passkey-list').textContent()) ?? '', /No passkeys/);
  await page.locator('#passkeys-link').click();
  assert.equal(path(page), '/.portcullis/passkey');
  await page.getByLabel('Name for this passkey').fill('Work laptop');
  await page.getByRole('button', { name: 'Add passkey' }).click();
  await page.waitForURL(/done=added/);
  assert.match((await page.locator('#passkeys').textContent()) ?? '', /Work laptop/);
  assert.deepEqual(consoleErrors, [], 'the script ran under the CSP without errors');
  assert.equal(events.filter((e) => e.event === 'passkey_enrolled' && e.user === 'alice').length, 1);

  // the laptop leaves the office: signed out, on another network
  await context.clearCookies();
  await context.setExtraHTTPHeaders({ 'x-forwarded-for': REMOTE });
  await page.goto(`${base}/ecp/mailboxes`);
  await signIn(page, 'alice');
  await page.waitForURL(/\/\.portcullis\/passkey/);
  await page.getByRole('button', { name: 'Use passkey' }).click();
  await page.waitForURL(`${base}/ecp/mailboxes`);
  assert.deepEqual(await whoami(page), { path: '/ecp/mailboxes', user: 'alice', amr: ['pwd', 'hwk'] });

  await page.goto(`${base}/.portcullis/account`);
  assert.match((await page.locator('#passkey-list').textContent()) ?? '', /Work laptop .*last used/);
});

test('a TOTP-only session is refused at the passkey rule and stepped up to the passkey page', { skip, timeout: 60_000 }, async (t) => {
  const b = await browser();
  t.after(() => b.close());
  const { page } = await person(b, REMOTE);
  clock.advance(3 * 30_000);
  await page.goto(`${base}/ecp/`);
  await signIn(page, 'dave');
  assert.equal(path(page), '/.portcullis/mfa');
  await page.getByLabel('Code').fill(generateCode(DAVE_SECRET, { time: clock.now(), period: 30, digits: 6, algorithm: 'SHA1' }));
  await page.getByRole('button', { name: 'Verify' }).click();
  assert.equal(path(page), '/.portcullis/passkey', 'stepped up, not let in');
  assert.match((await page.locator('h1').textContent()) ?? '', /Passkey required/);
  // the rest of the app (an mfa rule) is open to the code
  await page.goto(`${base}/inbox`);
  assert.deepEqual(await whoami(page), { path: '/inbox', user: 'dave', amr: ['pwd', 'otp'] });
  await page.goto(`${base}/ecp/`);
  assert.equal(path(page), '/.portcullis/passkey');
});

test('passwordless: a passkey alone signs in remotely and opens the passkey rule (amr hwk)', { skip, timeout: 90_000 }, async (t) => {
  const b = await browser();
  t.after(() => b.close());
  const { context, page } = await person(b, OFFICE);
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  await page.goto(`${base}/inbox`);
  await signIn(page, 'erin');
  await page.goto(`${base}/.portcullis/passkey?manage=1`);
  await page.getByLabel('Name for this passkey').fill('Phone');
  await page.getByRole('button', { name: 'Add passkey' }).click();
  await page.waitForURL(/done=added/);

  await context.clearCookies();
  await context.setExtraHTTPHeaders({ 'x-forwarded-for': REMOTE });
  await page.goto(`${base}/ecp/mailboxes`);
  assert.equal(path(page), '/.portcullis/login');
  // no user name, no password: the browser offers the resident passkey, verified on the device
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await page.waitForURL(`${base}/ecp/mailboxes`);
  assert.deepEqual(await whoami(page), { path: '/ecp/mailboxes', user: 'erin', amr: ['hwk'] });
  assert.deepEqual(consoleErrors, [], 'the script ran under the login page CSP without errors');
  assert.ok(events.some((e) => e.event === 'login_succeeded' && e.user === 'erin' && e.reason === 'passkey (passwordless)'));
});
