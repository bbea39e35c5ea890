/**
 * The gateway beside a real nginx, as an admin who already runs nginx would deploy it: nginx
 * serves the app and asks `/.portcullis/authz/auth-request` about every request (`auth_request`),
 * and proxies `/.portcullis/` (login, logout) to the gateway. nginx runs on 127.0.0.1, which is
 * the gateway's one trusted proxy, so the client address nginx forwards is believed, and nothing
 * from anyone else is.
 *
 * Signed out, a browser is sent to the login page with `rd` back to where it was going; signed
 * in, the app sees the user and a verifiable assertion, never the identity a client made up; a
 * refused network stays refused; after logout the app is closed again. The endpoints themselves:
 * a missing or malformed X-Original-URL is a 400 (never a 200, not even with a good cookie), an
 * unknown host a 403; the forward-auth endpoint (Traefik, Caddy, HAProxy) redirects browsers
 * (302), tells API clients 401, and answers an untrusted peer 400.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { startUpstream, type EchoBody, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { authRequestConfig, nginxSkip, startNginx, type Nginx } from '../helpers/nginx.js';
import { PortalClient } from '../helpers/portal.js';
import { rawHttp } from '../helpers/raw-http.js';

const skip = nginxSkip();
const PASSWORD = 'amber lantern orchid gravel 1987';
const COOKIE = 'portcullis_dev_session';
const CLIENT = '127.0.0.2';
const ELSEWHERE = '127.0.0.4';

let up: Upstream;
let gw: TestGateway;
let ng: Nginx;

before(async () => {
  if (skip) return;
  up = await startUpstream();
  gw = await startTestGateway(
    `
trusted_proxies: ["127.0.0.1/32"]
networks: { office: ["127.0.0.1/32", "${CLIENT}/32"] }
apps:
  - name: app
    hosts: ["app.test"]
    upstream: "${up.url}"
    rules:
      - { paths: ["/healthz"], policy: bypass }
      - { networks: [office], policy: password }
      - { policy: deny }
    basic_auth: { paths: ["/Microsoft-Server-ActiveSync"] }
`,
    { users: [{ name: 'alice', password: PASSWORD, groups: ['staff', 'mail'], email: 'alice@example.org' }] },
  );
  ng = await startNginx({ config: (port) => authRequestConfig({ listenPort: port, gatewayUrl: gw.url, appUrl: up.url }) });
});

after(async () => {
  await ng?.stop();
  await gw?.close();
  await up?.close();
});

/** A browser talking to nginx from `from`. */
const browser = (from = CLIENT) => new PortalClient(ng.port, 'app.test', { localAddress: from });

