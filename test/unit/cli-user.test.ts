import { strict as assert } from 'node:assert';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PasswordHasher, TEST_PARAMS } from '../../src/auth/password.js';
import { loadUsersFile } from '../../src/auth/users.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';
import { runCommand } from '../helpers/cli.js';

const hasher = new PasswordHasher(TEST_PARAMS);

const dirs: TmpDir[] = [];
after(async () => {
  for (const d of dirs) await d.cleanup();
});

/** A directory with a minimal config whose users file does not exist yet. */
async function setup(): Promise<{ config: string; users: string }> {
  const d = await tmpDir('portcullis-cli-user-');
  dirs.push(d);
  const users = join(d.dir, 'users.yaml');
  const config = join(d.dir, 'portcullis.yaml');
  await writeFile(
    config,
    `listen: "127.0.0.1:0"
users_file: ${JSON.stringify(users)}
data_dir: ${JSON.stringify(join(d.dir, 'data'))}
apps:
  - name: a
    hosts: [a.test]
    upstream: "builtin:whoami"
    rules: [{ policy: deny }]
`,
  );
  return { config, users };
}

const cli = (argv: string[], stdin = '') => runCommand(argv, { stdin, env: { PORTCULLIS_ARGON2: 'test' } });

async function usersOf(file: string) {
  const r = await loadUsersFile(file);
  assert.ok(r.ok, 'the users file stays valid');
  return r.users;
}

