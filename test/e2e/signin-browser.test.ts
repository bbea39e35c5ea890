/**
 * Sign-in as people expect it (issue 11), in a real headless Chromium without JavaScript, with the
 * README's rule shape: office -> `password`, an `/admin/**` path and everywhere else -> `mfa`,
 * `totp.enrol.networks: [office]`.
 *
 * Networks: the gateway trusts 127.0.0.1 as a proxy, and each browser context sends the
 * `X-Forwarded-For` of the network it stands for (playwright's extra HTTP headers go with every
 * navigation and form post), so one gateway sees an office client (10.1.2.3) and a remote one
 * (203.0.113.9), and a context can change network between two requests as a laptop would. A fixed
 * clock: codes are computed for it, and the password proved at sign-in goes stale when we say so.
 *
 * - An enrolled user signs in from the office with the password alone, then meets an mfa path and
 *   is asked for a code once: later mfa paths and the rest of the app open without another.
 * - A user with no authenticator enrols from the office through the account page (re-enter the
 *   password, QR code, a code, recovery codes), then signs in remotely with it.
 * - Enrolling from outside `totp.enrol.networks` is refused on every path: at sign-in, the
 *   account page, the enrolment page (offered or not), its re-authentication POST, and the
 *   step-up of a session carried from the office; every refusal is audited.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import type { BrowserContext, Page } from 'playwright-core';
import { ManualClock } from '../../src/clock.js';
import { generateCode } from '../../src/auth/totp.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';
import { call, startTestGateway, type TestGateway } from '../helpers/gateway.js';

const skip = chromiumSkip();
const OFFICE = '10.1.2.3';
const REMOTE = '203.0.113.9';
const PW = { bob: 'amber lantern orchid gravel 1987', carol: 'silver quarry kettle meadow 42', dave: 'copper harbour violet thistle 7' };
const BOB_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const clock = new ManualClock(Date.UTC(2026, 0, 5, 9, 0, 0));
let gw: TestGateway;
let base: string;
const events: AuditEvent[] = [];

before(async () => {
  if (skip) return;
  gw = await startTestGateway(
    `
trusted_proxies: ["127.0.0.1/32"]
networks: { office: ["10.1.0.0/16"] }
totp: { issuer: "Example Mail", enrol: { networks: [office] } }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "builtin:whoami"
    rules:
      - { paths: ["/admin/**"], policy: mfa }
      - { networks: [office], policy: password }
      - { policy: mfa }
`,
    {
      users: [
        { name: 'bob', password: PW.bob },
        { name: 'carol', password: PW.carol },
        { name: 'dave', password: PW.dave },
      ],
      clock,
    },
  );
  const rt = gw.gw.rt;
  await rt.stores.state.setTotp('bob', { secret: rt.box.seal(BOB_SECRET, 'totp:bob'), enrolledAt: clock.now(), source: 'provisioned' });
  rt.audit.on((e) => events.push(e));
  base = `http://mail.test:${gw.port}`;
});

after(async () => {
  await gw?.close();
});

function code(secret: string): string {
  const t = gw.gw.rt.config.totp;
  return generateCode(secret, { time: clock.now(), period: t.period, digits: t.digits, algorithm: t.algorithm });
}
/** Three time steps on: the next code is one nobody has used yet. */
const nextCode = () => clock.advance(3 * gw.gw.rt.config.totp.period * 1000);

async function browser() {
  return launchChromium({ args: [`--host-resolver-rules=MAP mail.test 127.0.0.1`] });
}

