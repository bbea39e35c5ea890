/**
 * Review finding F6 (fixed). A group search that exceeded its size limit (256) answered code 4,
 * which was mapped to "no groups at all": a user in more than 256 groups (or more than 256
 * transitive groups with AD's in-chain rule) had NO groups, including those a `deny` rule names,
 * so group-based deny rules failed open. Now a group list that is not whole (size limit, more
 * than 256, nesting deeper than followed) refuses the account (sign-in refused before any bind,
 * an established session's refresh sees it disabled), with the reason in the audit.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'ldapts';
import { LdapDirectory } from '../../src/directory/ldap.js';
import { silentLogger } from '../../src/audit/logger.js';
import { BASE_DN, ROOT_DN, ROOT_PW, SERVICE_DN, SERVICE_PW, slapdMissing, startSlapd, type Slapd } from '../helpers/slapd.js';
import type { LdapConfig } from '../../src/config/types.js';

const missing = slapdMissing();
let slapd: Slapd;
let dir: LdapDirectory;
before(async () => {
  if (missing) return;
  slapd = await startSlapd();
  const root = new Client({ url: slapd.url });
  await root.bind(ROOT_DN, ROOT_PW);
  const member = `uid=carol,ou=people,${BASE_DN}`;
  for (let i = 0; i < 256; i++) await root.add(`cn=g${i},ou=groups,${BASE_DN}`, { objectClass: 'groupOfNames', cn: `g${i}`, member });
  await root.add(`cn=contractors,ou=groups,${BASE_DN}`, { objectClass: 'groupOfNames', cn: 'contractors', member });
  await root.unbind();
  const cfg = {
    implementation: 'openldap', urls: [slapd.url], startTls: false, caFile: null, insecure: true,
    bindDn: SERVICE_DN, bindPassword: SERVICE_PW, baseDn: BASE_DN,
    userFilter: '(&(objectClass=person)(uid={username}))', groupFilter: '(&(objectClass=groupOfNames)(member={dn}))',
    attributes: { username: 'uid', email: 'mail', name: 'displayName', groups: 'memberOf', id: 'entryUUID' },
    lockoutThreshold: 10, timeoutMs: 5000, cacheMs: 60000,
  } as unknown as LdapConfig;
  dir = new LdapDirectory(cfg, { clock: { now: () => Date.now() }, logger: silentLogger() });
});
after(async () => {
  await dir?.close();
  await slapd?.close();
});

test('a user in 257 groups is refused, never judged on part of her groups', { skip: missing ?? false }, async (t) => {
  const e = await dir.find('carol');
  t.diagnostic(`carol: groups=${e?.record.groups.length} refused=${e?.refused}; disabled=${e?.record.disabled}`);
  assert.ok(e, 'carol is found');
  assert.match(e.refused ?? '', /group list is incomplete/);
  assert.equal(e.record.disabled, true, 'a session refresh sees the account disabled');
  // the same directory, a user with few groups: unaffected
  const a = await dir.find('alice');
  assert.equal(a?.refused, null);
  assert.equal(a?.record.disabled, false);
});
