/**
 * The directory client's pure parts: account state from AD and OpenLDAP attributes, objectGUID
 * text both ways, group short names from DNs, the Password Modify request's encoding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accountState, guidBytes, guidText, passwdModifyValue, rdnValue, searchableName } from '../../src/directory/ldap.js';

const NOW = Date.UTC(2026, 5, 1);
/** ms since 1970 as an AD FILETIME string. */
const filetime = (ms: number) => String((BigInt(ms) + 11_644_473_600_000n) * 10_000n);
const ad = (attrs: Record<string, string>) => accountState('activedirectory', { dn: 'CN=x', ...attrs }, NOW);
const ol = (attrs: Record<string, string | string[]>) => accountState('openldap', { dn: 'uid=x', ...attrs }, NOW);

test('Active Directory: disabled, locked out, expired account refused; expired password must change', () => {
  assert.equal(ad({ userAccountControl: '512' }).refused, null);
  assert.match(ad({ userAccountControl: '514' }).refused!, /disabled \(userAccountControl\)/);
  assert.match(ad({ userAccountControl: '512', lockoutTime: '133000000000000000' }).refused!, /locked out \(lockoutTime\)/);
  assert.equal(ad({ userAccountControl: '512', lockoutTime: '0' }).refused, null, 'lockoutTime 0: unlocked');
  assert.match(ad({ accountExpires: filetime(NOW - 1000) }).refused!, /expired \(accountExpires\)/);
  assert.equal(ad({ accountExpires: filetime(NOW + 86_400_000) }).refused, null);
  assert.equal(ad({ accountExpires: '9223372036854775807' }).refused, null, 'never expires');
  assert.equal(ad({ accountExpires: '0' }).refused, null, 'never expires');
  assert.equal(ad({ pwdLastSet: '0' }).mustChange, true, 'must change at next logon');
  assert.equal(ad({ pwdLastSet: filetime(NOW - 1000), 'msDS-UserPasswordExpiryTimeComputed': filetime(NOW - 1) }).mustChange, true);
  assert.equal(ad({ pwdLastSet: filetime(NOW - 1000), 'msDS-UserPasswordExpiryTimeComputed': filetime(NOW + 1000) }).mustChange, false);
  assert.equal(ad({ badPwdCount: '3' }).failures, 3);
});

test('OpenLDAP ppolicy: locked (by ppolicy or an admin), expired; pwdReset must change; failures counted', () => {
  assert.equal(ol({}).refused, null);
  assert.match(ol({ pwdAccountLockedTime: '20260101000000Z' }).refused!, /locked \(ppolicy/);
  assert.match(ol({ pwdAccountLockedTime: '000001010000Z' }).refused!, /disabled/);
  assert.match(ol({ pwdEndTime: '20260101000000Z' }).refused!, /expired \(pwdEndTime\)/);
  assert.equal(ol({ pwdEndTime: '20990101000000Z' }).refused, null);
  assert.equal(ol({ pwdReset: 'TRUE' }).mustChange, true);
  assert.equal(ol({ pwdFailureTime: ['20260101000000Z', '20260101000001Z'] }).failures, 2);
});

test('objectGUID: the usual text form, and back to the wire bytes for a search', () => {
  const wire = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const text = guidText(wire);
  assert.equal(text, '33221100-5544-7766-8899-aabbccddeeff');
  assert.equal(guidBytes(text), wire.toString('hex'));
  assert.equal(guidBytes('not-a-guid'), null);
});

test('group short names: the first RDN value, escapes undone', () => {
  assert.equal(rdnValue('cn=staff,ou=groups,dc=example,dc=org'), 'staff');
  assert.equal(rdnValue('CN=Domain Users,CN=Users,DC=example,DC=org'), 'Domain Users');
  assert.equal(rdnValue('cn=a\\,b,dc=org'), 'a,b');
  assert.equal(rdnValue('cn=x\\2cy,dc=org'), 'x,y');
  assert.equal(rdnValue('cn=ops+ou=x,dc=org'), 'ops');
  assert.equal(rdnValue('garbage'), null);
});

test('names never searched; the Password Modify request is BER as RFC 3062 says', () => {
  assert.equal(searchableName(''), false);
  assert.equal(searchableName('a\u0000'), false);
  assert.equal(searchableName('x'.repeat(257)), false);
  assert.equal(searchableName('alice@example.org'), true);
  const v = passwdModifyValue('uid=a', 'old', 'new');
  assert.equal(v.toString('hex'), '3011' + '800575696' + '43d61' + '81036f6c64' + '82036e6577');
});
