/**
 * An app's own script (XHR / fetch) whose session has ended cannot follow a redirect to an HTML
 * login page: it gets 401 with `{"error":"signed_out","login":URL}` and the same URL in
 * Location, on the proxy and through forward-auth, so the app can send the user to sign in.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp } from '../helpers/raw-http.js';

let tg: TestGateway;
before(async () => {
  tg = await startTestGateway(`
trusted_proxies: ["127.0.0.1/32"]
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "builtin:whoami"
    rules:
      - { policy: password }
`);
});
after(async () => tg?.close());

const get = (path: string, headers: string[]) =>
  rawHttp(tg.port, [`GET ${path} HTTP/1.1`, 'Host: mail.test', 'Connection: close', ...headers, '', ''].join('\r\n'));

for (const [what, header] of [
  ['Accept: application/json', 'Accept: application/json'],
  ['X-Requested-With', 'X-Requested-With: XMLHttpRequest'],
] as const) {
  it(`proxy, ${what}: 401 JSON with the login URL`, async () => {
    const r = await get('/api/messages?page=2', [header, 'Cookie: portcullis_dev_session=expired-or-unknown-session-id-000000000']);
    assert.equal(r.status, 401);
    assert.match(String(r.headers['content-type']), /^application\/json/);
    const body = JSON.parse(r.body) as { error: string; login: string };
    assert.deepEqual(body, { error: 'signed_out', login: '/.portcullis/login?rd=%2Fapi%2Fmessages%3Fpage%3D2' });
    assert.equal(r.headers.location, body.login);
  });
}

it('a browser navigation still gets the redirect', async () => {
  const r = await get('/inbox', ['Accept: text/html,application/xhtml+xml']);
  assert.equal(r.status, 302);
});

it('forward-auth, Accept: application/json: 401 JSON with an absolute login URL', async () => {
  const r = await get('/.portcullis/authz/forward-auth', [
    'X-Forwarded-Method: GET',
    'X-Forwarded-Proto: https',
    'X-Forwarded-Host: mail.test',
    'X-Forwarded-Uri: /api/x',
    'X-Forwarded-For: 192.0.2.1',
    'Accept: application/json',
  ]);
  assert.equal(r.status, 401);
  const body = JSON.parse(r.body) as { error: string; login: string };
  assert.equal(body.error, 'signed_out');
  assert.equal(body.login, 'https://mail.test/.portcullis/login?rd=https%3A%2F%2Fmail.test%2Fapi%2Fx');
  assert.equal(r.headers.location, body.login);
});
