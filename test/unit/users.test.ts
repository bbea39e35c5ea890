import { strict as assert } from 'node:assert';
import { chmod, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cryptoRandom } from '../../src/clock.js';
import { isPortcullisError } from '../../src/errors.js';
import { PasswordHasher, TEST_PARAMS } from '../../src/auth/password.js';
import {
  addUser,
  editUsersFile,
  ensureUsersFile,
  findUser,
  loadUsersFile,
  parseUsersText,
  randomPassword,
  removeUser,
  setDisabled,
  setPassword,
  UsersFileInvalid,
} from '../../src/auth/users.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const hasher = new PasswordHasher(TEST_PARAMS);
let HASH = '';
before(async () => {
  HASH = await hasher.hash('alice password');
});

const dirs: TmpDir[] = [];
after(async () => {
  for (const d of dirs) await d.cleanup();
});
async function tmp(): Promise<string> {
  const d = await tmpDir('portcullis-users-');
  dirs.push(d);
  return d.dir;
}

function valid(): string {
  return `# our staff
users:
  alice:   # the boss
    password: "${HASH}"
    email: alice@example.org
    name: Alice Example
    groups: [staff, remote-staff]
  bob:
    password: "${HASH}"
    disabled: true
`;
}

function issuesOf(text: string) {
  const r = parseUsersText(text, 'users.yaml');
  assert.equal(r.ok, false, 'expected issues');
  return r.ok ? [] : r.issues;
}

describe('loading the users file', () => {
  it('reads users with their attributes', () => {
    const r = parseUsersText(valid(), 'users.yaml');
    assert.ok(r.ok);
    const alice = r.users.get('alice')!;
    assert.deepEqual({ ...alice, groups: [...alice.groups] }, {
      name: 'alice',
      passwordHash: HASH,
      email: 'alice@example.org',
      displayName: 'Alice Example',
      groups: ['staff', 'remote-staff'],
      disabled: false,
    });
    const bob = r.users.get('bob')!;
    assert.equal(bob.disabled, true);
    assert.equal(bob.email, null);
    assert.deepEqual(bob.groups, []);
  });

  it('accepts an empty user list', () => {
    for (const t of ['users:\n', 'users: {}\n']) {
      const r = parseUsersText(t, 'users.yaml');
      assert.ok(r.ok);
      assert.equal(r.users.size, 0);
    }
  });

  it('reports every problem at once, each at file:line:col with its key path', () => {
    const text = `users:
  alice:
    password: "${HASH}"
    pasword: "${HASH}"
    email: "alice@example.org\\r\\nX-Injected: 1"
    groups: [staff, "a,b", staff]
    disabled: yes
  "bad name!":
    password: "${HASH}"
  carol:
    password: "$2b$10$notargon"
  dave:
    email: dave@example.org
extra: 1
`;
    const issues = issuesOf(text);
    const by = (path: string) => issues.find((i) => i.path === path);
    assert.deepEqual(
      issues.map((i) => `${i.line}:${i.col} ${i.path}`).sort(),
      [
        '4:5 users.alice.pasword',
        '5:12 users.alice.email',
        '6:21 users.alice.groups[1]',
        '6:28 users.alice.groups[2]',
        '7:15 users.alice.disabled',
        '8:3 users.bad name!',
        '11:15 users.carol.password',
        '12:3 users.dave.password',
        '14:1 extra',
      ].sort(),
    );
    assert.match(by('users.alice.pasword')!.message, /unknown key/);
    assert.match(by('users.carol.password')!.message, /argon2id/);
    assert.match(by('users.dave.password')!.message, /missing/);
    assert.match(by('users.alice.disabled')!.message, /true or false/, '`yes` is text in YAML 1.2, not a boolean');
    assert.ok(issues.every((i) => i.file === 'users.yaml'));
  });

  it('refuses values that would corrupt identity headers sent to apps', () => {
    for (const [field, value] of [
      ['email', '"a@b.example\\nRemote-User: admin"'],
      ['email', '"a b@example.org"'],
      ['email', '"a,b@example.org"'],
      ['name', '"Mallory\\r\\nRemote-Groups: admins"'],
      ['name', '"x\\u0000y"'],
      ['groups', '["admins,staff"]'],
      ['groups', '["ad mins"]'],
    ] as const) {
      const issues = issuesOf(`users:\n  m:\n    password: "${HASH}"\n    ${field}: ${value}\n`);
      assert.equal(issues.length, 1, `${field}: ${value}`);
      assert.match(issues[0]!.path, new RegExp(`^users\\.m\\.${field}`));
    }
  });

  it('refuses two names that differ only in letter case, and non-string names', () => {
    const issues = issuesOf(`users:\n  alice:\n    password: "${HASH}"\n  Alice:\n    password: "${HASH}"\n  007:\n    password: "${HASH}"\n`);
    assert.equal(issues.length, 2);
    assert.match(issues[0]!.message, /only in letter case/);
    assert.equal(issues[0]!.line, 4);
    assert.match(issues[1]!.message, /must be a string/);
  });

  it('reports YAML errors (duplicate keys, bad syntax) with their position', () => {
    const dup = issuesOf(`users:\n  alice:\n    password: "${HASH}"\n  alice:\n    password: "${HASH}"\n`);
    assert.equal(dup[0]!.line, 4);
    const bad = issuesOf('users:\n  alice: [\n');
    assert.ok(bad.length > 0);
  });

  it('refuses a stored hash whose parameters would exhaust memory at login', () => {
    const issues = issuesOf(`users:\n  a:\n    password: "${HASH.replace('m=256', 'm=4194304')}"\n`);
    assert.equal(issues[0]!.path, 'users.a.password');
  });

  it('says which file could not be read', async () => {
    const r = await loadUsersFile('/nonexistent/users.yaml');
    assert.ok(!r.ok);
    assert.match(r.issues[0]!.message, /ENOENT/);
  });

  it('finds a user by the name typed at login, ignoring case', () => {
    const r = parseUsersText(valid(), 'users.yaml');
    assert.ok(r.ok);
    assert.equal(findUser(r.users, 'alice')?.name, 'alice');
    assert.equal(findUser(r.users, 'ALICE')?.name, 'alice');
    assert.equal(findUser(r.users, 'carol'), null);
  });
});

