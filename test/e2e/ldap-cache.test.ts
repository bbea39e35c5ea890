/**
 * What the directory said is cached for at most `ldap.cache` (ManualClock, real slapd): a user
 * taken out of a group keeps it until the cache runs out, then loses it (and the groups nested
 * through it); while the directory is down a signed-in user keeps the last record; a user
 * never seen while it is down is an outage (PC_DIRECTORY_UNAVAILABLE), not "no such user".
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/clock.js';
import { LdapDirectory, directoryKey } from '../../src/directory/ldap.js';
import { silentLogger } from '../../src/audit/logger.js';
import { isPortcullisError } from '../../src/errors.js';
import { BASE_DN, SERVICE_DN, SERVICE_PW, slapdMissing, startSlapd, type Slapd } from '../helpers/slapd.js';

const missing = slapdMissing();
let slapd: Slapd;
before(async () => {
  if (!missing) slapd = await startSlapd();
});
after(async () => {
  await slapd?.close();
});

test('groups cached for at most `cache`; the last record kept through an outage', { skip: missing ?? false }, async () => {
  const clock = new ManualClock(Date.now());
  const d = new LdapDirectory(
    {
      implementation: 'openldap',
      urls: [slapd.url],
      startTls: false,
      caFile: null,
      insecure: true,
      bindDn: SERVICE_DN,
      bindPassword: SERVICE_PW,
      baseDn: BASE_DN,
      userFilter: '(&(objectClass=person)(uid={username}))',
      groupFilter: '(&(objectClass=groupOfNames)(member={dn}))',
      attributes: { username: 'uid', email: 'mail', name: 'displayName', groups: 'memberOf', id: 'entryUUID' },
      lockoutThreshold: 10,
      timeoutMs: 1000,
      cacheMs: 60_000,
    },
    { clock, logger: silentLogger() },
  );
  try {
    const first = await d.find('alice');
    assert.deepEqual(first!.record.groups, ['employees', 'staff']);
    const key = directoryKey(first!.id);
    // (groupOfNames needs one member: carol stays in staff)
    await slapd.modify(`cn=staff,ou=groups,${BASE_DN}`, 'add', 'member', [`uid=carol,ou=people,${BASE_DN}`]);
    await slapd.modify(`cn=staff,ou=groups,${BASE_DN}`, 'delete', 'member', [`uid=alice,ou=people,${BASE_DN}`]);
    clock.advance(59_000);
    assert.deepEqual((await d.lookup(key))!.groups, ['employees', 'staff'], 'within the cache: the record as it was');
    clock.advance(2_000);
    assert.deepEqual((await d.lookup(key))!.groups, [], 'past the cache: staff gone, and employees with it (nested through staff)');

    await slapd.stop();
    clock.advance(120_000);
    assert.deepEqual((await d.lookup(key))!.groups, [], 'directory down: the last record, so the session goes on');
    await assert.rejects(d.lookup('bob'), (e) => isPortcullisError(e, 'PC_DIRECTORY_UNAVAILABLE'), 'never seen: an outage, not "no such user"');
    assert.equal(d.healthy(), false);
  } finally {
    await slapd.start();
    await d.close();
  }
});