/** A request straight to the gateway, as a proxy (127.0.0.1, trusted) or anyone else would send it. */
function toGateway(path: string, headers: string[], from = '127.0.0.1') {
  return rawHttp(gw.port, [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close', ...headers, '', ''].join('\r\n'), { localAddress: from });
}

async function signedInCookie(): Promise<string> {
  const c = browser();
  const r = await c.login('alice', PASSWORD);
  assert.equal(r.status, 303, r.body);
  return c.cookie(COOKIE)!;
}

test('signed out: nginx sends the browser to the login page and the app sees nothing', { skip }, async () => {
  const before = up.requests.length;
  const r = await browser().navigate('/inbox?folder=1');
  assert.equal(r.status, 302);
  assert.equal(r.headers.location, `http://app.test/.portcullis/login?rd=${encodeURIComponent('http://app.test/inbox?folder=1')}`);
  // auth_request knows only 2xx/401/403: the gateway answers 401 + Location, and this nginx
  // config redirects whenever a Location is given (Basic paths get no Location, see signin tests)
  const api = await browser().get('/inbox');
  assert.equal(api.status, 302);
  assert.equal(up.requests.length, before);
  assert.equal((await browser().get('/healthz')).status, 200, 'bypass rules pass through nginx too');
});

test('signed in through nginx: the app gets the identity and a verifiable assertion, never a forged one; logout closes it', { skip }, async () => {
  const c = browser();
  const login = await c.login('alice', PASSWORD, 'http://app.test/inbox');
  assert.equal(login.status, 303);
  assert.equal(login.headers.location, 'http://app.test/inbox');
  const before = up.requests.length;
  const r = await c.get('/inbox', { headers: ['Remote-User: mallory', 'Remote-Groups: admins', 'X-Portcullis-Assertion: forged', 'Remote_User: mallory'] });
  assert.equal(r.status, 200, r.body);
  const app = JSON.parse(r.body) as EchoBody;
  assert.equal(app.url, '/inbox');
  assert.equal(app.headers['remote-user'], 'alice');
  assert.equal(app.headers['remote-groups'], 'staff,mail');
  assert.equal(app.headers['remote-email'], 'alice@example.org');
  assert.equal(app.headers['x-forwarded-for'], CLIENT);
  assert.ok(!JSON.stringify(app.rawHeaders).includes('mallory'), 'the forged identity never reaches the app');
  assert.equal(up.requests.length, before + 1);

  const jwks = createLocalJWKSet(JSON.parse((await toGateway('/.portcullis/jwks.json', [])).body) as JSONWebKeySet);
  const { payload } = await jwtVerify(String(app.headers['x-portcullis-assertion']), jwks, { issuer: 'portcullis', audience: 'app' });
  assert.equal(payload.sub, 'alice');
  assert.deepEqual(payload['amr'], ['pwd']);
  assert.equal(payload['ip'], CLIENT);

  const out = await c.logout();
  assert.equal(out.status, 200);
  const after = await c.navigate('/inbox');
  assert.equal(after.status, 302);
  assert.match(after.headers.location!, /\/\.portcullis\/login\?rd=/);
  assert.equal(up.requests.length, before + 1);
});

test('a refused network stays refused behind nginx, even signed in', { skip }, async () => {
  const c = browser(ELSEWHERE);
  const page = await c.get('/.portcullis/login');
  assert.equal(page.status, 403, 'no sign-in form for a network no rule admits');
  const cookie = await signedInCookie();
  const before = up.requests.length;
  const r = await c.request('GET', '/inbox', { cookieHeader: `${COOKIE}=${cookie}` });
  assert.equal(r.status, 403);
  assert.equal(up.requests.length, before);
});

test('an app password over Basic passes nginx on the basic_auth path; a wrong one gets the Basic challenge', { skip }, async () => {
  const rt = gw.gw.rt;
  const appPw = 'phone-' + Buffer.from(rt.random.bytes(20)).toString('hex');
  await rt.stores.state.addAppPassword('alice', { label: 'nginx-phone', hash: rt.box.hmac('app-password', `alice\u0000${appPw}`), createdAt: Date.now() });
  const basic = (pw: string) => `Authorization: Basic ${Buffer.from(`alice:${pw}`).toString('base64')}`;
  const ok = await browser().get('/Microsoft-Server-ActiveSync', { headers: [basic(appPw)] });
  assert.equal(ok.status, 200, ok.body);
  assert.equal((JSON.parse(ok.body) as EchoBody).headers['remote-user'], 'alice');
  const before = up.requests.length;
  const bad = await browser().get('/Microsoft-Server-ActiveSync', { headers: [basic('wrong')] });
  assert.equal(bad.status, 401);
  assert.match(bad.headers['www-authenticate'] ?? '', /^Basic realm="app"/);
  assert.equal(bad.headers.location, undefined);
  assert.equal(up.requests.length, before);
});

test('auth-request: a missing or malformed X-Original-URL is 400, an unknown host 403, never 200', { skip }, async () => {
  const cookie = `Cookie: ${COOKIE}=${await signedInCookie()}`;
  const xff = `X-Forwarded-For: ${CLIENT}`;
  const ok = await toGateway('/.portcullis/authz/auth-request', ['X-Original-URL: http://app.test/inbox', 'X-Original-Method: GET', xff, cookie]);
  assert.equal(ok.status, 200, 'the control: a good request with a good cookie passes');
  assert.equal(ok.headers['remote-user'], 'alice');
  assert.ok(ok.headers['x-portcullis-assertion']);

  const out = await toGateway('/.portcullis/authz/auth-request', ['X-Original-URL: http://app.test/inbox', xff]);
  assert.equal(out.status, 401);
  assert.match(out.headers.location!, /^http:\/\/app\.test\/\.portcullis\/login\?rd=/);

  const malformed: Array<[string[], number[]]> = [
    [[], [400]],
    [['X-Original-URL:'], [400]],
    [['X-Original-URL: /inbox'], [400]],
    [['X-Original-URL: app.test/inbox'], [400]],
    [['X-Original-URL: ftp://app.test/inbox'], [400]],
    [['X-Original-URL: http://user@app.test/inbox'], [400]],
    [['X-Original-URL: http://app.test\\inbox'], [400]],
    [['X-Original-URL: http://app.test/in box'], [400]],
    [['X-Original-URL: http://app.test/a/../inbox'], [400]],
    [['X-Original-URL: http://app.test/%2e%2e/inbox'], [400]],
    [['X-Original-URL: http://app.test/a%2fb'], [400]],
    [['X-Original-URL: http://app.test//inbox'], [400]],
    [['X-Original-URL: http://app.test/inbox', 'X-Original-URL: http://evil.example/'], [400]],
    [['X-Original-URL: http://app.test/inbox', 'X-Original-Method: get'], [400]],
    [['X-Original-URL: http://app.test/inbox', 'X-Original-Method: GET POST'], [400]],
    [['X-Original-URL: http://app.test:99999/inbox'], [400, 403]],
    [['X-Original-URL: http://evil.example/inbox'], [403]],
    [['X-Original-URL: http://app.test.evil.example/inbox'], [403]],
  ];
  for (const [h, want] of malformed) {
    const r = await toGateway('/.portcullis/authz/auth-request', [...h, xff, cookie]);
    assert.ok(want.includes(r.status), `${JSON.stringify(h)}: ${r.status}, wanted ${want.join(' or ')}`);
    assert.equal(r.headers['remote-user'], undefined);
  }

  // an empty path is the root, as in any http URL (nginx always sends one)
  const root = await toGateway('/.portcullis/authz/auth-request', ['X-Original-URL: http://app.test', xff]);
  assert.equal(root.status, 401);
  assert.equal(root.headers.location, `http://app.test/.portcullis/login?rd=${encodeURIComponent('http://app.test/')}`);

  // from a peer that is not a trusted proxy, nothing is believed: 400, even with a good cookie
  const untrusted = await toGateway('/.portcullis/authz/auth-request', ['X-Original-URL: http://app.test/inbox', xff, cookie], CLIENT);
  assert.equal(untrusted.status, 400);
  assert.equal(untrusted.headers['remote-user'], undefined);
});

test('forward-auth (X-Forwarded-*): browsers 302, API clients 401, signed in 200, untrusted peer 400', { skip }, async () => {
  const fwd = (uri: string, method = 'GET') => ['X-Forwarded-Proto: https', 'X-Forwarded-Host: app.test', `X-Forwarded-Uri: ${uri}`, `X-Forwarded-Method: ${method}`, `X-Forwarded-For: ${CLIENT}`];
  const html = 'Accept: text/html,application/xhtml+xml';

  const b = await toGateway('/.portcullis/authz/forward-auth', [...fwd('/inbox?x=1'), html]);
  assert.equal(b.status, 302);
  assert.equal(b.headers.location, `https://app.test/.portcullis/login?rd=${encodeURIComponent('https://app.test/inbox?x=1')}`);
  const api = await toGateway('/.portcullis/authz/forward-auth', fwd('/api/items'));
  assert.equal(api.status, 401);
  assert.equal(api.headers.location, undefined);
  const post = await toGateway('/.portcullis/authz/forward-auth', [...fwd('/inbox', 'POST'), html]);
  assert.equal(post.status, 401, 'a form post is not redirected (it would be replayed as a GET)');

  // signed in over https: the __Host- cookie
  const https = new PortalClient(gw.port, 'app.test', { localAddress: '127.0.0.1', headers: [`X-Forwarded-For: ${CLIENT}`, 'X-Forwarded-Proto: https'] });
  assert.equal((await https.login('alice', PASSWORD)).status, 303);
  const hostCookie = https.cookie('__Host-portcullis');
  assert.ok(hostCookie);
  const ok = await toGateway('/.portcullis/authz/forward-auth', [...fwd('/inbox'), `Cookie: __Host-portcullis=${hostCookie}`]);
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['remote-user'], 'alice');
  assert.equal(ok.headers['remote-groups'], 'staff,mail');

  const untrusted = await toGateway('/.portcullis/authz/forward-auth', [...fwd('/inbox'), `Cookie: __Host-portcullis=${hostCookie}`], CLIENT);
  assert.equal(untrusted.status, 400);
  assert.equal(untrusted.headers['remote-user'], undefined);
  for (const drop of ['X-Forwarded-Uri', 'X-Forwarded-Host', 'X-Forwarded-Proto']) {
    const r = await toGateway('/.portcullis/authz/forward-auth', [...fwd('/inbox'), `Cookie: __Host-portcullis=${hostCookie}`].filter((h) => !h.startsWith(drop)));
    assert.equal(r.status, 400, `without ${drop}`);
  }
  const bad = await toGateway('/.portcullis/authz/forward-auth', [...fwd('/a/../inbox'), `Cookie: __Host-portcullis=${hostCookie}`]);
  assert.equal(bad.status, 400);
});