describe('portcullis user', () => {
  it('adds a user with the password from stdin, and lists it without the hash', async () => {
    const { config, users } = await setup();
    const add = await cli(
      ['user', 'add', 'alice', '--config', config, '--email', 'alice@example.org', '--groups', 'staff, remote-staff', '--name', 'Alice Example', '--password-stdin'],
      's3cret horse\n',
    );
    assert.deepEqual(add, { code: 0, out: 'user "alice" added\n', err: '' });
    const alice = (await usersOf(users)).get('alice')!;
    assert.equal(await hasher.verify(alice.passwordHash, 's3cret horse'), true);
    assert.deepEqual(alice.groups, ['staff', 'remote-staff']);
    assert.equal(alice.displayName, 'Alice Example');

    await cli(['user', 'add', 'bob', '--config', config, '--password-stdin'], 'quartz meadow lantern 42\n');
    const list = await cli(['user', 'list', '--config', config]);
    assert.equal(list.code, 0);
    assert.equal(
      list.out,
      ['NAME   EMAIL              GROUPS              DISABLED', 'alice  alice@example.org  staff,remote-staff  no', 'bob    -                  -                   no', ''].join('\n'),
    );
    const json = await cli(['user', 'list', '--json', '--config', config]);
    assert.deepEqual(JSON.parse(json.out), [
      { name: 'alice', email: 'alice@example.org', displayName: 'Alice Example', groups: ['staff', 'remote-staff'], disabled: false },
      { name: 'bob', email: null, displayName: null, groups: [], disabled: false },
    ]);
    for (const o of [list.out, json.out]) assert.ok(!o.includes('argon2'), 'no hash in any listing');
  });

  it('changes a password, disables, enables and removes', async () => {
    const { config, users } = await setup();
    await cli(['user', 'add', 'alice', '--config', config, '--password-stdin'], 'amber violin harbour 17\n');
    assert.equal((await cli(['user', 'passwd', 'alice', '--config', config, '--password-stdin'], 'cobalt ember thistle 93\r\n')).code, 0);
    const h = (await usersOf(users)).get('alice')!.passwordHash;
    assert.equal(await hasher.verify(h, 'cobalt ember thistle 93'), true);
    assert.equal(await hasher.verify(h, 'amber violin harbour 17'), false);

    assert.deepEqual(await cli(['user', 'disable', 'alice', '--config', config]), { code: 0, out: 'user "alice" disabled\n', err: '' });
    assert.equal((await usersOf(users)).get('alice')!.disabled, true);
    assert.match((await cli(['user', 'list', '--config', config])).out, /alice +- +- +yes/);
    await cli(['user', 'enable', 'alice', '--config', config]);
    assert.equal((await usersOf(users)).get('alice')!.disabled, false);
    assert.deepEqual(await cli(['user', 'remove', 'alice', '--config', config]), { code: 0, out: 'user "alice" removed\n', err: '' });
    assert.equal((await usersOf(users)).size, 0);
  });

  it('never takes a password from the command line', async () => {
    const { config } = await setup();
    const viaArgv = await cli(['user', 'add', 'alice', '--config', config, '--password', 'hunter2']);
    assert.equal(viaArgv.code, 2);
    assert.match(viaArgv.err, /unknown option --password/);
    const noFlag = await cli(['user', 'add', 'alice', '--config', config], 'pw\n');
    assert.equal(noFlag.code, 2);
    assert.match(noFlag.err, /--password-stdin is required/);
    const noPw = await cli(['user', 'add', 'alice', '--config', config, '--password-stdin'], '');
    assert.equal(noPw.code, 2);
    const twoLines = await cli(['user', 'add', 'alice', '--config', config, '--password-stdin'], 'a\nb\n');
    assert.equal(twoLines.code, 2);
  });

  it('refuses a password the login policy would refuse, naming the reason; --force sets it with a warning', async () => {
    const { config, users } = await setup();
    const weak = await cli(['user', 'add', 'carol', '--config', config, '--password-stdin'], 'Password1\n');
    assert.equal(weak.code, 1);
    assert.match(weak.err, /common \(breached\) passwords/);
    assert.equal((await usersOf(users).catch(() => new Map())).has('carol'), false, 'nothing written');
    const named = await cli(['user', 'add', 'carol', '--config', config, '--password-stdin'], 'carol-is-great-2026\n');
    assert.match(named.err, /user's name/);
    const forced = await cli(['user', 'add', 'carol', '--config', config, '--password-stdin', '--force'], 'Password1\n');
    assert.equal(forced.code, 0);
    assert.match(forced.err, /^warning: the password does not meet the password policy/);
    const pw = await cli(['user', 'passwd', 'carol', '--config', config, '--password-stdin'], 'short\n');
    assert.equal(pw.code, 1);
    assert.match(pw.err, /shorter than password_policy.min_length/);
  });

  it('fails with a message and a non-zero status, changing nothing', async () => {
    const { config, users } = await setup();
    await cli(['user', 'add', 'alice', '--config', config, '--password-stdin'], 'granite orchard kettle 55\n');
    const before = await readFile(users, 'utf8');
    const dup = await cli(['user', 'add', 'Alice', '--config', config, '--password-stdin'], 'granite orchard kettle 56\n');
    assert.equal(dup.code, 1);
    assert.match(dup.err, /user "alice" already exists/);
    const unknown = await cli(['user', 'passwd', 'nobody', '--config', config, '--password-stdin'], 'granite orchard kettle 57\n');
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /no user "nobody"/);
    assert.equal((await cli(['user', 'remove', 'nobody', '--config', config])).code, 1);
    for (const bad of [
      ['user', 'add', 'bad name', '--config', config, '--password-stdin'],
      ['user', 'add', 'eve', '--email', 'not-an-email', '--config', config, '--password-stdin'],
      ['user', 'add', 'eve', '--groups', 'ad mins', '--config', config, '--password-stdin'],
      ['user', 'add', 'eve', '--name', 'Eve\r\nRemote-User: admin', '--config', config, '--password-stdin'],
      ['user', 'frobnicate', '--config', config],
      ['user', '--config', config],
      ['user', 'disable', '--config', config],
      ['user', 'disable', 'alice', 'bob', '--config', config],
    ]) {
      const r = await cli(bad, 'pw\n');
      assert.equal(r.code, 2, bad.join(' '));
      assert.notEqual(r.err, '');
    }
    assert.equal(await readFile(users, 'utf8'), before);
  });

  it('reports a broken config or users file at file:line:col', async () => {
    const { config } = await setup();
    await writeFile(config, 'listen: [\n');
    const r = await cli(['user', 'list', '--config', config]);
    assert.equal(r.code, 1);
    assert.ok(r.err.startsWith(`${config}:`), r.err);

    const ok = await setup();
    await writeFile(ok.users, 'users:\n  alice:\n    password: plain\n');
    const l = await cli(['user', 'list', '--config', ok.config]);
    assert.equal(l.code, 1);
    assert.equal(l.err, `${ok.users}:3:15 users.alice.password: expected an argon2id hash (make one with \`portcullis hash-password\`)\n`);
  });
});

describe('portcullis hash-password', () => {
  it('prints an argon2id hash of the line on stdin', async () => {
    const r = await cli(['hash-password'], 'correct horse\n');
    assert.equal(r.code, 0);
    assert.match(r.out, /^\$argon2id\$v=19\$m=256,t=1,p=1\$\S+\n$/);
    assert.equal(await hasher.verify(r.out.trim(), 'correct horse'), true);
    assert.ok(!r.out.includes('correct horse'));
  });

  it('refuses arguments, empty input and more than one line', async () => {
    assert.equal((await cli(['hash-password', 'hunter2'], 'x\n')).code, 2);
    assert.equal((await cli(['hash-password'], '')).code, 2);
    assert.equal((await cli(['hash-password'], 'a\nb\n')).code, 2);
  });
});
