/**
 * Attack (review finding F7): a group is known by its short name only, so a group named `admins`
 * made in any OU (by whoever may create groups there) is the rules' `admins`. `ldap.group_base_dn`
 * confines the groups that count to one subtree: groups are searched there, and `memberOf`
 * values outside it are ignored. Without it the old behaviour stays (documented risk).
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
const dirs: LdapDirectory[] = [];

function directory(groupBaseDn: string | null): LdapDirectory {
  const cfg: LdapConfig = {
    implementation: 'openldap', urls: [slapd.url], startTls: false, caFile: null, insecure: true,
    bindDn: SERVICE_DN, bindPassword: SERVICE_PW, baseDn: BASE_DN,
    userFilter: '(&(objectClass=person)(uid={username}))', groupFilter: '(&(objectClass=groupOfNames)(member={dn}))', groupBaseDn,
    attributes: { username: 'uid', email: 'mail', name: 'displayName', groups: 'memberOf', id: 'entryUUID' },
    lockoutThreshold: 10, timeoutMs: 5000, cacheMs: 60000,
  };
  const d = new LdapDirectory(cfg, { clock: { now: () => Date.now() }, logger: silentLogger() });
  dirs.push(d);
  return d;
}

before(async () => {
  if (missing) return;
  slapd = await startSlapd();
  // carol makes herself a group named admins in another OU (one she may create groups in)
  const root = new Client({ url: slapd.url });
  await root.bind(ROOT_DN, ROOT_PW);
  await root.add(`cn=admins,ou=people,${BASE_DN}`, { objectClass: 'groupOfNames', cn: 'admins', member: `uid=carol,ou=people,${BASE_DN}` });
  await root.unbind();
});
after(async () => {
  for (const d of dirs) await d.close();
  await slapd?.close();
});

test('an `admins` group outside group_base_dn is not the rules\' admins', { skip: missing ?? false }, async (t) => {
  const open = directory(null);
  const confined = directory(`ou=groups, ${BASE_DN}`);
  const carolOpen = await open.find('carol');
  const carol = await confined.find('carol');
  t.diagnostic(`carol without group_base_dn: ${JSON.stringify(carolOpen?.record.groups)}; with: ${JSON.stringify(carol?.record.groups)}`);
  assert.ok(carolOpen?.record.groups.includes('admins'), 'without group_base_dn the risk is real (the test measures something)');
  assert.equal(carol?.record.groups.includes('admins'), false, 'with group_base_dn carol is not an admin');
  // groups under group_base_dn still count, nesting included
  assert.deepEqual((await confined.find('bob'))?.record.groups, ['admins', 'employees']);
  assert.deepEqual((await confined.find('alice'))?.record.groups, ['employees', 'staff']);
});
