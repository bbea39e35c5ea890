/**
 * The CLI against a real slapd: `user list --source ldap NAME` shows what the directory returns
 * (for an admin debugging a filter), `check-config --connect` binds with the service account and
 * runs the filter; a wrong service password or a stopped server exits 1 with the reason.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from '../helpers/cli.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';
import { BASE_DN, SERVICE_DN, SERVICE_PW, slapdMissing, startSlapd, type Slapd } from '../helpers/slapd.js';

const missing = slapdMissing();
let slapd: Slapd;
let dir: TmpDir;

async function configFile(password = SERVICE_PW): Promise<string> {
  const file = join(dir.dir, `p-${password.length}.yaml`);
  await writeFile(join(dir.dir, 'users.yaml'), 'users: {}\n');
  await writeFile(
    file,
    `users_file: ${JSON.stringify(join(dir.dir, 'users.yaml'))}
data_dir: ${JSON.stringify(join(dir.dir, 'data'))}
ldap:
  url: "${slapd.url}"
  insecure: true
  bind_dn: "${SERVICE_DN}"
  bind_password: "${password}"
  base_dn: "${BASE_DN}"
  timeout: 2s
apps:
  - name: demo
    hosts: [localhost]
    upstream: builtin:whoami
    rules: [{ policy: password }]
`,
  );
  return file;
}

before(async () => {
  if (missing) return;
  slapd = await startSlapd();
  dir = await tmpDir('pc-ldapcli');
});
after(async () => {
  await slapd?.close();
  await dir?.cleanup();
});

test('user list --source ldap NAME shows what the directory returns', { skip: missing ?? false }, async () => {
  const cfg = await configFile();
  const r = await runCommand(['user', 'list', '--source', 'ldap', 'alice', '--config', cfg]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /dn: +uid=alice,ou=people,dc=example,dc=org/);
  assert.match(r.out, /groups: +employees,staff/);
  assert.match(r.out, /email: +alice@example.org/);
  assert.match(r.out, /id: +[0-9a-f-]{36}/);
  const j = await runCommand(['user', 'list', '--source', 'ldap', 'dave', '--json', '--config', cfg]);
  assert.equal(JSON.parse(j.out).found, false, 'two entries: not a user');
  assert.doesNotMatch(r.out + j.out, new RegExp(SERVICE_PW), 'no password printed');
});

test('check-config --connect binds and runs the filter; a refused service bind exits 1', { skip: missing ?? false }, async () => {
  const good = await runCommand(['check-config', '--connect', '--user', 'bob', '--config', await configFile()]);
  assert.equal(good.code, 0, good.err);
  assert.match(good.out, /service bind ok/);
  assert.match(good.out, /name: +bob/);
  const bad = await runCommand(['check-config', '--connect', '--config', await configFile('wrong-service-password')]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /service account bind was refused/);
  assert.doesNotMatch(bad.err, /wrong-service-password/);
});
