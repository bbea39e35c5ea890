/**
 * Open redirects through `rd`. The login and logout routes send the browser on to `rd`; an
 * attacker who can make that an address of their own gets a phishing link that starts on the
 * real gateway ("sign in again", then off to a look-alike). `rd` may only be a path on the
 * current host or an http(s) URL on the host of a configured app. Every trick in the usual
 * catalogue must be refused: protocol-relative `//evil`, backslashes browsers read as slashes
 * (`/\evil`), encoded slashes, backslashes, tabs, new lines and spaces that a browser strips or
 * decodes, userinfo (`https://mail.test@evil`), look-alike suffixes and prefixes, other schemes
 * (`javascript:`, `data:`), and scheme forms the URL parser would repair (`https:/\evil`).
 *
 * Refused means: the login page carries no `rd` field, a successful sign-in goes to `/`, and
 * logout answers with the signed-out page instead of a redirect. The pure function
 * `safeRedirect` is checked case by case too.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { safeRedirect } from '../../src/portal/redirect.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { PortalClient, hiddenField } from '../helpers/portal.js';

const PASSWORD = 'amber lantern orchid gravel 1987';
let gw: TestGateway;

before(async () => {
  gw = await startTestGateway(
    `
networks: { office: ["127.0.0.1/32"] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "builtin:whoami"
    rules: [ { networks: [office], policy: password } ]
  - name: wiki
    hosts: ["wiki.test"]
    upstream: "builtin:whoami"
    rules: [ { networks: [office], policy: password } ]
`,
    { users: [{ name: 'alice', password: PASSWORD, groups: ['staff'] }] },
  );
});

after(async () => {
  await gw?.close();
});

/** Targets that would leave the configured hosts (or run script), each one a known trick. */
const TRICKS: readonly string[] = [
  // protocol-relative, in every spelling
  '//evil.example',
  '///evil.example',
  '////evil.example/x',
  '//mail.test',
  '/\\evil.example',
  '\\\\evil.example',
  '\\/evil.example',
  '/\\/evil.example',
  '/%2f%2fevil.example',
  '/%2F%2Fevil.example',
  '%2f%2fevil.example',
  '/%2f/evil.example',
  '/%5cevil.example',
  '/%5C%5Cevil.example',
  '%5c%5cevil.example',
  // white space and controls that browsers strip from URLs
  '/\t/evil.example',
  '/%09/evil.example',
  '%09//evil.example',
  '/%0a/evil.example',
  '/%0d%0a/evil.example',
  '/%0d%0aSet-Cookie:%20x=y',
  ' //evil.example',
  '%20//evil.example',
  '/%20/evil.example',
  '/%00/evil.example',
  '/%7f/evil.example',
  // hosts that are not configured apps
  'https://evil.example/',
  'http://evil.example',
  'HTTPS://EVIL.EXAMPLE/',
  'https://evil.example:443/mail.test',
  // userinfo
  'https://mail.test@evil.example/',
  'https://mail.test:443@evil.example/',
  'https://mail.test%40evil.example/',
  'https://user:pass@mail.test/',
  'https://@mail.test/',
  'https://evil.example\\@mail.test/',
  'https://evil.example%5c@mail.test/',
  // look-alikes
  'https://mail.test.evil.example/',
  'https://mail.test%2eevil.example/',
  'https://evilmail.test/',
  'https://mail.testevil.example/',
  'https://xn--mil-8cd.test/',
  'https://m\u0430il.test/',
  'https://evil.example#@mail.test',
  'https://evil.example?@mail.test',
  'https://evil.example/.mail.test',
  // other schemes
  'javascript:alert(1)',
  'JaVaScRiPt:alert(1)',
  'java%0ascript:alert(1)',
  'javascript://mail.test/%0aalert(1)',
  ' javascript:alert(1)',
  'data:text/html,<script>alert(1)</script>',
  'vbscript:msgbox(1)',
  'file:///etc/passwd',
  'ftp://mail.test/',
  // scheme forms a URL parser would repair into another host
  'https:/evil.example',
  'https:evil.example',
  'https:mail.test',
  'https:/\\evil.example',
  'https:\\\\evil.example',
  'http:/\\/evil.example',
  'https:/%5cevil.example',
  // not a URL at all, or too long
  'evil.example',
  '.evil.example',
  'evil.example/mail.test',
  `/${'a'.repeat(5000)}`,
];

