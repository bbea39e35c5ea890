/**
 * One sign-in across an organisation's hosts (`session.domain`, `session.portal`), through
 * `buildApp(rt).inject()` and the gate itself: no sockets, a fixed clock.
 *
 * mail.example.test and rdp.example.test are apps under `session.domain: example.test`; the
 * sign-in pages live on auth.example.test (no app's host). evilexample.test is an app too, but a
 * look-alike outside the domain: it keeps its own per-host cookie. Every request comes through a
 * trusted TLS-terminating proxy (X-Forwarded-Proto: https), as the Domain cookie is Secure.
 *
 * What it shows: the config is validated; the session cookie is `__Secure-portcullis` with
 * `Domain=example.test` (Secure, HttpOnly, SameSite=Lax) while the login CSRF cookie stays
 * host-only on the portal; app hosts send browsers to the portal with an absolute `rd` (full proxy
 * and forward-auth) and the portal sends them back; the portal judges admission for the app `rd`
 * names; the one session opens both apps; logout on one app host ends it on both and clears the
 * Domain cookie; a domain session carried to the host outside the domain, in either cookie name,
 * is no session there; without `session.domain` nothing changes.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gate, loginLocation } from '../../src/access/gate.js';
import { loadConfigText } from '../../src/config/index.js';
import { sessionCookieFor } from '../../src/session/sessions.js';
import { startPortalApp, type PortalApp } from '../helpers/portal-app.js';
import { hiddenField, parseSetCookie } from '../helpers/portal.js';

const OFFICE = '192.0.2.10';
const VPN = '198.51.100.20';
const PROXY = '127.0.0.1';
const PW = 'correct horse battery staple';
const DOMAIN_COOKIE = '__Secure-portcullis';

const CONFIG = `
networks: { office: ["192.0.2.0/24"], vpn: ["198.51.100.0/24"] }
trusted_proxies: ["127.0.0.1/32"]
session: { domain: example.test, portal: "https://auth.example.test" }
apps:
  - name: mail
    hosts: ["mail.example.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { networks: [office, vpn], policy: password }
      - { policy: deny }
  - name: rdp
    hosts: ["rdp.example.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { networks: [office], policy: password }
      - { policy: deny }
  - name: legacy
    hosts: ["evilexample.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { networks: [office], policy: password }
      - { policy: deny }
`;

interface Cookie {
  name: string;
  value: string;
  /** null: host-only, for `host`. */
  domain: string | null;
  host: string;
  attrs: Map<string, string>;
}

/**
 * A browser behind the proxy: one cookie jar for every host, with Domain honoured as a browser
 * does (a Domain cookie goes to that domain and every host under it; a host-only one to its host).
 */
class Browser {
  readonly cookies: Cookie[] = [];
  constructor(
    readonly pa: PortalApp,
    public ip: string,
  ) {}