describe('editing the users file', () => {
  async function fileWith(text: string, mode = 0o600): Promise<string> {
    const file = join(await tmp(), 'users.yaml');
    await writeFile(file, text, { mode });
    await chmod(file, mode);
    return file;
  }

  it('adds a user and keeps every comment', async () => {
    const file = await fileWith(valid());
    const users = await editUsersFile(file, (doc) =>
      addUser(doc, { name: 'carol', passwordHash: HASH, email: 'carol@example.org', displayName: 'Carol', groups: ['staff'] }),
    );
    assert.equal(users.get('carol')?.email, 'carol@example.org');
    const text = await readFile(file, 'utf8');
    assert.match(text, /^# our staff\n/);
    assert.match(text, /# the boss\n/);
    assert.match(text, /groups: \[staff, remote-staff\]\n/, 'untouched entries keep their layout');
    assert.ok(text.includes(`password: "${HASH}"`), 'the hash is on one line, quoted');
    const reread = await loadUsersFile(file);
    assert.ok(reread.ok);
    assert.deepEqual([...reread.users.keys()], ['alice', 'bob', 'carol']);
    assert.deepEqual(reread.users.get('carol')!.groups, ['staff']);
  });

  it('changes a password, disables and enables, removes', async () => {
    const file = await fileWith(valid());
    const newHash = await hasher.hash('new password');
    await editUsersFile(file, (doc) => setPassword(doc, 'alice', newHash));
    let r = await loadUsersFile(file);
    assert.ok(r.ok);
    assert.equal(await hasher.verify(r.users.get('alice')!.passwordHash, 'new password'), true);

    await editUsersFile(file, (doc) => setDisabled(doc, 'alice', true));
    r = await loadUsersFile(file);
    assert.ok(r.ok && r.users.get('alice')!.disabled);
    await editUsersFile(file, (doc) => setDisabled(doc, 'bob', false));
    r = await loadUsersFile(file);
    assert.ok(r.ok && !r.users.get('bob')!.disabled);

    await editUsersFile(file, (doc) => removeUser(doc, 'bob'));
    r = await loadUsersFile(file);
    assert.ok(r.ok);
    assert.deepEqual([...r.users.keys()], ['alice']);
    assert.match(await readFile(file, 'utf8'), /# the boss/);
  });

  it('refuses a taken name (in any letter case) and an unknown user, writing nothing', async () => {
    const file = await fileWith(valid());
    const before = await readFile(file, 'utf8');
    await assert.rejects(editUsersFile(file, (doc) => addUser(doc, { name: 'ALICE', passwordHash: HASH })), (e) => isPortcullisError(e, 'PC_USER_EXISTS'));
    for (const edit of [
      (d: Parameters<Parameters<typeof editUsersFile>[1]>[0]) => setPassword(d, 'nobody', HASH),
      (d: Parameters<Parameters<typeof editUsersFile>[1]>[0]) => setDisabled(d, 'nobody', true),
      (d: Parameters<Parameters<typeof editUsersFile>[1]>[0]) => removeUser(d, 'nobody'),
    ]) {
      await assert.rejects(editUsersFile(file, edit), (e) => isPortcullisError(e, 'PC_USER_UNKNOWN'));
    }
    assert.equal(await readFile(file, 'utf8'), before);
  });

  it('never writes an edit that would make the file invalid', async () => {
    const file = await fileWith(valid());
    const before = await readFile(file, 'utf8');
    await assert.rejects(
      editUsersFile(file, (doc) => addUser(doc, { name: 'eve', passwordHash: 'plaintext-password' })),
      (e) => e instanceof UsersFileInvalid && e.issues[0]!.path === 'users.eve.password',
    );
    await assert.rejects(
      editUsersFile(file, (doc) => addUser(doc, { name: 'eve', passwordHash: HASH, email: 'eve@x\nRemote-User: admin' })),
      UsersFileInvalid,
    );
    assert.equal(await readFile(file, 'utf8'), before);
    assert.deepEqual((await readdir(join(file, '..'))).sort(), ['users.yaml'], 'no temporary or lock file left behind');
  });

  it('keeps the mode of an existing file and creates a new one 0600', async () => {
    const file = await fileWith(valid(), 0o640);
    await editUsersFile(file, (doc) => setDisabled(doc, 'alice', true));
    assert.equal((await stat(file)).mode & 0o777, 0o640);

    const fresh = join(await tmp(), 'sub', 'users.yaml');
    await assert.rejects(editUsersFile(fresh, (doc) => addUser(doc, { name: 'a', passwordHash: HASH })), /ENOENT/);
    await editUsersFile(fresh, (doc) => addUser(doc, { name: 'a', passwordHash: HASH }), { create: true });
    assert.equal((await stat(fresh)).mode & 0o777, 0o600);
    const r = await loadUsersFile(fresh);
    assert.ok(r.ok && r.users.has('a'));
  });

  it('serialises concurrent edits: none is lost', async () => {
    const file = await fileWith(valid());
    await Promise.all(
      ['u1', 'u2', 'u3', 'u4', 'u5'].map((name) => editUsersFile(file, (doc) => addUser(doc, { name, passwordHash: HASH }))),
    );
    const r = await loadUsersFile(file);
    assert.ok(r.ok);
    assert.equal(r.users.size, 7);
  });

  it('quotes a name YAML would otherwise read as a number', async () => {
    const file = await fileWith('users: {}\n');
    await editUsersFile(file, (doc) => addUser(doc, { name: '007', passwordHash: HASH }));
    const r = await loadUsersFile(file);
    assert.ok(r.ok && r.users.has('007'));
  });
});

describe('first start', () => {
  it('creates the file once with an admin whose random password is returned once', async () => {
    const file = join(await tmp(), 'config', 'users.yaml');
    const first = await ensureUsersFile(file, hasher, cryptoRandom);
    assert.equal(first.created, true);
    assert.match(first.adminPassword!, /^[2-9a-zA-Z]{6}(-[2-9a-zA-Z]{6}){3}$/);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const r = await loadUsersFile(file);
    assert.ok(r.ok);
    const admin = r.users.get('admin')!;
    assert.deepEqual(admin.groups, ['admins']);
    assert.equal(await hasher.verify(admin.passwordHash, first.adminPassword!), true);
    assert.ok(!(await readFile(file, 'utf8')).includes(first.adminPassword!), 'only the hash is stored');

    const text = await readFile(file, 'utf8');
    const again = await ensureUsersFile(file, hasher, cryptoRandom);
    assert.deepEqual(again, { created: false });
    assert.equal(await readFile(file, 'utf8'), text);
  });

  it('two processes starting at once create one admin', async () => {
    const file = join(await tmp(), 'users.yaml');
    const [a, b] = await Promise.all([ensureUsersFile(file, hasher, cryptoRandom), ensureUsersFile(file, hasher, cryptoRandom)]);
    assert.equal([a, b].filter((x) => x.created).length, 1);
    const winner = (a.created ? a : b).adminPassword!;
    const r = await loadUsersFile(file);
    assert.ok(r.ok && (await hasher.verify(r.users.get('admin')!.passwordHash, winner)));
  });

  it('random passwords are long and unpredictable', () => {
    const seen = new Set(Array.from({ length: 50 }, () => randomPassword(cryptoRandom)));
    assert.equal(seen.size, 50);
    for (const p of seen) assert.equal(p.replace(/-/g, '').length, 24);
  });
});
