/**
 * Client-chosen inputs: for every decision the gateway makes, which inputs it reads, which of them
 * the client can set, and a test that varying every client-settable input never widens the answer.
 *
 * The attack class: a security decision that reads something the client chooses. The first
 * landing decided sign-in admission from `rd` (test/security/signin-admission.test.ts); the
 * WebSocket path judged one method and sent another (websocket-method.test.ts). Peers keep meeting
 * the same shape: oauth2-proxy's trusted-IP allowlist believed a client's X-Forwarded-For
 * (GHSA-7x63-xv5r-3p2x), its skip_auth_routes matched the wrong URL in forward-auth mode
 * (oauth2-proxy#1970), and its maintainers declined to match the query string for this very
 * reason (#2029: anyone could append `?public` to any URI); fastify-reply-from before 4.0.2
 * (CVE-2021-21321) let a crafted URL escape the prefix it forwarded, and @fastify/static
 * (GHSA-8pvw-jcv7-9cmj) had an authorization bypass via non-canonical URL paths: a guard that
 * read one spelling while the target served another. The habit that catches them: list the
 * inputs of each decision, mark the ones the client controls, and vary those.
 *
 * The decisions, their inputs, and which the client sets (C = client-settable, T = only from a
 * trusted proxy, S = server-side state the client cannot set):
 *
 * 1. Sign-in admission (login form GET/POST and every portal page; src/policy/admission.ts via
 *    signInAllowed): the client address (S from the peer; T for X-Forwarded-For / Forwarded /
 *    X-Real-IP), lockdown and lockdown.networks (S), the rules of the app named by Host (C: the
 *    client picks the app, and that app's own rules then decide). Not read: rd, the path or method
 *    of any target, the user name, X-Forwarded-Host (C, ignored).
 * 2. The gate in full-proxy mode (src/access/gate.ts): method (C), request-target (C; normalised
 *    or refused), Host (C; picks the app), client address (S/T), lockdown (S), the session cookie
 *    (C: its value; one parser, a duplicate name means no session), Authorization (C; Basic only
 *    on basic_auth paths), the user's groups and completed factors (S, from the session).
 * 3. Forward-auth (src/http/authz.ts): the peer address (S; must be a trusted proxy, else 400),
 *    X-Original-URL/-Method or X-Forwarded-Proto/-Host/-Uri/-Method (T), X-Forwarded-For (T),
 *    Cookie and Authorization (C, passed on by the proxy); then the same gate.
 * 4. The post-login redirect `rd` (src/portal/redirect.ts): rd itself (C, query or form) and the
 *    configured app hosts (S). Not read: Host, X-Forwarded-Host (C). The gate's own redirects
 *    carry the request-target (C, already normalised) as rd.
 * 5. The portal's CSRF/Origin check (src/portal/context.ts): Origin (C: a browser sets it, a forger
 *    may omit it), Host (C), X-Forwarded-Proto/-Host/-Port and Forwarded host (T), the form token
 *    and the CSRF cookie or the session's token (C, but a cross-site page cannot read them).
 * 6. The identity forwarded to the app (src/access/identity.ts, src/proxy/headers.ts): the
 *    session's or app password's user record (S); the user name typed at sign-in (C: spaces,
 *    letter case, compatibility forms) and the Basic user name (C) only select that record;
 *    Remote-* / X-Portcullis-* / X-Forwarded-* headers in any spelling and Connection (C) are
 *    only ever dropped.
 *
 * The properties: a denied network stays denied; an unauthenticated request never gets the app
 * from a protected path; the identity the app sees is the credential's owner, spelled as in the
 * users file; rd never leaves the configured hosts; a cross-origin form never passes because of a
 * header the client added. Mostly through `gate()` and `inject()`; over real sockets only where
 * the HTTP parser or the proxy path is part of the answer (note: `inject()` resolves dot segments
 * in the URL before fastify sees it, so path spellings of the portal are tested over sockets).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gate, type GateResult } from '../../src/access/gate.js';
import { generateCode } from '../../src/auth/totp.js';
import { normaliseRequestTarget } from '../../src/net/path.js';
import { upstreamRequestHeaders } from '../../src/proxy/headers.js';
import { startPortalApp, InjectClient, type PortalApp } from '../helpers/portal-app.js';
import { decodeEntities, hiddenField, PortalClient } from '../helpers/portal.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type EchoBody, type Upstream } from '../helpers/upstream.js';
import { rawHttp } from '../helpers/raw-http.js';

const OFFICE = '192.0.2.10';
const VPN = '198.51.100.20';
const OUTSIDE = '203.0.113.9';
const PROXY = '10.0.0.1';
const IPS = [OFFICE, VPN, OUTSIDE] as const;
const COOKIE = 'portcullis_dev_session';
const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const APP_PASSWORD = 'app-secret-1234-abcd';
const PW = { alice: 'correct horse battery staple', bob: 'tangerine otter quarry 41', dora: 'violet kettle harbour 77' };
const HOSTS = new Set(['mail.test', 'open.test']);

let pa: PortalApp;

before(async () => {
  pa = await startPortalApp(
    `
trusted_proxies: ["${PROXY}/32"]
networks: { office: ["192.0.2.0/24"], vpn: ["198.51.100.0/24"] }
lockdown: { networks: [office] }
totp: { enrol: { networks: [office] } }
login_limits:
  per_user: { max_failures: 3, window: 15m, lockout: 15m }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { paths: ["/public/**"], policy: bypass }
      - { paths: ["/admin/**"], networks: [office], groups: [admins], policy: password }
      - { paths: ["/admin/**"], policy: deny }
      - { methods: [DELETE], policy: deny }
      - { networks: [office], policy: password }
      - { networks: [vpn], policy: mfa }
      - { policy: deny }
    basic_auth: { paths: ["/dav/**"] }
  - name: open
    hosts: ["open.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { policy: bypass }
`,
    {
      users: [
        { name: 'alice', password: PW.alice, groups: ['staff'] },
        { name: 'bob', password: PW.bob, groups: ['admins'] },
        { name: 'dora', password: PW.dora, groups: ['staff'] },
      ],
    },
  );
  const rt = pa.rt;
  await rt.stores.state.setTotp('bob', { secret: rt.box.seal(SECRET, 'totp:bob'), enrolledAt: pa.clock.now(), source: 'provisioned' });
  await rt.stores.state.addAppPassword('alice', { label: 'phone', hash: rt.box.hmac('app-password', `alice\u0000${APP_PASSWORD}`), createdAt: 0 });
});

after(async () => pa?.close());

/** A clean slate between sections: throttle windows lapsed, no sessions, lockdown off. */
async function fresh(): Promise<void> {
  pa.rt.lockdown = { on: false, since: 0, by: '' };
  pa.clock.advance(2 * 60 * 60_000);
  await pa.rt.stores.sessions.deleteAll();
  pa.events.length = 0;
}

