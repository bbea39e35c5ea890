/**
 * The admin console in a real headless Chromium, against a real gateway over real sockets, as an
 * operator uses it during an attack: sign in with the admin token, watch a failed sign-in appear,
 * lift the block a brute-forcing source earned, switch lockdown on and off and see outsiders
 * refused and readmitted, and widen an allowlist that the running gateway applies at once.
 *
 * The browser enforces what the inject tests can only inspect: the strict CSP (no console errors,
 * the hashed stylesheet applies, even to the inline SVG chart), SameSite=Strict cookies, the
 * Origin it sends with each form, and `required` on the lockdown confirmation.
 *
 * Sources: 127.0.0.1 is the office (and the admin's browser), 127.0.0.2 an outsider, 127.0.0.3 an
 * attacker guessing passwords.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { Browser, Locator, Page } from 'playwright-core';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { PortalClient } from '../helpers/portal.js';
import { rawHttp, get } from '../helpers/raw-http.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const OFFICE = '127.0.0.1';
const OUTSIDER = '127.0.0.2';
const ATTACKER = '127.0.0.3';
const SKIP = chromiumSkip();

let up: Upstream;
let tg: TestGateway;
let browser: Browser | null = null;
let page: Page;
const pageErrors: string[] = [];

before(async () => {
  up = await startUpstream();
  tg = await startTestGateway(`
# the admin's desk; lockdown leaves it open
networks:
  office: ["${OFFICE}/32"]
lockdown: { networks: [office] }
login_limits:
  per_ip: { max_failures: 3, window: 15m, block: 15m }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    rules:
      - { paths: ["/public/**"], policy: bypass }
      - { policy: password }
`);
  if (SKIP) return;
  browser = await launchChromium();
  page = await (await browser.newContext()).newPage();
  // what the browser says about the page itself (a 4xx answer to a refused form is expected)
  page.on('console', (m) => {
    if ((m.type() === 'error' || m.type() === 'warning') && !/^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) {
      pageErrors.push(m.text());
    }
  });
  page.on('pageerror', (e) => pageErrors.push(e.message));
});

after(async () => {
  await browser?.close();
  await tg?.close();
  await up?.close();
});

const consoleUrl = () => `http://127.0.0.1:${tg.gw.adminPort}/console`;

/** Click a form's button and wait until the page it leads to has loaded. */
async function submit(button: Locator): Promise<void> {
  const navigated = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() });
  await button.click();
  await navigated;
  await page.waitForLoadState('load');
}

async function appStatus(from: string): Promise<number> {
  return (await rawHttp(tg.port, get('/public/news', 'mail.test'), { localAddress: from })).status;
}

test('sign in with the admin token; a failed sign-in at the gateway appears in the console; the page runs under its CSP without complaint', { skip: SKIP, timeout: 60_000 }, async () => {
  await page.goto(consoleUrl());
  assert.ok(page.url().endsWith('/console/login'), `sent to sign in (at ${page.url()})`);
  await page.getByLabel('Admin token').fill('this-is-not-the-admin-token-at-all-no');
  await submit(page.getByRole('button', { name: 'Sign in' }));
  assert.match(await page.getByRole('alert').innerText(), /not the admin token/);

  const token = (await readFile(tg.gw.rt.config.admin.tokenFile, 'utf8')).trim();
  await page.getByLabel('Admin token').fill(token);
  await submit(page.getByRole('button', { name: 'Sign in' }));
  assert.ok(page.url().endsWith('/console'), page.url());
  assert.equal(await page.getByRole('heading', { name: 'Lockdown', level: 2 }).count(), 1);
  const cookies = await page.context().cookies();
  const c = cookies.find((x) => x.name === 'portcullis_admin');
  assert.ok(c, 'the console session cookie');
  assert.equal(c.httpOnly, true);
  assert.equal(c.sameSite, 'Strict');
  assert.ok(!cookies.some((x) => x.value.includes(token)), 'the token is not kept in the browser');

  // someone outside fails to sign in at the gateway
  const r = await new PortalClient(tg.port, 'mail.test', { localAddress: OUTSIDER }).login('alice', 'not her password at all');
  assert.equal(r.status, 401);
  await page.reload();
  const row = page.locator('#attempts tbody tr').filter({ hasText: 'login_failed' }).filter({ hasText: OUTSIDER });
  assert.equal(await row.count(), 1);
  assert.match(await row.innerText(), /alice/);
  assert.match(await row.innerText(), /failure/);

  // the chart has its bar, coloured by the hashed stylesheet (the CSP let it apply)
  const bar = page.locator('svg#chart-hour rect.bar');
  assert.equal(await bar.count(), 1);
  assert.equal(await bar.evaluate((el) => getComputedStyle(el).fill), 'rgb(192, 57, 43)');
  assert.match((await page.locator('#attacks').innerText()).replace(/\s+/g, ' '), /alice 1 1/);
  assert.deepEqual(pageErrors, [], 'no CSP violations or script errors');
});

