/**
 * Attack: LDAP filter injection through the user name (RFC 4515).
 *
 * The typed name is put into `user_filter` at `{username}`. Unescaped, `al*` matches alice,
 * `*)(uid=alice` closes the assertion and adds one of the attacker's own, `*` matches everyone,
 * and `\00`-style sequences end a value early in some servers. An attacker who knows alice's
 * password but not her exact name, or who wants to sign in as "whoever matches", or to learn
 * what exists by timing, must get nothing: every such name finds no entry, so nothing is bound,
 * and the answer is the one for a wrong password.
 *
 * Checked twice: the directory client alone against slapd (what each filter finds), and through
 * the gateway's sign-in form (alice's real password under the hostile names never signs in, and
 * no bind is ever made for them).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { escapeFilterValue, fillFilter, LdapDirectory } from '../../src/directory/ldap.js';
import { silentLogger } from '../../src/audit/logger.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { PortalClient } from '../helpers/portal.js';
import { slapdMissing, startSlapd, type Slapd, ldapYaml } from '../helpers/slapd.js';

const missing = slapdMissing();
const ALICE_PW = 'Wonderland-Rabbit-1865';
const HOSTILE = [
  '*',
  'al*',
  '*)(uid=*',
  '*)(uid=alice',
  'alice)(|(uid=*',
  'alice)(objectClass=*',
  '(uid=alice)',
  '\\00',
  'alice\\00',
  'alice\\2a',
  'a\\6cice',
  'alice\u0000',
  '*)(|(objectClass=*)',
  'alice))(|(uid=*',
  'ali(ce',
];

let slapd: Slapd;
let up: Upstream;
let gw: TestGateway;

before(async () => {
  if (missing) return;
  slapd = await startSlapd();
  up = await startUpstream();
  gw = await startTestGateway(
    `
login_limits: { per_ip: { max_failures: 1000 }, spray: { distinct_users: 1000 }, hash_concurrency: 4 }
${ldapYaml(slapd.url)}
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    rules:
      - { policy: password }
`,
    { users: [] },
  );
});

after(async () => {
  await gw?.close();
  await up?.close();
  await slapd?.close();
});

test('the five RFC 4515 specials are escaped; nothing else changes', () => {
  assert.equal(escapeFilterValue('*)(uid=*'), '\\2a\\29\\28uid=\\2a');
  assert.equal(escapeFilterValue('\\00'), '\\5c00');
  assert.equal(escapeFilterValue('a\u0000b'), 'a\\00b');
  assert.equal(escapeFilterValue('jörg.o’brien@example.org'), 'jörg.o’brien@example.org');
  assert.equal(fillFilter('(&(objectClass=person)(uid={username}))', { username: 'al*' }), '(&(objectClass=person)(uid=al\\2a))');
  assert.equal(fillFilter('(member={dn})', { dn: 'cn=a\\,b (x),dc=org' }), '(member=cn=a\\5c,b \\28x\\29,dc=org)');
});

test('the directory client finds no entry for a hostile name', { skip: missing ?? false }, async () => {
  const cfg = gw.gw.rt.config.ldap!;
  const d = new LdapDirectory(cfg, { clock: { now: () => Date.now() }, logger: silentLogger() });
  try {
    assert.ok(await d.find('alice'), 'the plain name is found (the check is not vacuous)');
    for (const name of HOSTILE) assert.equal(await d.find(name), null, `"${JSON.stringify(name)}" finds nothing`);
  } finally {
    await d.close();
  }
});

test('through the gateway: alice\'s password under a hostile name never signs in, and nothing is bound', { skip: missing ?? false }, async () => {
  const dir = gw.gw.rt.directory!;
  const binds: string[] = [];
  const bind = dir.bind.bind(dir);
  dir.bind = async (dn, pw) => {
    binds.push(dn);
    return bind(dn, pw);
  };
  try {
    let k = 0;
    for (const name of HOSTILE) {
      const r = await new PortalClient(gw.port, 'mail.test', { localAddress: `127.0.${20 + k}.${1 + k++}` }).login(name, ALICE_PW, '/');
      assert.equal(r.status, 401, `${JSON.stringify(name)}: answered as a wrong password`);
    }
    assert.deepEqual(binds, [], 'no bind for any hostile name');
    // the control: the real name binds and signs in
    assert.equal((await new PortalClient(gw.port, 'mail.test', { localAddress: '127.0.99.1' }).login('alice', ALICE_PW, '/')).status, 303);
    assert.equal(binds.length, 1);
  } finally {
    dir.bind = bind;
  }
});
