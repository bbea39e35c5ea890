/**
 * Letter case in paths, as IIS-hosted apps (Outlook on the web, ECP, RD Web) see it: IIS serves
 * /ECP/ and /ecp/ alike, so a deny rule on /ecp/** that matched case-sensitively could be dodged
 * by writing /ECP/. With `case_insensitive_paths: true` the app's rules (and basic_auth paths)
 * match in any case; without it they match exactly, as HTTP defines paths.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';

let up: Upstream;
let gw: TestGateway;

before(async () => {
  up = await startUpstream();
  gw = await startTestGateway(`
apps:
  - name: owa
    hosts: ["owa.test"]
    upstream: "${up.url}"
    case_insensitive_paths: true
    rules:
      - { paths: ["/ecp/**"], policy: deny }
      - { policy: bypass }
  - name: unix
    hosts: ["unix.test"]
    upstream: "${up.url}"
    rules:
      - { paths: ["/ecp/**"], policy: deny }
      - { policy: bypass }
`);
});

after(async () => {
  await gw?.close();
  await up?.close();
});

test('an IIS app: the deny on /ecp/** holds for /ECP/, /Ecp/ and /eCp/x', async () => {
  const before = up.requests.length;
  for (const p of ['/ecp/', '/ECP/', '/Ecp/default.aspx', '/eCp/x', '/ECP']) {
    assert.equal((await rawHttp(gw.port, get(p, 'owa.test'))).status, 403, p);
  }
  assert.equal(up.requests.length, before, 'none reached the app');
  assert.equal((await rawHttp(gw.port, get('/owa/', 'owa.test'))).status, 200);
});

test('without the flag, paths match exactly, as HTTP defines them', async () => {
  assert.equal((await rawHttp(gw.port, get('/ecp/', 'unix.test'))).status, 403);
  assert.equal((await rawHttp(gw.port, get('/ECP/', 'unix.test'))).status, 200);
});