test('a source that failed past per_ip.max_failures is blocked; the console lifts the block', { skip: SKIP, timeout: 60_000 }, async () => {
  const attacker = new PortalClient(tg.port, 'mail.test', { localAddress: ATTACKER });
  for (const user of ['alice', 'bob', 'carol']) assert.equal((await attacker.login(user, `guess for ${user} 1234`)).status, 401);
  assert.equal((await attacker.login('dave', 'another guess 5678')).status, 429, 'the source is blocked');

  await page.goto(consoleUrl());
  const unblock = page.getByRole('button', { name: `Unblock source ${ATTACKER}` });
  assert.equal(await unblock.count(), 1);
  await submit(unblock);
  assert.match(await page.getByRole('status').first().innerText(), new RegExp(`Lifted 1 block on source ${ATTACKER.replace(/\./g, '\\.')}`));
  assert.ok(!(await tg.gw.rt.throttle.listBlocks()).some((b) => b.source === ATTACKER));
  assert.equal(await page.getByRole('button', { name: `Unblock source ${ATTACKER}` }).count(), 0);
  assert.equal((await attacker.login('dave', 'another guess 5678')).status, 401, 'the source may try again');
});

test('lockdown on from the console refuses outsiders at the gateway; off readmits them', { skip: SKIP, timeout: 60_000 }, async () => {
  assert.equal(await appStatus(OUTSIDER), 200);
  await page.goto(consoleUrl());
  const turnOn = page.getByRole('button', { name: 'Turn lockdown on' });
  // the browser will not send it until the consequences are acknowledged
  assert.equal(await page.getByLabel(/I understand/).evaluate((el) => (el as HTMLInputElement).validity.valueMissing), true);
  await page.getByLabel(/I understand/).check();
  await submit(turnOn);
  assert.equal(tg.gw.rt.lockdown.on, true);
  assert.equal(tg.gw.rt.lockdown.by, 'admin-console');
  assert.match(await page.locator('#lockdown').innerText(), /Lockdown is\s+ON/);
  assert.equal(await appStatus(OUTSIDER), 403);
  assert.equal(await appStatus(OFFICE), 200, 'the lockdown network still gets in');

  await submit(page.getByRole('button', { name: 'Turn lockdown off' }));
  assert.equal(tg.gw.rt.lockdown.on, false);
  assert.match(await page.getByRole('status').first().innerText(), /access is restored/);
  assert.equal(await appStatus(OUTSIDER), 200);
  assert.deepEqual(pageErrors, []);
});

test('an allowlist edited in the console is written in place and applied by the running gateway', { skip: SKIP, timeout: 60_000 }, async () => {
  await page.goto(consoleUrl());
  await page.getByLabel('Add to office').fill(OUTSIDER);
  await submit(page.getByRole('button', { name: 'Add to office' }));
  const status = await page.getByRole('status').first().innerText();
  assert.match(status, /Added to office: 127\.0\.0\.2\/32/);
  assert.match(status, /The running gateway has applied it/);
  assert.deepEqual(tg.gw.rt.config.networks.get('office')!.toStrings(), [`${OFFICE}/32`, `${OUTSIDER}/32`]);
  const file = await readFile(tg.configFile, 'utf8');
  assert.match(file, /# the admin's desk; lockdown leaves it open\n/);
  assert.match(file, /office: \["127\.0\.0\.1\/32", "127\.0\.0\.2\/32"\]/);

  // a typo is refused with the validator's words, and nothing changes
  await page.getByLabel('Add to office').fill('127.0.0.300');
  await submit(page.getByRole('button', { name: 'Add to office' }));
  assert.match(await page.getByRole('alert').innerText(), /not a valid IPv4 or IPv6 address/);
  assert.equal(await readFile(tg.configFile, 'utf8'), file);

  await page.goto(consoleUrl());
  await submit(page.getByRole('button', { name: `Remove ${OUTSIDER}/32 from office` }));
  assert.deepEqual(tg.gw.rt.config.networks.get('office')!.toStrings(), [`${OFFICE}/32`]);

  // signing out: the console asks for the token again
  await submit(page.getByRole('button', { name: 'Sign out' }));
  await page.goto(consoleUrl());
  assert.ok(page.url().endsWith('/console/login'));
  assert.deepEqual(pageErrors, []);
});
