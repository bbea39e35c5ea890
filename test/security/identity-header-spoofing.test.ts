/**
 * Identity-header spoofing: a client telling the app who it is.
 *
 * The attack: the app behind the gateway believes `Remote-User`, `Remote-Groups`,
 * `Remote-Email`, `Remote-Name` and `X-Portcullis-Assertion`, because the gateway sets them. A
 * client that sends its own `Remote-User: bob` (or `remote_user`, `REMOTE.USER`: many stacks fold
 * `_`, `.` and `-` together, CGI/WSGI/PHP read all of them as `HTTP_REMOTE_USER`) is bob to an app
 * whose gateway only replaced the exact spelling it writes, and on a bypass path (no identity at
 * all) the client's header is the only one. The hop-by-hop twist: a client that names a header
 * in `Connection` asks every proxy to drop it, which turns "the proxy always sets X" into "the
 * client can remove X" (Apache httpd CVE-2022-31813, mod_proxy dropping X-Forwarded-* named in
 * Connection, an IP-based authentication bypass; Nathan Davison's "hop-by-hop header abuse",
 * 2019). Peers: traefik/traefik#12961 ("Remove untrusted X headers with underscores"), and
 * caddyserver/caddy#6608 (forward_auth `copy_headers`: when the auth service sends no
 * Remote-User, the app saw a literal placeholder, or else whatever the client had sent).
 *
 * The safe answer: every header whose name is one of the gateway's (identity and forwarding
 * headers) is dropped from the client's request in any letter case and with `_` or `.` in place
 * of `-`; every header the client names in Connection is dropped too, but that never removes what
 * the gateway itself adds; then the gateway sets its own identity, exactly once each, signed in
 * the assertion. Without a session the forged headers get nothing at all.
 *
 * Moved here from test/e2e/signin.test.ts (signed in) and test/e2e/gateway-core.test.ts (on a
 * bypass path). The same checks behind nginx and every README recipe are in
 * test/e2e/nginx-auth-request.test.ts and test/e2e/recipes.test.ts; forward-auth always answers
 * every identity header (empty when absent) for the same reason.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway, type TestUser } from '../helpers/gateway.js';
import { PortalClient } from '../helpers/portal.js';
import { rawHttp, get } from '../helpers/raw-http.js';

const OFFICE = '127.0.0.1';
const HOME = '127.0.0.2';
const PROXY = '127.0.0.3';
const COOKIE = 'portcullis_dev_session';
const PW = { alice: 'amber lantern orchid gravel 1987' } as const;
const USERS: TestUser[] = [{ name: 'alice', password: PW.alice, groups: ['staff'], email: 'alice@example.org' }];

let up: Upstream;
let gw: TestGateway;

before(async () => {
  up = await startUpstream();
  // `mail` as in test/e2e/signin.test.ts; `wiki` open to the office, as `mail` was in
  // test/e2e/gateway-core.test.ts
  gw = await startTestGateway(
    `
trusted_proxies: ["${PROXY}/32"]
networks:
  office: ["${OFFICE}/32"]
  home: ["${HOME}/32"]
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    rules:
      - { networks: [office, home], policy: password }
      - { policy: deny }
  - name: wiki
    hosts: ["wiki.test"]
    upstream: "${up.url}"
    rules:
      - { paths: ["/healthz"], policy: bypass }
      - { networks: [office], policy: bypass }
      - { policy: deny }
`,
    { users: USERS },
  );
});

after(async () => {
  await gw?.close();
  await up?.close();
});

function client(from: string = OFFICE, host = 'mail.test'): PortalClient {
  return new PortalClient(gw.port, host, { localAddress: from });
}

test('identity headers a client sends, in any spelling, never reach the app', async () => {
  const c = client(OFFICE, 'mail.test');
  await c.login('alice', PW.alice, '/');
  const forged = [
    'Remote-User: bob',
    'remote_user: bob',
    'REMOTE.USER: bob',
    'Remote-user: bob',
    'Remote-Groups: admins',
    'remote_groups: admins',
    'Remote-Email: bob@example.org',
    'Remote-Name: Bob',
    'X-Portcullis-Assertion: forged',
    'x_portcullis_assertion: forged',
  ];
  const before = up.requests.length;
  const r = await rawHttp(
    gw.port,
    ['GET /h HTTP/1.1', 'Host: mail.test', 'Connection: close, Remote-Email', `Cookie: ${COOKIE}=${c.cookie(COOKIE)}`, ...forged, '', ''].join('\r\n'),
    { localAddress: OFFICE },
  );
  assert.equal(r.status, 200);
  const seen = up.requests[before]!;
  const identity = /^(remote[-_.](user|groups|email|name)|x[-_.]portcullis[-_.]assertion)$/i;
  const got = [];
  for (let i = 0; i < seen.rawHeaders.length; i += 2) if (identity.test(seen.rawHeaders[i]!)) got.push(`${seen.rawHeaders[i]!.toLowerCase()}: ${seen.rawHeaders[i + 1]}`);
  assert.deepEqual(got.filter((h) => !h.startsWith('x-portcullis-assertion')).sort(), ['remote-email: alice@example.org', 'remote-groups: staff', 'remote-user: alice']);
  assert.equal(got.filter((h) => h.startsWith('x-portcullis-assertion')).length, 1);
  assert.equal(decodeJwt(String(seen.headers['x-portcullis-assertion'])).sub, 'alice');
  assert.ok(!JSON.stringify(seen.rawHeaders).includes('bob'), 'nothing of the forged identity arrives');

  // without a session the forged headers get nothing at all
  const anon = await rawHttp(gw.port, ['GET /h HTTP/1.1', 'Host: mail.test', 'Connection: close', ...forged, '', ''].join('\r\n'), { localAddress: OFFICE });
  assert.equal(anon.status, 401);
  assert.equal(up.requests.length, before + 1);
});

test('identity headers sent by the client never reach the app, in any spelling', async () => {
  const r = await rawHttp(
    gw.port,
    get('/h', 'wiki.test', ['Remote-User: admin', 'remote_user: admin', 'REMOTE.USER: admin', 'Remote-Groups: admins', 'X-Portcullis-Assertion: forged', 'Connection: close, X-Secret', 'X-Secret: 1']),
    { localAddress: OFFICE },
  );
  assert.equal(r.status, 200);
  const h = JSON.parse(r.body).headers as Record<string, string>;
  for (const k of Object.keys(h)) assert.doesNotMatch(k, /^remote[-_.]|x-portcullis|x-secret/i, k);
});
