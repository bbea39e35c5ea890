/**
 * Review finding F5 (fixed). An app password (Basic) of a directory user while the directory is
 * unreachable used to be admitted on the last cached record of any age (a user disabled in the
 * directory meanwhile included), for as long as the outage lasted. Now a cached record is good
 * for Basic only while younger than `ldap.cache`: after that an outage is a 503. And while the
 * directory says the account's password must be changed (ppolicy pwdReset; AD pwdLastSet=0 or
 * expired) its app passwords are suspended (401, audited), and work again once it is changed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { PortalClient } from '../helpers/portal.js';
import { addAppPassword } from '../../src/admin/operations.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BASE_DN, slapdMissing, startSlapd, type Slapd, ldapYaml } from '../helpers/slapd.js';

const missing = slapdMissing();
let slapd: Slapd;
let up: Upstream;
let gw: TestGateway;

before(async () => {
  if (missing) return;
  slapd = await startSlapd();
  up = await startUpstream();
  gw = await startTestGateway(`
${ldapYaml(slapd.url, 'timeout: 1s', 'cache: 1s')}
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    rules:
      - { policy: password }
    basic_auth: { paths: ["/dav", "/dav/**"] }
`, { users: [] });
});
after(async () => {
  await gw?.close();
  await up?.close();
  await slapd?.close();
});

const basic = (u: string, p: string) => [`Authorization: Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`];
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('Basic during an outage: the cache while fresh, then 503', { skip: missing ?? false }, async (t) => {
  const rt = gw.gw.rt;
  const { password } = await addAppPassword(rt, 'alice', 'phone', { ip: '127.0.0.1' });
  const c = new PortalClient(gw.port, 'mail.test', { localAddress: '127.0.0.1' });
  const dav = () => c.get('/dav/x', { headers: basic('alice', password), cookies: false });
  assert.equal((await dav()).status, 200);
  await slapd.stop();
  try {
    // the record is younger than `cache` (1s): still usable
    const fresh = await dav();
    await pause(1200);
    const stale = await dav();
    t.diagnostic(`during the outage: fresh cache ${fresh.status}, cache older than ldap.cache ${stale.status}`);
    assert.equal(fresh.status, 200);
    assert.equal(stale.status, 503, 'a cached record older than ldap.cache is unusable for Basic (fail closed)');
  } finally {
    await slapd.start();
  }
  assert.equal((await dav()).status, 200, 'the directory back: the app password works at once');
});

test('Basic while the directory says the password must be changed: suspended, then back', { skip: missing ?? false }, async (t) => {
  const rt = gw.gw.rt;
  const { password } = await addAppPassword(rt, 'bob', 'phone', { ip: '127.0.0.1' });
  const c = new PortalClient(gw.port, 'mail.test', { localAddress: '127.0.0.1' });
  const dav = () => c.get('/dav/x', { headers: basic('bob', password), cookies: false });
  assert.equal((await dav()).status, 200);
  const dn = `uid=bob,ou=people,${BASE_DN}`;
  await slapd.modify(dn, 'replace', 'pwdReset', ['TRUE']);
  await pause(1200);
  const reset = await dav();
  const again = await dav();
  t.diagnostic(`pwdReset TRUE: ${reset.status}, ${again.status}`);
  assert.equal(reset.status, 401);
  assert.equal(again.status, 401);
  const audit = await readFile(join(gw.dir.dir, 'data', 'audit.jsonl'), 'utf8').catch(() => '');
  assert.match(audit, /app password suspended: the directory says the password must be changed/);
  await slapd.modify(dn, 'delete', 'pwdReset', []);
  await pause(1200);
  const back = await dav();
  t.diagnostic(`pwdReset cleared: ${back.status}`);
  assert.equal(back.status, 200, 'the app password works again (not remembered as a wrong one)');
});
