/**
 * The `ldap:` section (issue 12): defaults per implementation, TLS rules, and the rule that keeps
 * the gateway's per-user limits below the directory's own lockout.
 */
import { strict as assert } from 'node:assert';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatIssues, loadConfigText, type CompiledConfig, type ConfigIssue, type LoadResult } from '../../src/config/index.js';
import { tmpDir } from '../helpers/tmp.js';

function ok(r: LoadResult): CompiledConfig {
  if (!r.ok) assert.fail(`expected a valid config, got:\n${formatIssues(r.issues)}`);
  return r.config;
}
function issues(r: LoadResult): ConfigIssue[] {
  assert.equal(r.ok, false, 'expected the config to be refused');
  return r.ok ? [] : r.issues;
}
const app = `apps:\n  - name: demo\n    hosts: [localhost]\n    upstream: builtin:whoami\n    rules: [{ policy: password }]\n`;
const ldap = (extra = '', url = '"ldaps://dc1.example.org"') =>
  `ldap:\n  url: ${url}\n  bind_dn: "cn=svc,dc=example,dc=org"\n  bind_password: "s3cret"\n  base_dn: "dc=example,dc=org"\n${extra}`;
const load = (text: string) => loadConfigText(text, 'p.yaml', { checkFiles: false, env: { LDAP_PW: 'from-env' } });

test('no ldap section: no directory', () => {
  assert.equal(ok(load(app)).ldap, null);
});

test('openldap defaults; activedirectory defaults (sAMAccountName or UPN, nested groups in chain, objectGUID)', () => {
  const o = ok(load(ldap() + app)).ldap!;
  assert.equal(o.implementation, 'openldap');
  assert.equal(o.userFilter, '(&(objectClass=person)(uid={username}))');
  assert.equal(o.attributes.id, 'entryUUID');
  assert.equal(o.lockoutThreshold, 10);
  assert.equal(o.timeoutMs, 5000);
  assert.equal(o.cacheMs, 60_000);
  const ad = ok(load(ldap('  implementation: activedirectory\n') + app)).ldap!;
  assert.match(ad.userFilter, /sAMAccountName=\{username\}.*userPrincipalName=\{username\}/);
  assert.match(ad.groupFilter!, /member:1\.2\.840\.113556\.1\.4\.1941:=\{dn\}/);
  assert.equal(ad.attributes.id, 'objectGUID');
});

test('url is a string or a list; several urls kept in order (failover)', () => {
  const o = ok(load(ldap('', '["ldaps://dc1.example.org", "ldaps://dc2.example.org:636"]') + app)).ldap!;
  assert.deepEqual(o.urls, ['ldaps://dc1.example.org', 'ldaps://dc2.example.org:636']);
});

test('plain ldap:// needs start_tls or insecure: true', () => {
  const list = issues(load(ldap('', '"ldap://dc1.example.org"') + app));
  assert.equal(list.length, 1);
  assert.equal(list[0]!.path, 'ldap.url');
  assert.match(list[0]!.message, /clear text.*start_tls.*insecure/);
  assert.equal(ok(load(ldap('  start_tls: true\n', '"ldap://dc1.example.org"') + app)).ldap!.startTls, true);
  assert.equal(ok(load(ldap('  insecure: true\n', '"ldap://dc1.example.org"') + app)).ldap!.insecure, true);
  const both = issues(load(ldap('  start_tls: true\n') + app));
  assert.match(both[0]!.message, /already TLS/);
});

test('per-user limits at or above the directory lockout are refused at the key', () => {
  const text = `login_limits:\n  per_user: { max_failures: 10 }\n` + ldap() + app;
  const list = issues(load(text));
  assert.equal(list.length, 1);
  assert.equal(list[0]!.path, 'login_limits.per_user.max_failures');
  assert.equal(list[0]!.line, 2);
  assert.match(list[0]!.message, /below ldap.lockout_threshold \(10\)/);
  // the directory's threshold lower than the default per-user limit: reported at the threshold
  const low = issues(load(ldap('  lockout_threshold: 5\n') + app));
  assert.equal(low[0]!.path, 'ldap.lockout_threshold');
  // an explicit ceiling too
  const ceil = issues(load(`login_limits:\n  per_user: { ceiling: { max_failures: 50 } }\n` + ldap() + app));
  assert.equal(ceil[0]!.path, 'login_limits.per_user.ceiling.max_failures');
  // the ceiling's default (100 a day) is brought below the threshold
  assert.equal(ok(load(ldap() + app)).loginLimits.perUser.ceiling.maxFailures, 9);
  assert.equal(ok(load(app)).loginLimits.perUser.ceiling.maxFailures, 100);
});

test('filters: {username} required, balanced, escapes well formed; secrets from env', () => {
  const a = issues(load(ldap('  user_filter: "(uid=alice)"\n') + app));
  assert.match(a[0]!.message, /\{username\}/);
  const b = issues(load(ldap('  user_filter: "(&(uid={username})"\n') + app));
  assert.match(b[0]!.message, /unbalanced/);
  const c = issues(load(ldap('  implementation: custom\n') + app));
  assert.match(c[0]!.message, /no default user_filter/);
  const e = ok(load(ldap().replace('"s3cret"', '{ env: LDAP_PW }') + app)).ldap!;
  assert.equal(e.bindPassword, 'from-env');
  const d = issues(load(ldap('  attributes: { id: "bad attr" }\n') + app));
  assert.equal(d[0]!.path, 'ldap.attributes.id');
  const u = issues(load(ldap('  colour: blue\n') + app));
  assert.match(u[0]!.message, /unknown key "colour"/);
});

test('ca_file must be a readable PEM certificate', async () => {
  const dir = await tmpDir('pc-ldapcfg');
  try {
    const bad = join(dir.dir, 'ca.txt');
    await writeFile(bad, 'not a certificate');
    const r = loadConfigText(ldap(`  ca_file: ${JSON.stringify(bad)}\n`) + app, 'p.yaml', { checkFiles: true });
    const list = issues(r);
    assert.equal(list[0]!.path, 'ldap.ca_file');
    assert.match(list[0]!.message, /no PEM certificate/);
    const none = issues(loadConfigText(ldap(`  ca_file: ${JSON.stringify(join(dir.dir, 'missing.pem'))}\n`) + app, 'p.yaml', { checkFiles: true }));
    assert.match(none[0]!.message, /no such file/);
  } finally {
    await dir.cleanup();
  }
});

test('group_base_dn: a DN, or null / absent (groups anywhere)', () => {
  assert.equal(ok(load(ldap() + app)).ldap!.groupBaseDn ?? null, null);
  assert.equal(ok(load(ldap('  group_base_dn: null\n') + app)).ldap!.groupBaseDn ?? null, null);
  assert.equal(ok(load(ldap('  group_base_dn: "ou=gateway,dc=example,dc=org"\n') + app)).ldap!.groupBaseDn, 'ou=gateway,dc=example,dc=org');
  const list = issues(load(ldap('  group_base_dn: "not a dn"\n') + app));
  assert.equal(list[0]!.path, 'ldap.group_base_dn');
});