/** Safe targets and what they come back as. */
const SAFE: ReadonlyArray<[string, string]> = [
  ['/', '/'],
  ['/inbox?folder=2&x=%2F', '/inbox?folder=2&x=%2F'],
  ['/caf%C3%A9', '/caf%C3%A9'],
  ['https://mail.test/inbox', 'https://mail.test/inbox'],
  ['http://wiki.test/page?a=b', 'http://wiki.test/page?a=b'],
  ['https://MAIL.TEST:8443/x', 'https://mail.test:8443/x'],
];

test('safeRedirect refuses every trick and keeps safe targets', () => {
  const cfg = gw.gw.rt.config;
  for (const t of TRICKS) assert.equal(safeRedirect(t, cfg), null, JSON.stringify(t));
  for (const [t, want] of SAFE) assert.equal(safeRedirect(t, cfg), want, JSON.stringify(t));
  for (const t of [undefined, null, '']) assert.equal(safeRedirect(t, cfg), null);
  assert.equal(safeRedirect(['/a', '/b'] as unknown as string, cfg), null, 'a repeated query parameter is not a target');
});

test('the login page drops a tricky rd, and signing in with one lands on /', async () => {
  for (const t of TRICKS.filter((x) => x.length < 1000)) {
    const c = new PortalClient(gw.port, 'mail.test', { localAddress: '127.0.0.1' });
    const page = await c.get(`/.portcullis/login?rd=${encodeURIComponent(t)}`);
    assert.equal(page.status, 200, JSON.stringify(t));
    assert.equal(hiddenField(page.body, 'rd'), null, `rd field kept for ${JSON.stringify(t)}`);
    assert.doesNotMatch(page.body.replace(/name="csrf" value="[^"]*"/, ''), /evil/i, 'no trace of the target (the random CSRF token aside)');
    // a forged form (the rd field written by the attacker) is filtered the same way
    const csrf = hiddenField(page.body, 'csrf')!;
    const r = await c.post('/.portcullis/login', { csrf, username: 'alice', password: PASSWORD, rd: t });
    assert.equal(r.status, 303, JSON.stringify(t));
    assert.equal(r.headers.location, '/', `sign-in with rd=${JSON.stringify(t)} went to ${r.headers.location}`);
  }
});

test('safe targets survive the login round trip', async () => {
  for (const [t, want] of SAFE) {
    const c = new PortalClient(gw.port, 'mail.test', { localAddress: '127.0.0.1' });
    const r = await c.login('alice', PASSWORD, t);
    assert.equal(r.status, 303);
    assert.equal(r.headers.location, want);
  }
});

test('logout never redirects off-site, with or without a session, rd in the query or the form', async () => {
  for (const t of TRICKS.filter((x) => x.length < 1000)) {
    const anon = new PortalClient(gw.port, 'mail.test', { localAddress: '127.0.0.1' });
    const r = await anon.post(`/.portcullis/logout?rd=${encodeURIComponent(t)}`, {});
    assert.equal(r.status, 200, `${JSON.stringify(t)}: ${r.status} ${r.headers.location ?? ''}`);
    assert.equal(r.headers.location, undefined);
    assert.match(r.body, /Signed out/);
  }
  for (const t of ['//evil.example', '/\\evil.example', 'https://mail.test@evil.example/', 'javascript:alert(1)', '/%09/evil.example']) {
    const c = new PortalClient(gw.port, 'mail.test', { localAddress: '127.0.0.1' });
    await c.login('alice', PASSWORD);
    const csrf = hiddenField((await c.get('/.portcullis/logout')).body, 'csrf')!;
    const q = await c.post(`/.portcullis/logout?rd=${encodeURIComponent(t)}`, { csrf });
    assert.equal(q.status, 200, JSON.stringify(t));
    assert.equal(q.headers.location, undefined);
    await c.login('alice', PASSWORD);
    const csrf2 = hiddenField((await c.get('/.portcullis/logout')).body, 'csrf')!;
    const f = await c.post('/.portcullis/logout', { csrf: csrf2, rd: t });
    assert.equal(f.status, 200, JSON.stringify(t));
    assert.equal(f.headers.location, undefined);
  }
  // and a safe target is honoured
  const ok = await new PortalClient(gw.port, 'mail.test', { localAddress: '127.0.0.1' }).post(`/.portcullis/logout?rd=${encodeURIComponent('https://wiki.test/')}`, {});
  assert.equal(ok.status, 303);
  assert.equal(ok.headers.location, 'https://wiki.test/');
});