const inOffice = (ip: string) => ip.startsWith('192.0.2.');
const inVpn = (ip: string) => ip.startsWith('198.51.100.');
const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;
const under = (path: string, prefix: string) => path === prefix || path.startsWith(`${prefix}/`);

/** A Location (or rd, or link) that stays on this host or goes to a configured app host. */
function assertStaysHome(loc: string | undefined, what: string): void {
  if (loc === undefined) return;
  if (loc.startsWith('/')) {
    assert.ok(!loc.startsWith('//') && !loc.startsWith('/\\'), `${what}: protocol-relative ${loc}`);
    assert.equal(new URL(loc, 'http://portcullis.invalid').host, 'portcullis.invalid', `${what}: ${loc} leaves the host`);
    return;
  }
  const u = new URL(loc);
  assert.ok(u.protocol === 'http:' || u.protocol === 'https:', `${what}: scheme of ${loc}`);
  assert.equal(u.username + u.password, '', `${what}: userinfo in ${loc}`);
  assert.ok(HOSTS.has(u.hostname), `${what}: ${loc} is not on a configured host`);
}

// ---------------------------------------------------------------------------------------------
// 1. Sign-in admission
// ---------------------------------------------------------------------------------------------

describe('sign-in admission reads the address (from the peer, or a trusted proxy) and the app, nothing else', () => {
  before(fresh);

  /** GET the form and POST the right password with a made-up double-submit pair: 403, no session. */
  async function refused(c: InjectClient, what: string, rd = '/'): Promise<void> {
    const page = await c.get(`/.portcullis/login?rd=${encodeURIComponent(rd)}`);
    assert.equal(page.status, 403, `${what}: the login form`);
    assert.doesNotMatch(page.body, /name="password"/);
    const token = 'B'.repeat(32);
    c.jar.set('portcullis_dev_csrf', token);
    const r = await c.post('/.portcullis/login', { csrf: token, username: 'alice', password: PW.alice, rd });
    assert.equal(r.status, 403, `${what}: the password`);
    assert.equal(c.cookie(COOKIE), undefined, `${what}: no session`);
  }

  const SPOOFS: Array<Record<string, string>> = [
    { 'x-forwarded-for': OFFICE },
    { 'x-forwarded-for': `${OFFICE}, ${OFFICE}` },
    { forwarded: `for=${OFFICE}` },
    { 'x-real-ip': OFFICE },
    { 'x-client-ip': OFFICE },
    { 'true-client-ip': OFFICE },
    { 'cf-connecting-ip': OFFICE },
    { 'x-forwarded-host': 'open.test' },
    { 'x-forwarded-host': 'mail.test', 'x-forwarded-for': OFFICE, 'x-forwarded-proto': 'https' },
  ];

  it('an outsider with any forwarded header naming the office: no form, no password check', async () => {
    for (const h of SPOOFS) await refused(new InjectClient(pa.app, 'mail.test', OUTSIDE, h), JSON.stringify(h));
    assert.ok(!pa.events.some((e) => e.event === 'login_failed' || e.event === 'login_succeeded'), 'no password was looked at');
  });

  it('an outsider with any spelling of the Host, and any rd: refused', async () => {
    for (const host of ['MAIL.TEST', 'mail.test.', 'mail.test:8443', 'Mail.Test:80']) await refused(new InjectClient(pa.app, host, OUTSIDE), host);
    for (const rd of ['/public/x', '/admin/x', 'http://open.test/', '/.portcullis/account']) await refused(new InjectClient(pa.app, 'mail.test', OUTSIDE), `rd=${rd}`, rd);
  });

  it('a host whose app only bypasses admits nobody to sign in, whatever X-Forwarded-Host says, even through the trusted proxy', async () => {
    await refused(new InjectClient(pa.app, 'open.test', OFFICE), 'open.test from the office');
    await refused(new InjectClient(pa.app, 'open.test', OFFICE, { 'x-forwarded-host': 'mail.test' }), 'open.test + X-Forwarded-Host: mail.test');
    await refused(new InjectClient(pa.app, 'open.test', PROXY, { 'x-forwarded-for': OFFICE, 'x-forwarded-host': 'mail.test' }), 'via the proxy');
  });

  it('through the trusted proxy, a client-prepended office address is not the client', async () => {
    await refused(new InjectClient(pa.app, 'mail.test', PROXY, { 'x-forwarded-for': `${OFFICE}, ${OUTSIDE}` }), 'prepended');
    await refused(new InjectClient(pa.app, 'mail.test', PROXY, { forwarded: `for=${OFFICE}, for=${OUTSIDE}` }), 'prepended (Forwarded)');
    // the control: the proxy's own word is believed
    assert.equal((await new InjectClient(pa.app, 'mail.test', PROXY, { 'x-forwarded-for': OFFICE }).get('/.portcullis/login')).status, 200);
  });

  it('during lockdown, the vpn with a spoofed office address is refused', async () => {
    pa.rt.lockdown = { on: true, since: pa.clock.now(), by: 'test' };
    try {
      for (const h of SPOOFS.slice(0, 6)) await refused(new InjectClient(pa.app, 'mail.test', VPN, h), `lockdown ${JSON.stringify(h)}`);
      assert.equal((await new InjectClient(pa.app, 'mail.test', OFFICE).get('/.portcullis/login')).status, 200, 'the control: the office still signs in');
    } finally {
      pa.rt.lockdown = { on: false, since: 0, by: '' };
    }
  });
});

