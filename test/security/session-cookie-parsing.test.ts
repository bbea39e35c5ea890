/**
 * Two cookie parsers, two answers. The proxy read the session cookie with its own `readCookie`
 * (the first exact `name=`), the portal through @fastify/cookie (the `cookie` package: names
 * trimmed, first occurrence kept), so `portcullis_dev_session =A; portcullis_dev_session=B` was
 * session B to the proxy and session A to the portal. A browser sends one name twice whenever a
 * second cookie of that name exists with another Path or Domain, and anyone who can set a cookie
 * for a sibling host (`Domain=example.org`, "cookie tossing") can add one; which copy a parser
 * takes then decides whose session the request runs in (fixation into the attacker's account, or
 * the portal acting on one session while the proxy forwards another). Parser differentials of this
 * kind: cloudflare/vinext#1947 (first vs last duplicate, the "cookie-tossing scenarios" it names),
 * honojs/hono#4916 (two call shapes, two answers), lobu-ai/lobu#2578 (cookie order deciding which
 * session authenticates).
 *
 * The safe answer: one parser everywhere the session cookie is read (proxy, WebSocket,
 * forward-auth, portal), reading names as a browser writes them (trimmed of spaces and tabs, case
 * sensitive), and a request carrying the session cookie name more than once has no session at
 * all: it is treated as signed out, never as one of the two.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';

const OFFICE = '127.0.0.1';
const PROXY = '127.0.0.3';
const NAME = 'portcullis_dev_session';
let gw: TestGateway;
let victim: string;
let attacker: string;

before(async () => {
  gw = await startTestGateway(
    `
trusted_proxies: ["${PROXY}/32"]
networks: { office: ["${OFFICE}/32"] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "builtin:whoami"
    websocket: true
    rules: [ { networks: [office], policy: password } ]
`,
    { users: [{ name: 'alice', password: 'amber lantern orchid gravel 1987' }, { name: 'mallory', password: 'saffron kettle glacier pylon 3310' }] },
  );
  const rt = gw.gw.rt;
  victim = (await rt.sessions.create({ user: 'alice', amr: ['pwd'], pending: 'none', ip: OFFICE })).id;
  attacker = (await rt.sessions.create({ user: 'mallory', amr: ['pwd'], pending: 'none', ip: OFFICE })).id;
});

after(async () => {
  await gw?.close();
});

/** The user the proxied app was told about, or the status when the request was not proxied. */
async function proxied(cookieLines: string[]): Promise<string | number> {
  const r = await rawHttp(gw.port, get('/inbox', 'mail.test', cookieLines), { localAddress: OFFICE });
  if (r.status !== 200) return r.status;
  return (JSON.parse(r.body) as { headers: Record<string, string> }).headers['remote-user'] ?? 'anonymous';
}

async function forwardAuth(cookieLines: string[]): Promise<string | number> {
  const r = await rawHttp(
    gw.port,
    get('/.portcullis/authz/forward-auth', 'auth.test', [
      'X-Forwarded-Proto: http',
      'X-Forwarded-Host: mail.test',
      'X-Forwarded-Uri: /inbox',
      'X-Forwarded-Method: GET',
      `X-Forwarded-For: ${OFFICE}`,
      ...cookieLines,
    ]),
    { localAddress: PROXY },
  );
  return r.status === 200 ? r.headers['remote-user'] ?? 'anonymous' : r.status;
}

/** 200 when the portal sees a session (the password page), 303 to the login page when it does not. */
async function portal(cookieLines: string[]): Promise<number> {
  const r = await rawHttp(gw.port, get('/.portcullis/password', 'mail.test', cookieLines), { localAddress: OFFICE });
  if (r.status === 303) assert.match(r.headers.location ?? '', /^\/\.portcullis\/login/);
  return r.status;
}

async function upgrade(cookieLines: string[]): Promise<number> {
  const r = await rawHttp(
    gw.port,
    ['GET /ws HTTP/1.1', 'Host: mail.test', 'Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', ...cookieLines, '', ''].join('\r\n'),
    { localAddress: OFFICE },
  );
  return r.status;
}

test('one session cookie: the proxy, forward-auth and the portal all see that session', async () => {
  for (const line of [`Cookie: ${NAME}=${victim}`, `Cookie: theme=dark; ${NAME}=${victim}; lang=en`, `Cookie: ${NAME} = ${victim}`, `Cookie: a=1;${NAME}=${victim}`]) {
    assert.equal(await proxied([line]), 'alice', line);
    assert.equal(await forwardAuth([line]), 'alice', line);
    assert.equal(await portal([line]), 200, line);
  }
});

test('the session cookie name twice means no session: signed out everywhere, never one of the two', async () => {
  const cases: string[][] = [
    [`Cookie: ${NAME}=${attacker}; ${NAME}=${victim}`],
    [`Cookie: ${NAME}=${victim}; ${NAME}=${attacker}`],
    [`Cookie: ${NAME}=${victim}; ${NAME}=${victim}`],
    [`Cookie: ${NAME} =${attacker}; ${NAME}=${victim}`],
    [`Cookie: ${NAME}=${victim}; theme=dark; \t${NAME}\t=${attacker}`],
    [`Cookie: ${NAME}=${victim}; ${NAME}=`],
    [`Cookie: ${NAME}=; ${NAME}=${victim}`],
    // two Cookie header lines: node joins them with "; "
    [`Cookie: ${NAME}=${attacker}`, `Cookie: ${NAME}=${victim}`],
  ];
  for (const c of cases) {
    const what = c.join(' | ');
    assert.equal(await proxied(c), 401, `proxy: ${what}`);
    assert.equal(await forwardAuth(c), 401, `forward-auth: ${what}`);
    assert.equal(await portal(c), 303, `portal: ${what}`);
    assert.equal(await upgrade(c), 401, `websocket: ${what}`);
  }
});

test('other spellings are other cookies: they neither open a session nor cancel the real one', async () => {
  assert.equal(await proxied([`Cookie: PORTCULLIS_DEV_SESSION=${victim}`]), 401);
  assert.equal(await proxied([`Cookie: x${NAME}=${victim}`]), 401);
  assert.equal(await proxied([`Cookie: ${victim}`]), 401, 'a nameless cookie is not the session');
  assert.equal(await proxied([`Cookie: \u00a0${NAME}=${attacker}`]), 401, 'a name behind a no-break space is another name (not trimmed like a space)');
  assert.equal(await proxied([`Cookie: PORTCULLIS_DEV_SESSION=${attacker}; ${NAME}=${victim}`]), 'alice');
  assert.equal(await portal([`Cookie: PORTCULLIS_DEV_SESSION=${attacker}; ${NAME}=${victim}`]), 200);
});