  cookieHeader(host: string): string {
    return this.cookies
      .filter((c) => (c.domain === null ? c.host === host : host === c.domain || host.endsWith(`.${c.domain}`)))
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  cookie(name: string, host: string): Cookie | undefined {
    return this.cookies.find((c) => c.name === name && (c.domain === null ? c.host === host : host === c.domain || host.endsWith(`.${c.domain}`)));
  }

  async request(method: 'GET' | 'POST', url: string, form?: Record<string, string>, extra: Record<string, string> = {}) {
    const u = new URL(url);
    const headers: Record<string, string> = { host: u.host, 'x-forwarded-for': this.ip, 'x-forwarded-proto': 'https', ...extra };
    const cookie = this.cookieHeader(u.hostname);
    if (cookie) headers['cookie'] = cookie;
    if (form) headers['content-type'] = 'application/x-www-form-urlencoded';
    const r = await this.pa.app.inject({ method, url: u.pathname + u.search, headers, remoteAddress: PROXY, ...(form ? { payload: new URLSearchParams(form).toString() } : {}) });
    const set = r.headers['set-cookie'];
    const lines = set === undefined ? [] : Array.isArray(set) ? set : [set];
    for (const line of lines) {
      const p = parseSetCookie(line);
      const domain = p.attrs.get('domain')?.replace(/^\./, '').toLowerCase() ?? null;
      const i = this.cookies.findIndex((c) => c.name === p.name && c.domain === domain && (domain !== null || c.host === u.hostname));
      if (i >= 0) this.cookies.splice(i, 1);
      const gone = p.value === '' || p.attrs.get('max-age') === '0' || /1970/.test(p.attrs.get('expires') ?? '');
      if (!gone) this.cookies.push({ name: p.name, value: p.value, domain, host: u.hostname, attrs: p.attrs });
    }
    const location = typeof r.headers.location === 'string' ? r.headers.location : undefined;
    return { status: r.statusCode, body: r.body, location, setCookies: lines, headers: r.headers };
  }

  /** The gate's answer for `url` as the full proxy asks it, with this browser's cookies. */
  gate(url: string) {
    const u = new URL(url);
    const c = sessionCookieFor(this.pa.rt.config.session, u.hostname, true);
    const header = this.cookieHeader(u.hostname);
    const id = header.split('; ').find((p) => p.startsWith(`${c.name}=`))?.slice(c.name.length + 1);
    return gate(this.pa.rt, this.pa.rt.config, {
      method: 'GET',
      target: u.pathname + u.search,
      host: u.host,
      ip: this.ip,
      proto: 'https',
      sessionId: id,
      sessionScope: c.domain,
      authorization: undefined,
    });
  }

  /** Sign in on the portal for `rd`; the POST's response. */
  async login(rd: string, password = PW) {
    const page = await this.request('GET', `https://auth.example.test/.portcullis/login?rd=${encodeURIComponent(rd)}`);
    assert.equal(page.status, 200, page.body);
    return this.request('POST', 'https://auth.example.test/.portcullis/login', { csrf: hiddenField(page.body, 'csrf')!, username: 'alice', password, rd: hiddenField(page.body, 'rd')! });
  }
}

let pa: PortalApp;
before(async () => {
  pa = await startPortalApp(CONFIG, { users: [{ name: 'alice', password: PW }] });
});
after(async () => pa?.close());
beforeEach(async () => {
  pa.clock.advance(60 * 60_000);
  pa.events.length = 0;
  await pa.rt.stores.sessions.deleteAll();
});

describe('session.domain: config', () => {
  const issues = (session: string) => {
    const r = loadConfigText(`session: ${session}\napps: []\n`, '/tmp/portcullis.yaml');
    return r.ok ? [] : r.issues.filter((i) => i.path.startsWith('session')).map((i) => `${i.path}: ${i.message}`);
  };
  it('domain and portal together; the portal an https origin whose host is the domain or under it', () => {
    assert.deepEqual(issues('{ domain: example.org, portal: "https://auth.example.org" }'), []);
    assert.deepEqual(issues('{ domain: example.org, portal: "https://example.org:8443" }'), []);
    assert.match(issues('{ domain: example.org }').join('\n'), /go together/);
    assert.match(issues('{ portal: "https://auth.example.org" }').join('\n'), /go together/);
    assert.match(issues('{ domain: example.org, portal: "http://auth.example.org" }').join('\n'), /https/);
    assert.match(issues('{ domain: example.org, portal: "https://auth.evilexample.org" }').join('\n'), /not example\.org or under it/);
    assert.match(issues('{ domain: example.org, portal: "https://auth.example.org/login" }').join('\n'), /origin only/);
    assert.match(issues('{ domain: org, portal: "https://auth.org" }').join('\n'), /at least two labels/);
    assert.match(issues('{ domain: 192.0.2.1, portal: "https://192.0.2.1" }').join('\n'), /not a domain/);
  });
  it('hosts under the domain share the Domain cookie over https; others (and plain http) keep their own', () => {
    const s = pa.rt.config.session;
    assert.deepEqual(sessionCookieFor(s, 'mail.example.test', true), { name: DOMAIN_COOKIE, domain: 'example.test' });
    assert.deepEqual(sessionCookieFor(s, 'auth.example.test', true), { name: DOMAIN_COOKIE, domain: 'example.test' });
    assert.deepEqual(sessionCookieFor(s, 'evilexample.test', true), { name: '__Host-portcullis', domain: null });
    assert.deepEqual(sessionCookieFor(s, 'mail.example.test', false), { name: 'portcullis_dev_session', domain: null });
  });
});

describe('session.domain: one sign-in across hosts', () => {
  it('an app host sends a browser to the portal with an absolute rd; the login form there is served', async () => {
    const b = new Browser(pa, OFFICE);
    const r = await b.gate('https://mail.example.test/inbox?folder=1');
    assert.equal(r.kind, 'signin');
    const to = loginLocation(pa.rt.config, { proto: 'https', host: 'mail.example.test', target: '/inbox?folder=1' }, false);
    assert.equal(to, `https://auth.example.test/.portcullis/login?rd=${encodeURIComponent('https://mail.example.test/inbox?folder=1')}`);
    // the app host's own login page leads there too, a relative rd made absolute
    const own = await b.request('GET', 'https://mail.example.test/.portcullis/login?rd=%2Finbox');
    assert.equal(own.status, 303);
    assert.equal(own.location, `https://auth.example.test/.portcullis/login?rd=${encodeURIComponent('https://mail.example.test/inbox')}`);
    // forward-auth (Traefik / Caddy) sends browsers to the portal as well
    const fa = await b.request('GET', 'https://auth.example.test/.portcullis/authz/forward-auth', undefined, {
      'x-forwarded-host': 'rdp.example.test',
      'x-forwarded-uri': '/desk',
      'x-forwarded-method': 'GET',
      accept: 'text/html',
    });
    assert.equal(fa.status, 302);
    assert.equal(fa.location, `https://auth.example.test/.portcullis/login?rd=${encodeURIComponent('https://rdp.example.test/desk')}`);
    // and nginx auth_request gets 401 + the same portal Location
    const ar = await b.request('GET', 'https://auth.example.test/.portcullis/authz/auth-request', undefined, {
      'x-original-url': 'https://mail.example.test/inbox',
      'x-original-method': 'GET',
    });
    assert.equal(ar.status, 401);
    assert.equal(ar.location, `https://auth.example.test/.portcullis/login?rd=${encodeURIComponent('https://mail.example.test/inbox')}`);
    // and the portal host itself serves the form; its root leads to the account page
    const page = await b.request('GET', to);
    assert.equal(page.status, 200);
    assert.equal(hiddenField(page.body, 'rd'), 'https://mail.example.test/inbox?folder=1');
  });

  it('the session cookie is __Secure-portcullis, Domain=example.test, Secure, HttpOnly, SameSite=Lax, Path=/; the CSRF cookie stays host-only', async () => {
    const b = new Browser(pa, OFFICE);
    const r = await b.login('https://mail.example.test/inbox');
    assert.equal(r.status, 303);
    assert.equal(r.location, 'https://mail.example.test/inbox');
    // CSP form-action also governs the redirect after a submission: the domain's https origins are allowed
    const page = await b.request('GET', 'https://auth.example.test/.portcullis/login');
    assert.match(String(page.headers['content-security-policy']), /form-action 'self' https:\/\/example\.test:\* https:\/\/\*\.example\.test:\*/);
    const line = r.setCookies.find((l) => l.startsWith(`${DOMAIN_COOKIE}=`));
    assert.ok(line, r.setCookies.join('\n'));
    const c = parseSetCookie(line);
    assert.equal(c.attrs.get('domain'), 'example.test');
    assert.equal(c.attrs.get('path'), '/');
    assert.ok(c.attrs.has('secure') && c.attrs.has('httponly'));
    assert.equal(c.attrs.get('samesite')?.toLowerCase(), 'lax');
    assert.equal(r.setCookies.some((l) => l.startsWith('__Host-portcullis=')), false, 'no per-host session cookie');
    const csrf = b.cookie('__Host-portcullis-csrf', 'auth.example.test');
    assert.ok(csrf);
    assert.equal(csrf.domain, null, 'the login CSRF cookie has no Domain');
    assert.equal(b.cookie('__Host-portcullis-csrf', 'mail.example.test'), undefined);
  });

  it('one sign-in opens both app hosts (full proxy and forward-auth)', async () => {
    const b = new Browser(pa, OFFICE);
    await b.login('https://mail.example.test/');
    assert.equal((await b.gate('https://mail.example.test/inbox')).kind, 'proxy');
    assert.equal((await b.gate('https://rdp.example.test/desk')).kind, 'proxy');
    const fa = await b.request('GET', 'https://auth.example.test/.portcullis/authz/forward-auth', undefined, {
      'x-forwarded-host': 'rdp.example.test',
      'x-forwarded-uri': '/desk',
      'x-forwarded-method': 'GET',
    });
    assert.equal(fa.status, 200);
  });

  it('the portal judges admission for the app rd names (the first app when it names none)', async () => {
    const b = new Browser(pa, VPN);
    assert.equal((await b.request('GET', `https://auth.example.test/.portcullis/login?rd=${encodeURIComponent('https://mail.example.test/')}`)).status, 200);
    assert.equal((await b.request('GET', `https://auth.example.test/.portcullis/login?rd=${encodeURIComponent('https://rdp.example.test/')}`)).status, 403);
    assert.equal((await b.request('GET', 'https://auth.example.test/.portcullis/login')).status, 200, 'mail, the first app, admits the VPN');
    // the session made for mail from the VPN is still no way into rdp from there: the gate decides per request
    await b.login('https://mail.example.test/');
    assert.equal((await b.gate('https://mail.example.test/')).kind, 'proxy');
    const r = await b.gate('https://rdp.example.test/');
    assert.equal(r.kind, 'error');
    assert.equal(r.kind === 'error' && r.code, 'PC_NETWORK_DENIED');
  });

  it('an rd outside the configured apps is dropped, on the portal and on the way there', async () => {
    const b = new Browser(pa, OFFICE);
    const page = await b.request('GET', `https://auth.example.test/.portcullis/login?rd=${encodeURIComponent('https://evil.example.net/')}`);
    assert.equal(hiddenField(page.body, 'rd'), null);
    const own = await b.request('GET', `https://mail.example.test/.portcullis/login?rd=${encodeURIComponent('https://evil.example.net/')}`);
    assert.equal(own.location, 'https://auth.example.test/.portcullis/login');
  });

  it('logout on one app host ends the session on every host and clears the Domain cookie', async () => {
    const b = new Browser(pa, OFFICE);
    await b.login('https://mail.example.test/');
    const id = b.cookie(DOMAIN_COOKIE, 'mail.example.test')!.value;
    const form = await b.request('GET', 'https://rdp.example.test/.portcullis/logout');
    const csrf = hiddenField(form.body, 'csrf');
    assert.ok(csrf, 'the logout form on the app host sees the shared session');
    const out = await b.request('POST', 'https://rdp.example.test/.portcullis/logout', { csrf }, { origin: 'https://rdp.example.test' });
    assert.equal(out.status, 200);
    const cleared = out.setCookies.map(parseSetCookie).find((c) => c.name === DOMAIN_COOKIE);
    assert.ok(cleared);
    assert.equal(cleared.attrs.get('domain'), 'example.test', 'cleared for the whole domain');
    assert.equal(b.cookie(DOMAIN_COOKIE, 'mail.example.test'), undefined);
    assert.equal(pa.events.filter((e) => e.event === 'session_ended').length, 1);
    // an old copy of the cookie is worthless everywhere
    const copy = new Browser(pa, OFFICE);
    copy.cookies.push({ name: DOMAIN_COOKIE, value: id, domain: 'example.test', host: 'mail.example.test', attrs: new Map() });
    assert.equal((await copy.gate('https://mail.example.test/')).kind, 'signin');
    assert.equal((await copy.gate('https://rdp.example.test/')).kind, 'signin');
  });

  it('a cross-origin logout POST is refused and audited', async () => {
    const b = new Browser(pa, OFFICE);
    await b.login('https://mail.example.test/');
    const form = await b.request('GET', 'https://mail.example.test/.portcullis/logout');
    const r = await b.request('POST', 'https://mail.example.test/.portcullis/logout', { csrf: hiddenField(form.body, 'csrf')! }, { origin: 'https://evilexample.test' });
    assert.equal(r.status, 403);
    assert.ok(pa.events.some((e) => e.event === 'csrf_refused'));
    assert.equal((await b.gate('https://rdp.example.test/')).kind, 'proxy');
  });

  it('a domain session carried to a host outside the domain is no session there, in either cookie name', async () => {
    const b = new Browser(pa, OFFICE);
    await b.login('https://mail.example.test/');
    const id = b.cookie(DOMAIN_COOKIE, 'mail.example.test')!.value;
    // planted on the look-alike sibling as a host-only cookie of each name
    const evil = new Browser(pa, OFFICE);
    evil.cookies.push({ name: DOMAIN_COOKIE, value: id, domain: null, host: 'evilexample.test', attrs: new Map() });
    assert.equal((await evil.gate('https://evilexample.test/')).kind, 'signin');
    evil.cookies.length = 0;
    evil.cookies.push({ name: '__Host-portcullis', value: id, domain: null, host: 'evilexample.test', attrs: new Map() });
    assert.equal((await evil.gate('https://evilexample.test/')).kind, 'signin');
    const fa = await evil.request('GET', 'https://auth.example.test/.portcullis/authz/forward-auth', undefined, {
      'x-forwarded-host': 'evilexample.test',
      'x-forwarded-uri': '/',
      'x-forwarded-method': 'GET',
      cookie: `__Host-portcullis=${id}; ${DOMAIN_COOKIE}=${id}`,
    });
    assert.equal(fa.status, 401);
    // and the other way round: a per-host session of the look-alike is no domain session
    const legacy = new Browser(pa, OFFICE);
    const page = await legacy.request('GET', 'https://evilexample.test/.portcullis/login');
    const li = await legacy.request('POST', 'https://evilexample.test/.portcullis/login', { csrf: hiddenField(page.body, 'csrf')!, username: 'alice', password: PW });
    assert.equal(li.status, 303);
    const hostId = legacy.cookie('__Host-portcullis', 'evilexample.test')!.value;
    assert.equal((await legacy.gate('https://evilexample.test/')).kind, 'proxy');
    const carried = new Browser(pa, OFFICE);
    carried.cookies.push({ name: DOMAIN_COOKIE, value: hostId, domain: 'example.test', host: 'mail.example.test', attrs: new Map() });
    assert.equal((await carried.gate('https://mail.example.test/')).kind, 'signin');
  });
});

describe('without session.domain nothing changes', () => {
  it('per-host __Host-portcullis, no Domain; the login page is the host\'s own', async () => {
    const plain = await startPortalApp(CONFIG.replace(/^session:.*$/m, ''), { users: [{ name: 'alice', password: PW }] });
    try {
      const c = plain.client('mail.example.test', PROXY);
      c.extraHeaders['x-forwarded-for'] = OFFICE;
      c.extraHeaders['x-forwarded-proto'] = 'https';
      const r = await c.login('alice', PW, '/inbox');
      assert.equal(r.status, 303);
      assert.equal(r.location, '/inbox');
      const line = ([] as string[]).concat(r.headers['set-cookie'] as string | string[]).find((l) => l.startsWith('__Host-portcullis='));
      assert.ok(line);
      assert.equal(parseSetCookie(line).attrs.has('domain'), false);
      assert.equal(loginLocation(plain.rt.config, { proto: 'https', host: 'mail.example.test', target: '/x' }, false), '/.portcullis/login?rd=%2Fx');
      assert.equal((await plain.client('auth.example.test', OFFICE).get('/.portcullis/login')).status, 421);
    } finally {
      await plain.close();
    }
  });
});