/** A person on `ip`'s network. */
async function person(b: Awaited<ReturnType<typeof browser>>, ip: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await b.newContext({ javaScriptEnabled: false, extraHTTPHeaders: { 'x-forwarded-for': ip } });
  return { context, page: await context.newPage() };
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
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test('an enrolled user signs in from the office with the password alone, then meets an mfa path and gives a code once', { skip, timeout: 60_000 }, async (t) => {
  const b = await browser();
  t.after(() => b.close());
  const { page } = await person(b, OFFICE);
  const codePages: string[] = [];
  page.on('response', (r) => {
    if (new URL(r.url()).pathname === '/.portcullis/mfa' && r.request().method() === 'GET' && r.status() === 200) codePages.push(r.url());
  });

  await page.goto(`${base}/inbox`);
  await signIn(page, 'bob');
  assert.equal(path(page), '/inbox', 'no code asked: the office rule is password');
  assert.deepEqual(await whoami(page), { path: '/inbox', user: 'bob', amr: ['pwd'] });

  nextCode();
  await page.goto(`${base}/admin/users`);
  assert.equal(path(page), '/.portcullis/mfa', 'the mfa path steps the session up');
  await page.getByLabel('Code').fill(code(BOB_SECRET));
  await page.getByRole('button', { name: 'Verify' }).click();
  assert.deepEqual(await whoami(page), { path: '/admin/users', user: 'bob', amr: ['pwd', 'otp'] });

  // once: other mfa paths and the rest of the app need no second code
  await page.goto(`${base}/admin/groups`);
  assert.equal((await whoami(page)).path, '/admin/groups');
  await page.goto(`${base}/inbox`);
  assert.equal((await whoami(page)).path, '/inbox');
  assert.equal(codePages.length, 1, codePages.join('\n'));
});

test('a user with no authenticator enrols from the office through the account page and signs in remotely with it', { skip, timeout: 60_000 }, async (t) => {
  const b = await browser();
  t.after(() => b.close());
  const office = await person(b, OFFICE);
  let page = office.page;
  await page.goto(`${base}/inbox`);
  await signIn(page, 'carol');
  assert.equal((await whoami(page)).user, 'carol');

  // later (the sign-in's proof of the password is stale): the account page, then enrolment
  clock.advance(10 * 60_000);
  await page.goto(`${base}/.portcullis/account`);
  assert.equal(await page.locator('#account-user').textContent(), 'carol');
  await page.locator('#enrol-link').click();
  assert.equal(await page.title(), 'Confirm your password');
  await page.getByLabel('Password').fill(PW.carol);
  await page.getByRole('button', { name: 'Continue' }).click();
  assert.equal(path(page), '/.portcullis/enrol');
  const qr = page.locator('img.qr');
  assert.ok((await qr.evaluate((img) => (img as HTMLImageElement).naturalWidth)) > 0, 'the QR code loads under the CSP');
  const secret = (await page.locator('#secret').textContent())!.replace(/\s/g, '');
  assert.match(secret, /^[A-Z2-7]{32}$/);
  await page.getByLabel('Code from the app').fill(code(secret));
  await page.getByRole('button', { name: 'Confirm' }).click();
  assert.equal(await page.title(), 'Recovery codes');
  assert.equal(await page.locator('#recovery-codes li').count(), 10);
  assert.ok(events.some((e) => e.event === 'totp_enrolled' && e.user === 'carol'));

  // remotely, in another browser profile: password, then the new authenticator's code
  nextCode();
  const remote = await person(b, REMOTE);
  page = remote.page;
  await page.goto(`${base}/inbox`);
  await signIn(page, 'carol');
  assert.equal(path(page), '/.portcullis/mfa');
  await page.getByLabel('Code').fill(code(secret));
  await page.getByRole('button', { name: 'Verify' }).click();
  assert.deepEqual(await whoami(page), { path: '/inbox', user: 'carol', amr: ['pwd', 'otp'] });
});

test('enrolling from outside totp.enrol.networks is refused on every path', { skip, timeout: 60_000 }, async (t) => {
  const b = await browser();
  t.after(() => b.close());
  const refusals = () => events.filter((e) => e.event === 'network_denied' && e.user === 'dave' && /enrol/.test(e.reason ?? '')).length;
  const start = events.length;

  // 1. at sign-in from home: a second factor is needed and none can be enrolled here; the one answer for every failure
  const home = await person(b, REMOTE);
  await home.page.goto(`${base}/inbox`);
  await signIn(home.page, 'dave');
  assert.equal(path(home.page), '/.portcullis/login');
  assert.equal(await home.page.getByRole('alert').textContent(), 'Incorrect username or password.');
  assert.equal((await home.context.cookies()).some((c) => c.name === 'portcullis_dev_session'), false);

  // 2. a session begun in the office, carried home (the laptop changes network)
  const laptop = await person(b, OFFICE);
  const page = laptop.page;
  await page.goto(`${base}/inbox`);
  await signIn(page, 'dave');
  assert.equal((await whoami(page)).user, 'dave');
  await page.goto(`${base}/.portcullis/account`);
  const csrf = await page.locator('input[name=csrf]').first().getAttribute('value');
  assert.ok(csrf);
  await laptop.context.setExtraHTTPHeaders({ 'x-forwarded-for': REMOTE });

  const refusedPage = async (url: string) => {
    const r = await page.goto(`${base}${url}`);
    assert.equal(r?.status(), 403, `${url}: ${await page.locator('body').textContent()}`);
    assert.match((await page.locator('body').textContent())!, /only from your organisation's network/, url);
    assert.equal(await page.locator('img.qr').count(), 0, `${url}: no QR code`);
  };
  await refusedPage('/.portcullis/enrol');
  await refusedPage('/.portcullis/enrol?offer=1');
  // the account page first steps the password-only session up, which for dave means enrolment: refused
  await refusedPage('/.portcullis/account');
  await refusedPage('/.portcullis/mfa?rd=%2Fadmin%2Fusers');
  // the app's mfa paths lead to the same refusal
  await page.goto(`${base}/admin/users`);
  assert.equal(path(page), '/.portcullis/mfa');
  assert.match((await page.locator('body').textContent())!, /only from your organisation's network/);

  // forms posted with the session's own token: the re-authentication and the confirmation
  // (sent from node with the browser's cookies: playwright's own request client resolves names without Chromium's host rules)
  const cookie = (await laptop.context.cookies(base)).map((c) => `${c.name}=${c.value}`).join('; ');
  const forms: Array<Record<string, string>> = [{ action: 'reauth', password: PW.dave }, { code: '123456' }];
  for (const form of forms) {
    const r = await call(`${gw.url}/.portcullis/enrol`, {
      method: 'POST',
      headers: { host: `mail.test:${gw.port}`, origin: base, cookie, 'x-forwarded-for': REMOTE, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: csrf!, ...form }).toString(),
    });
    assert.equal(r.status, 403, `${JSON.stringify(form)}: ${r.text}`);
  }
  // the same form from the office would have been taken: the refusal is the network's
  const ok = await call(`${gw.url}/.portcullis/enrol`, {
    method: 'POST',
    headers: { host: `mail.test:${gw.port}`, origin: base, cookie, 'x-forwarded-for': OFFICE, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: csrf!, action: 'reauth', password: 'not the password' }).toString(),
  });
  assert.equal(ok.status, 401, 'from the office the form is judged (here: a wrong password)');
  assert.equal(await gw.gw.rt.stores.state.getTotp('dave'), null, 'no authenticator was added');
  assert.ok(refusals() >= 7, `every refusal audited (${refusals()})`);
  assert.equal(events.slice(start).some((e) => e.event === 'totp_enrolled'), false);
});