// ---------------------------------------------------------------------------------------------
// 2. The gate, called directly
// ---------------------------------------------------------------------------------------------

interface Who {
  label: string;
  sessionId?: string;
  authorization?: string;
  /** Whose identity this credential may carry (at most); null: none (the gate must treat it as anonymous). */
  owner: string | null;
  basic: boolean;
  factors: readonly string[];
  groups: readonly string[];
}

/** Spellings of paths that try to pass as /public/** or to dodge /admin/**, and plain ones. */
const TARGETS = [
  '/inbox',
  '/public/x',
  '/public',
  '/public/x?next=/admin/x',
  '/admin/x',
  '/admin',
  '/dav/cal',
  '/public/../admin/x',
  '/public/%2e%2e/admin/x',
  '/public/%2E%2E/admin/x',
  '/public/.%2e/admin/x',
  '/public/..%2fadmin/x',
  '/public%2f..%2fadmin/x',
  '/public/..;/admin/x',
  '/public;/../admin/x',
  '/public\\..\\admin/x',
  '/public/%5c..%5cadmin/x',
  '/public/%252e%252e/admin/x',
  '/public/%ef%bc%8e%ef%bc%8e/admin/x',
  '//public/../admin/x',
  '/./admin/x',
  '/%61dmin/x',
  '/admin%2fx',
  '/admin//x',
  '/admin/x/',
  '/ADMIN/x',
  '/public/x#/../../admin',
  'http://mail.test/public/x',
  '*',
  '',
  '/.portcullis/login',
  '/%2eportcullis/login',
];

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PROPFIND'];

/** Host header -> the app it may select (null: no app). */
const HOST_APPS: ReadonlyArray<[string, string | null]> = [
  ['mail.test', 'mail'],
  ['MAIL.TEST', 'mail'],
  ['mail.test.', 'mail'],
  ['mail.test:8443', 'mail'],
  ['Mail.Test:80', 'mail'],
  ['open.test', 'open'],
  ['evil.test', null],
  ['mail.test.evil.test', null],
  ['evil.test:mail.test', null],
  ['mail.test@evil.test', null],
  ['mail.test..', null],
  [' mail.test', null],
  ['', null],
];

/**
 * The most the gate may grant: an upper bound written from the rules, independent of the gate
 * (only the path's decoded form comes from the normaliser, which has its own property tests).
 */
function mayProxy(app: string | null, method: string, target: string, ip: string, who: Who, lockdown: boolean): boolean {
  if (app === null) return false;
  if (lockdown && !inOffice(ip)) return false;
  const p = normaliseRequestTarget(target);
  if (!p.ok) return false;
  if (under(p.path, '/.portcullis')) return false;
  if (app === 'open') return true;
  if (under(p.path, '/public')) return true;
  if (who.owner === null) return false;
  if (who.basic && !under(p.path, '/dav')) return false;
  if (under(p.path, '/admin')) return inOffice(ip) && who.groups.includes('admins');
  if (method === 'DELETE') return false;
  if (inOffice(ip)) return true;
  if (inVpn(ip)) return !who.basic && who.factors.includes('otp');
  return false;
}

describe('the gate: no client-settable input widens what the rules grant', () => {
  let WHO: Who[] = [];
  let proxied = 0;
  let proxiedProtected = 0;

  before(async () => {
    await fresh();
    const sessions = pa.rt.sessions;
    const mk = async (user: string, amr: Array<'pwd' | 'otp'>, pending: 'none' | 'mfa') => (await sessions.create({ user, amr, pending, ip: OFFICE, rd: '/' })).id;
    const alice = await mk('alice', ['pwd'], 'none');
    const bobPwd = await mk('bob', ['pwd'], 'none');
    const bobOtp = await mk('bob', ['pwd', 'otp'], 'none');
    const bobHalf = await mk('bob', ['pwd'], 'mfa');
    const anon = { owner: null, basic: false, factors: [], groups: [] };
    WHO = [
      { label: 'no credential', ...anon },
      { label: 'an id nobody issued', sessionId: 'A'.repeat(43), ...anon },
      { label: "alice's id, one character short", sessionId: alice.slice(0, -1), ...anon },
      { label: "alice's id, upper-cased", sessionId: alice.toUpperCase(), ...anon },
      { label: "bob's half-finished sign-in", sessionId: bobHalf, ...anon },
      { label: 'alice (password)', sessionId: alice, owner: 'alice', basic: false, factors: ['pwd'], groups: ['staff'] },
      { label: 'bob (password)', sessionId: bobPwd, owner: 'bob', basic: false, factors: ['pwd'], groups: ['admins'] },
      { label: 'bob (password and code)', sessionId: bobOtp, owner: 'bob', basic: false, factors: ['pwd', 'otp'], groups: ['admins'] },
      { label: "alice's app password", authorization: basic('alice', APP_PASSWORD), owner: 'alice', basic: true, factors: ['pwd'], groups: ['staff'] },
      { label: "alice's app password, lower-case scheme", authorization: `basic ${Buffer.from(`alice:${APP_PASSWORD}`).toString('base64')}`, owner: 'alice', basic: true, factors: ['pwd'], groups: ['staff'] },
      // alice's own secret under another spelling of her name: the gate may accept it or not, but
      // at most as alice, with alice's rights
      { label: "alice's app password as ' alice'", authorization: basic(' alice', APP_PASSWORD), owner: 'alice', basic: true, factors: ['pwd'], groups: ['staff'] },
      { label: "alice's app password as 'ALICE'", authorization: basic('ALICE', APP_PASSWORD), owner: 'alice', basic: true, factors: ['pwd'], groups: ['staff'] },
      { label: "alice's app password as 'bob'", authorization: basic('bob', APP_PASSWORD), ...anon },
      { label: "alice's account password over Basic", authorization: basic('alice', PW.alice), ...anon },
      { label: 'a Bearer token', authorization: 'Bearer abc', ...anon },
      { label: 'a Basic header that is not base64', authorization: 'Basic !!!', ...anon },
      { label: "an anonymous request carrying bob's id and alice's app password", sessionId: 'A'.repeat(43), authorization: basic('alice', APP_PASSWORD), owner: 'alice', basic: true, factors: ['pwd'], groups: ['staff'] },
    ];
  });

  async function check(app: string | null, method: string, target: string, host: string, ip: string, who: Who, lockdown = false): Promise<GateResult> {
    const r = await gate(pa.rt, pa.rt.config, { method, target, host, ip, proto: 'http', sessionId: who.sessionId, authorization: who.authorization });
    const what = `${method} ${JSON.stringify(target)} Host ${JSON.stringify(host)} from ${ip}, ${who.label}${lockdown ? ', lockdown' : ''}: ${r.kind}`;
    if (r.kind === 'proxy') {
      assert.ok(mayProxy(app, method, target, ip, who, lockdown), `widened: ${what}`);
      assert.equal(r.rawTarget, target, `${what}: the app gets exactly the target that was judged`);
      assert.equal(r.app.name, app, `${what}: routed to another app`);
      if (r.identity) assert.equal(r.identity.user.name, who.owner, `${what}: the identity is the credential's owner`);
      proxied++;
      if (app === 'mail' && !under((normaliseRequestTarget(target) as { path: string }).path, '/public')) proxiedProtected++;
    }
    if (r.kind === 'step') assertStaysHome(r.location, what);
    if (r.kind === 'signin') assertStaysHome(r.rd, what);
    return r;
  }

  it('the controls: the rules do grant what they say (so the bounds below are not vacuous)', async () => {
    const byLabel = (l: string) => WHO.find((w) => w.label === l)!;
    const grants: Array<[string, string, string, Who]> = [
      ['GET', '/inbox', OFFICE, byLabel('alice (password)')],
      ['GET', '/inbox', VPN, byLabel('bob (password and code)')],
      ['GET', '/admin/x', OFFICE, byLabel('bob (password)')],
      ['GET', '/dav/cal', OFFICE, byLabel("alice's app password")],
      ['GET', '/public/x', OUTSIDE, byLabel('no credential')],
    ];
    for (const [m, t, ip, who] of grants) assert.equal((await check('mail', m, t, 'mail.test', ip, who)).kind, 'proxy', `${m} ${t} from ${ip}, ${who.label}`);
    assert.equal((await check('mail', 'GET', '/inbox', 'mail.test', VPN, byLabel('bob (password)'))).kind, 'step', 'a password-only session steps up on the vpn');
  });

  it('every path spelling, from every network, with every credential', async () => {
    for (const target of TARGETS) for (const ip of IPS) for (const who of WHO) await check('mail', 'GET', target, 'mail.test', ip, who);
    // never proxied at all, whoever asks: the spellings that would let the app read another path
    for (const target of TARGETS.filter((t) => /\.\.|%2e|%5c|\\|;|\/\/|%2f|%25|%ef|#|^[^/]|^$/i.test(t))) {
      for (const who of WHO) assert.notEqual((await gate(pa.rt, pa.rt.config, { method: 'GET', target, host: 'mail.test', ip: OFFICE, proto: 'http', sessionId: who.sessionId, authorization: who.authorization })).kind, 'proxy', `${target}, ${who.label}`);
    }
  });

  it('every method, from every network, with every credential', async () => {
    for (const method of METHODS) for (const target of ['/inbox', '/public/x', '/admin/x', '/dav/cal']) for (const ip of IPS) for (const who of WHO) await check('mail', method, target, 'mail.test', ip, who);
  });

  it('every spelling of Host: the app it names or none, never another', async () => {
    for (const [host, app] of HOST_APPS) for (const target of ['/inbox', '/admin/x']) for (const ip of IPS) for (const who of WHO) await check(app, 'GET', target, host, ip, who);
  });

  it('during lockdown only lockdown.networks get anything, whatever the credential or path', async () => {
    pa.rt.lockdown = { on: true, since: pa.clock.now(), by: 'test' };
    try {
      for (const target of ['/inbox', '/public/x', '/admin/x', '/dav/cal']) for (const host of ['mail.test', 'open.test']) for (const ip of IPS) for (const who of WHO) await check(host === 'open.test' ? 'open' : 'mail', 'GET', target, host, ip, who, true);
    } finally {
      pa.rt.lockdown = { on: false, since: 0, by: '' };
    }
  });

  it('the bounds were exercised: grants happened, protected ones among them', () => {
    assert.ok(proxied > 100, `${proxied} requests were proxied`);
    assert.ok(proxiedProtected > 20, `${proxiedProtected} protected requests were proxied with a credential`);
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Forward-auth
// ---------------------------------------------------------------------------------------------

describe('forward-auth decides exactly as the gate, and believes its headers from the trusted proxy alone', () => {
  let alice = '';
  let bobOtp = '';

  before(async () => {
    await fresh();
    alice = (await pa.rt.sessions.create({ user: 'alice', amr: ['pwd'], pending: 'none', ip: OFFICE, rd: '/' })).id;
    bobOtp = (await pa.rt.sessions.create({ user: 'bob', amr: ['pwd', 'otp'], pending: 'none', ip: OFFICE, rd: '/' })).id;
  });

  function forwardAuth(peer: string, h: Record<string, string>) {
    return pa.app.inject({ method: 'GET', url: '/.portcullis/authz/forward-auth', remoteAddress: peer, headers: { host: '127.0.0.1', ...h } });
  }
  function authRequest(peer: string, h: Record<string, string>) {
    return pa.app.inject({ method: 'GET', url: '/.portcullis/authz/auth-request', remoteAddress: peer, headers: { host: '127.0.0.1', ...h } });
  }

  it('from the trusted proxy: 200 exactly when the gate would proxy the same request; a method not in upper case is malformed', async () => {
    const cookies: Array<[string, string | undefined, string | undefined]> = [
      ['no cookie', undefined, undefined],
      ['alice', `${COOKIE}=${alice}`, alice],
      ['bob (code)', `${COOKIE}=${bobOtp}`, bobOtp],
      ['alice twice', `${COOKIE}=${alice}; ${COOKIE}=${alice}`, undefined],
      ['alice under the https name', `__Host-portcullis=${alice}`, undefined],
    ];
    let ok = 0;
    for (const ip of IPS) {
      for (const uri of ['/inbox', '/public/x', '/admin/x', '/public/%2e%2e/admin/x', '/%61dmin/x', '/ADMIN/x', '/public/x?/../admin']) {
        for (const host of ['mail.test', 'MAIL.TEST', 'open.test']) {
          for (const method of ['GET', 'DELETE', 'get', 'Delete']) {
            for (const [label, cookie, sessionId] of cookies) {
              const h: Record<string, string> = { 'x-forwarded-proto': 'http', 'x-forwarded-host': host, 'x-forwarded-uri': uri, 'x-forwarded-method': method, 'x-forwarded-for': ip };
              if (cookie) h['cookie'] = cookie;
              const r = await forwardAuth(PROXY, h);
              const what = `${method} ${host}${uri} from ${ip}, ${label}: ${r.statusCode}`;
              if (!/^[A-Z]+$/.test(method)) {
                assert.equal(r.statusCode, 400, what);
                continue;
              }
              const g = await gate(pa.rt, pa.rt.config, { method, target: uri, host, ip, proto: 'http', sessionId, authorization: undefined });
              assert.equal(r.statusCode === 200, g.kind === 'proxy', `${what}; the gate says ${g.kind}`);
              if (r.statusCode === 200) ok++;
            }
          }
        }
      }
    }
    assert.ok(ok > 50, `${ok} requests were allowed: the comparison is not vacuous`);
  });

  it('from anyone else, whatever they claim and carry: 400 on both endpoints, never an identity', async () => {
    const claims = {
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'mail.test',
      'x-forwarded-uri': '/inbox',
      'x-forwarded-method': 'GET',
      'x-original-url': 'http://mail.test/inbox',
      'x-original-method': 'GET',
      'x-forwarded-for': OFFICE,
      forwarded: `for=${OFFICE}`,
      'x-real-ip': OFFICE,
      cookie: `${COOKIE}=${alice}`,
      authorization: basic('alice', APP_PASSWORD),
    };
    for (const peer of [...IPS, '10.0.0.2', '::ffff:10.0.0.2']) {
      for (const r of [await forwardAuth(peer, claims), await authRequest(peer, claims)]) {
        assert.equal(r.statusCode, 400, `peer ${peer}`);
        assert.ok(!r.headers['remote-user'], `peer ${peer}: an identity`);
      }
    }
    // the same request from the trusted proxy (and its IPv4-mapped form) passes: the control
    assert.equal((await forwardAuth(PROXY, claims)).statusCode, 200);
    assert.equal((await forwardAuth(`::ffff:${PROXY}`, claims)).statusCode, 200);
  });
});

// ---------------------------------------------------------------------------------------------
// 4. rd
// ---------------------------------------------------------------------------------------------

describe('rd never leaves the configured hosts, and never skips a step', () => {
  before(fresh);

  const RDS = [
    '/inbox',
    '/public/x',
    'http://open.test/x',
    'https://mail.test/y',
    'http://evil.example/',
    '//evil.example/',
    '/\\evil.example',
    'http://mail.test.evil.example/',
    'http://open.test@evil.example/',
    'https:/evil.example',
    '/%2f%2fevil.example',
  ];
  const UNTRUSTED_HOST_CLAIMS: Array<Record<string, string>> = [{}, { 'x-forwarded-host': 'evil.example' }, { forwarded: 'host=evil.example' }, { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', 'x-forwarded-port': '8443' }];

  it('after the password: whatever rd, Host spelling and X-Forwarded-Host an untrusted client sends', async () => {
    let n = 0;
    for (const host of ['mail.test', 'MAIL.TEST', 'mail.test.', 'mail.test:8443']) {
      for (const extra of UNTRUSTED_HOST_CLAIMS) {
        for (const rd of RDS) {
          const c = new InjectClient(pa.app, host, OFFICE, extra);
          const page = await c.get(`/.portcullis/login?rd=${encodeURIComponent(rd)}`);
          assert.equal(page.status, 200);
          assertStaysHome(hiddenField(page.body, 'rd') ?? undefined, `the form's rd for ${rd}`);
          // the form as the page wrote it, and as an attacker rewrote it
          for (const formRd of [hiddenField(page.body, 'rd'), rd]) {
            const fields: Record<string, string> = { csrf: hiddenField(page.body, 'csrf')!, username: 'alice', password: PW.alice };
            if (formRd !== null) fields['rd'] = formRd;
            const r = await c.post('/.portcullis/login', fields);
            assert.equal(r.status, 303, `${host} ${JSON.stringify(extra)} rd=${rd}`);
            assertStaysHome(r.location, `${host} ${JSON.stringify(extra)} rd=${rd}`);
            n++;
          }
        }
      }
    }
    assert.ok(n > 300);
  });

  it('rd naming a bypass path or another app does not skip the second factor', async () => {
    for (const rd of ['/public/x', 'http://open.test/', '/.portcullis/account', '/']) {
      const c = new InjectClient(pa.app, 'mail.test', VPN);
      const r = await c.login('bob', PW.bob, rd);
      assert.equal(r.status, 303, rd);
      assert.equal(r.location, '/.portcullis/mfa', `rd=${rd}`);
      const g = await gate(pa.rt, pa.rt.config, { method: 'GET', target: '/inbox', host: 'mail.test', ip: VPN, proto: 'http', sessionId: c.cookie(COOKIE), authorization: undefined });
      assert.equal(g.kind, 'step', `rd=${rd}: the half-signed-in session opens nothing`);
    }
  });

  it('after the second factor, with rd changed on the way (the mfa page takes one too)', async () => {
    const t = pa.rt.config.totp;
    for (const rd of RDS) {
      const c = new InjectClient(pa.app, 'mail.test', VPN, { 'x-forwarded-host': 'evil.example' });
      assert.equal((await c.login('bob', PW.bob, rd)).location, '/.portcullis/mfa');
      const page = await c.get(`/.portcullis/mfa?rd=${encodeURIComponent(rd === '/inbox' ? 'http://evil.example/' : rd)}`);
      assert.equal(page.status, 200);
      pa.clock.advance(t.period * 1000 * 3); // a fresh time step for each sign-in (steps are used once)
      const code = generateCode(SECRET, { time: pa.clock.now(), period: t.period, digits: t.digits, algorithm: t.algorithm });
      const r = await c.post('/.portcullis/mfa', { csrf: hiddenField(page.body, 'csrf')!, code });
      assert.equal(r.status, 303, `rd=${rd}: ${r.body.slice(0, 200)}`);
      assertStaysHome(r.location, `after the code, rd=${rd}`);
      // an already complete session asked again with a hostile rd
      const again = await c.get(`/.portcullis/mfa?rd=${encodeURIComponent(rd)}`);
      assertStaysHome(again.location, `mfa again, rd=${rd}`);
      for (const m of again.body.matchAll(/href="([^"]*)"/g)) assertStaysHome(decodeEntities(m[1]!), `a link, rd=${rd}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// 5. CSRF / Origin
// ---------------------------------------------------------------------------------------------

describe('the Origin check reads forwarded host and port from the trusted proxy alone', () => {
  before(fresh);

  const FOREIGN = ['http://evil.example', 'null', 'http://mail.test.evil.example', 'http://mail.test:8443', 'https://mail.test', 'http://open.test', 'http://evil.example/mail.test', 'http://mail.test@evil.example'];
  const CLAIMS: Array<Record<string, string>> = [
    {},
    { 'x-forwarded-host': 'evil.example' },
    { 'x-forwarded-host': 'open.test' },
    { forwarded: 'host=evil.example;proto=https' },
    { 'x-forwarded-port': '8443' },
    { 'x-forwarded-proto': 'https' },
    { 'x-forwarded-host': 'mail.test.evil.example', 'x-forwarded-port': '8443', 'x-forwarded-proto': 'https' },
  ];

  /** The right password with a valid double-submit pair: only the Origin (and the claims) can refuse it. */
  async function loginWith(host: string, origin: string | undefined, claims: Record<string, string>) {
    const c = new InjectClient(pa.app, host, OFFICE, claims);
    const page = await c.get('/.portcullis/login');
    assert.equal(page.status, 200);
    const r = await c.post('/.portcullis/login', { csrf: hiddenField(page.body, 'csrf')!, username: 'alice', password: PW.alice }, origin === undefined ? {} : { origin });
    return { c, r };
  }

  it('a foreign Origin is refused however the untrusted client describes the external host', async () => {
    for (const origin of FOREIGN) {
      for (const claims of CLAIMS) {
        const { c, r } = await loginWith('mail.test', origin, claims);
        assert.equal(r.status, 403, `Origin ${origin} with ${JSON.stringify(claims)}: ${r.status}`);
        assert.equal(c.cookie(COOKIE), undefined, 'no session');
      }
    }
    assert.ok(pa.events.filter((e) => e.event === 'csrf_refused').length >= FOREIGN.length * CLAIMS.length, 'each refusal is audited');
  });

  it("the controls: no Origin, or this page's own origin in any Host spelling, signs in", async () => {
    for (const [host, origin] of [['mail.test', undefined], ['mail.test', 'http://mail.test'], ['MAIL.TEST', 'http://mail.test'], ['mail.test:8443', 'http://mail.test:8443']] as const) {
      const { r } = await loginWith(host, origin, { 'x-forwarded-host': 'evil.example' });
      assert.equal(r.status, 303, `${host} Origin ${origin}`);
    }
  });

  it('a signed-in form (logout) from a foreign Origin is refused and the session lives on, whatever X-Forwarded-Host says', async () => {
    const c = new InjectClient(pa.app, 'mail.test', OFFICE, { 'x-forwarded-host': 'evil.example' });
    assert.equal((await c.login('alice', PW.alice)).status, 303);
    const page = await c.get('/.portcullis/logout');
    const csrf = hiddenField(page.body, 'csrf')!;
    const r = await c.post('/.portcullis/logout', { csrf }, { origin: 'http://evil.example' });
    assert.equal(r.status, 403);
    const g = await gate(pa.rt, pa.rt.config, { method: 'GET', target: '/inbox', host: 'mail.test', ip: OFFICE, proto: 'http', sessionId: c.cookie(COOKIE), authorization: undefined });
    assert.equal(g.kind, 'proxy', 'the session was not ended');
  });
});

// ---------------------------------------------------------------------------------------------
// 6. The identity forwarded to the app
// ---------------------------------------------------------------------------------------------

describe('the identity the app sees is the owner of the credential, as spelled in the users file', () => {
  before(fresh);

  it('a user name typed with spaces, in another case or in compatibility form: alice or nobody, never another spelling', async () => {
    let signedIn = 0;
    for (const typed of [' alice ', 'alice\t', 'ALICE', 'Alice', '\uff41\uff4c\uff49\uff43\uff45', 'alice\u200b', 'al\u0131ce']) {
      // each spelling on a clean throttle (the windows lapse): the per-user bucket folds some
      // spellings into alice's (as a directory does: the zero-width space is dropped), and the
      // failures of the spellings before would otherwise answer 429 before any credential check
      await fresh();
      const c = new InjectClient(pa.app, 'mail.test', OFFICE);
      const r = await c.login(typed, PW.alice);
      assert.ok([303, 401].includes(r.status), `${JSON.stringify(typed)}: ${r.status}`);
      if (r.status === 303) signedIn++;
      if (r.status !== 303) {
        assert.equal(c.cookie(COOKIE), undefined);
        continue;
      }
      const g = await gate(pa.rt, pa.rt.config, { method: 'GET', target: '/inbox', host: 'mail.test', ip: OFFICE, proto: 'http', sessionId: c.cookie(COOKIE), authorization: undefined });
      assert.equal(g.kind, 'proxy');
      assert.equal(g.kind === 'proxy' && g.identity?.user.name, 'alice', `${JSON.stringify(typed)} signed in as someone else`);
    }
    assert.ok(signedIn > 0, 'the loop checked whose identity the app sees at least once');
  });

  it("a locked account is not reopened by spelling its name differently", async () => {
    const c = new InjectClient(pa.app, 'mail.test', OFFICE);
    for (let i = 0; i < 3; i++) assert.equal((await c.login('dora', `wrong guess ${i}`)).status, 401);
    for (const typed of ['dora', ' dora', 'dora ', 'DORA', 'Dora', '\uff44\uff4f\uff52\uff41']) {
      const r = await new InjectClient(pa.app, 'mail.test', OFFICE).login(typed, PW.dora);
      assert.notEqual(r.status, 303, `${JSON.stringify(typed)} got in past the lock`);
    }
  });

  it('every spelling of every gateway header, and Connection naming them, leaves exactly the gateway identity', () => {
    const RESERVED = ['remote-user', 'remote-groups', 'remote-email', 'remote-name', 'x-portcullis-assertion', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-prefix', 'x-forwarded-uri', 'x-forwarded-method', 'x-forwarded-server', 'x-original-url', 'x-original-method', 'x-real-ip', 'x-client-ip', 'forwarded'];
    const spellings = (name: string): string[] => {
      let out = [''];
      for (const ch of name) out = out.flatMap((s) => (ch === '-' ? [`${s}-`, `${s}_`, `${s}.`] : [s + ch]));
      return out;
    };
    const fold = (k: string) => k.replace(/[_.]/g, '-');
    const inbound: Record<string, string> = { accept: 'text/html', cookie: `${COOKIE}=secret; theme=dark` };
    let n = 0;
    for (const r of RESERVED) for (const s of spellings(r)) inbound[s] = `forged-${n++}`;
    assert.ok(n > 50);
    const identity = { prepared: { user: 'alice', groups: 'staff', email: 'alice@example.org', name: '' }, assertion: 'signed.jwt.here' };
    for (const connection of [undefined, 'close', 'keep-alive, remote-user, remote-groups, x-forwarded-for, x-portcullis-assertion, x-forwarded-host, x-forwarded-proto']) {
      for (const id of [identity, null]) {
        const h = { ...inbound, ...(connection ? { connection } : {}) };
        const out = upstreamRequestHeaders(h, { clientIp: OFFICE, proto: 'https', host: 'mail.test', identity: id, sessionCookie: COOKIE, dropAuthorization: false });
        const what = `Connection: ${connection}, identity: ${id ? 'alice' : 'none'}`;
        assert.ok(!JSON.stringify(out).includes('forged-'), `${what}: a forged value reached the app: ${JSON.stringify(out)}`);
        const reservedOut = Object.keys(out).filter((k) => RESERVED.includes(fold(k)));
        const want = ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', ...(id ? ['remote-groups', 'remote-email', 'remote-user', 'x-portcullis-assertion'] : [])];
        assert.deepEqual(reservedOut.sort(), want.sort(), what);
        assert.equal(out['x-forwarded-for'], OFFICE);
        assert.equal(out['x-forwarded-host'], 'mail.test');
        if (id) assert.equal(out['remote-user'], 'alice');
        assert.equal(out['cookie'], 'theme=dark', `${what}: the gateway cookie is not passed on`);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Over real sockets, where the HTTP parser and the proxy path are part of the answer
// ---------------------------------------------------------------------------------------------

describe('over real sockets', () => {
  const S_OFFICE = '127.0.0.1';
  const S_OUTSIDE = '127.0.0.2';
  const S_PROXY = '127.0.0.3';
  let up: Upstream;
  let gw: TestGateway;
  let aliceCookie = '';

  before(async () => {
    up = await startUpstream();
    gw = await startTestGateway(
      `
trusted_proxies: ["${S_PROXY}/32"]
networks: { office: ["${S_OFFICE}/32"] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    rules:
      - { paths: ["/public/**"], policy: bypass }
      - { methods: [DELETE], policy: deny }
      - { networks: [office], policy: password }
      - { policy: deny }
  - name: open
    hosts: ["open.test"]
    upstream: "${up.url}"
    rules:
      - { policy: bypass }
`,
      { users: [{ name: 'alice', password: PW.alice, groups: ['staff'] }] },
    );
    const c = new PortalClient(gw.port, 'mail.test', { localAddress: S_OFFICE });
    // typed with spaces around it: the session is alice's all the same
    assert.equal((await c.login(' alice ', PW.alice, '/')).status, 303);
    aliceCookie = `${COOKIE}=${c.cookie(COOKIE)}`;
  });

  after(async () => {
    await gw?.close();
    await up?.close();
  });

  const send = (method: string, target: string, host: string, from: string, extra: string[] = []) =>
    rawHttp(gw.port, [`${method} ${target} HTTP/1.1`, `Host: ${host}`, 'Connection: close', ...extra, '', ''].join('\r\n'), { localAddress: from });

  it('the app sees the user as spelled in the users file, whatever was typed at sign-in', async () => {
    const r = await send('GET', '/inbox', 'mail.test', S_OFFICE, [`Cookie: ${aliceCookie}`]);
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.body) as EchoBody).headers['remote-user'], 'alice');
  });

  it('a method in another letter case is not HTTP: 400, never a way past a method rule', async () => {
    const before = up.requests.length;
    assert.equal((await send('DELETE', '/inbox', 'mail.test', S_OFFICE, [`Cookie: ${aliceCookie}`])).status, 403, 'the rule');
    for (const m of ['delete', 'Delete', 'dElEtE', 'get', 'GeT']) {
      const r = await send(m, '/inbox', 'mail.test', S_OFFICE, [`Cookie: ${aliceCookie}`]);
      assert.equal(r.status, 400, m);
    }
    assert.equal(up.requests.length, before, 'none reached the app');
    assert.equal((await send('GET', '/inbox', 'mail.test', S_OFFICE, [`Cookie: ${aliceCookie}`])).status, 200, 'the control');
  });

  it('no spelling of the portal path gives an outsider the login form, or reaches the app', async () => {
    const before = up.requests.length;
    for (const p of ['/.portcullis/login', '/.portcullis/./login', '/.portcullis//login', '/.portcullis/%6cogin', '/%2eportcullis/login', '/.PORTCULLIS/login', '/.portcullis/login/', '/.portcullis/login;x', '/.portcullis/login%2f', '/public/../.portcullis/login', '/public/%2e%2e/.portcullis/login']) {
      for (const from of [S_OUTSIDE]) {
        const r = await send('GET', p, 'mail.test', from, ['X-Forwarded-For: 127.0.0.1']);
        assert.notEqual(r.status, 200, `${p} from ${from}`);
        assert.doesNotMatch(r.body, /name="password"/, p);
      }
    }
    assert.equal(up.requests.length, before, 'none reached the app');
  });

  it('Host picks the app, X-Forwarded-Host from an untrusted peer picks nothing', async () => {
    const before = up.requests.length;
    for (const host of ['mail.test', 'MAIL.TEST', 'mail.test.', 'mail.test:80']) {
      const r = await send('GET', '/inbox', host, S_OUTSIDE, ['X-Forwarded-Host: open.test', 'Forwarded: host=open.test']);
      assert.equal(r.status, 403, `Host ${host}: a denied network stays denied`);
    }
    assert.equal(up.requests.length, before);
    const open = await send('GET', '/x', 'open.test', S_OUTSIDE, ['X-Forwarded-Host: mail.test']);
    assert.equal(open.status, 200);
    const seen = JSON.parse(open.body) as EchoBody;
    assert.equal(seen.headers['x-forwarded-host'], 'open.test', 'the app is told the host that was judged');
    assert.equal(seen.headers['remote-user'], undefined);
  });

  it('no address header but X-Forwarded-For, Forwarded and X-Real-IP is read, and those from trusted proxies only', async () => {
    const before = up.requests.length;
    const claims = ['X-Client-IP', 'True-Client-IP', 'CF-Connecting-IP', 'X-Originating-IP', 'X-Cluster-Client-IP', 'Forwarded-For', 'X-Forwarded', 'Client-IP'];
    for (const from of [S_OUTSIDE, S_PROXY]) {
      for (const h of claims) {
        const r = await send('GET', '/inbox', 'mail.test', from, [`${h}: ${S_OFFICE}`, `Cookie: ${aliceCookie}`]);
        assert.equal(r.status, 403, `${h} from ${from}`);
      }
    }
    assert.equal(up.requests.length, before);
  });

  it('no spelling of the session cookie but the one it was issued under opens a protected path', async () => {
    const id = aliceCookie.slice(aliceCookie.indexOf('=') + 1);
    const before = up.requests.length;
    for (const cookie of [
      `${COOKIE}=${id}; ${COOKIE}=${id}`,
      `${COOKIE}=${id}; ${COOKIE} =x`,
      `__Host-portcullis=${id}`,
      `${COOKIE.toUpperCase()}=${id}`,
      `${COOKIE}="${id}"`,
      `${COOKIE}2=${id}`,
      `x${COOKIE}=${id}`,
    ]) {
      const r = await send('GET', '/inbox', 'mail.test', S_OFFICE, [`Cookie: ${cookie}`]);
      assert.notEqual(r.status, 200, cookie);
    }
    assert.equal(up.requests.length, before);
  });
});
