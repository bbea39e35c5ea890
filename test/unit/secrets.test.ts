/**
 * Secrets the way containers hand them over (issue 14, item 3): a config secret written inline,
 * as `{ file: PATH }` or as `{ env: NAME }`, resolved at load with FILE:LINE:COL errors that never
 * echo the secret; the sealing key from `PORTCULLIS_SECRET_KEY_FILE`; key and token files that the
 * group may read (0640) when root or this user owns them, as Kubernetes Secret volumes are, and
 * nothing wider; the first-start admin password in a 0600 file under data_dir.
 */
import { strict as assert } from 'node:assert';
import { chmod, chown, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { formatIssues, loadConfigText, type ConfigIssue, type LoadResult } from '../../src/config/index.js';
import { SecretBox } from '../../src/auth/secret-box.js';
import { assertPrivateFile } from '../../src/util/atomic-write.js';
import { isPortcullisError } from '../../src/errors.js';
import { Gateway } from '../../src/main.js';
import { TEST_PARAMS } from '../../src/auth/password.js';
import { silentLogger } from '../../src/audit/logger.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const dirs: TmpDir[] = [];
after(async () => {
  for (const d of dirs) await d.cleanup();
});
async function tmp(): Promise<string> {
  const d = await tmpDir('pc-secrets-');
  dirs.push(d);
  return d.dir;
}

const APPS = 'apps:\n  - { name: demo, hosts: [localhost], upstream: builtin:whoami, rules: [{ policy: mfa }] }\n';

function ok(r: LoadResult) {
  if (!r.ok) assert.fail(`expected a valid config, got:\n${formatIssues(r.issues)}`);
  return r.config;
}
function issues(r: LoadResult): ConfigIssue[] {
  assert.ok(!r.ok, 'expected the config to be refused');
  return r.issues;
}

describe('secret config values: inline, { file } or { env }', () => {
  it('resolves the Redis URL, the webhook and the SMTP URL from a file or the environment', async () => {
    const dir = await tmp();
    await writeFile(join(dir, 'redis'), 'redis://:s3cret-pw@10.0.0.1:6379/0\n', { mode: 0o640 });
    await writeFile(join(dir, 'smtp'), 'smtps://mailer:pw@mail.example.org\r\n');
    const text = `store: { file: redis }\nworkers: 2\nnotify:\n  webhook: { env: HOOK }\n  smtp: { url: { file: ${JSON.stringify(join(dir, 'smtp'))} }, from: a@example.org, to: [b@example.org] }\n${APPS}`;
    const c = ok(loadConfigText(text, 'p.yaml', { cwd: dir, env: { HOOK: 'https://hooks.example.org/x?token=t0ken' } }));
    assert.deepEqual(c.store, { kind: 'redis', url: 'redis://:s3cret-pw@10.0.0.1:6379/0' });
    assert.equal(c.notify.webhook, 'https://hooks.example.org/x?token=t0ken');
    assert.equal(c.notify.smtp?.url, 'smtps://mailer:pw@mail.example.org');
    // inline text still works as before
    assert.deepEqual(ok(loadConfigText(`store: "redis://10.0.0.2:6379/1"\n${APPS}`, 'p.yaml')).store, { kind: 'redis', url: 'redis://10.0.0.2:6379/1' });
  });

  it('a missing file or variable is an error at its FILE:LINE:COL; the secret is never echoed', async () => {
    const dir = await tmp();
    const text = `store: { file: /nonexistent/redis-url }\nnotify:\n  webhook: { env: PC_TEST_UNSET_HOOK }\n${APPS}`;
    const list = issues(loadConfigText(text, 'p.yaml', { cwd: dir, env: {} }));
    assert.equal(list.length, 2, formatIssues(list));
    assert.deepEqual([list[0]!.line, list[0]!.col, list[0]!.path], [1, 16, 'store.file']);
    assert.match(list[0]!.message, /cannot read the secret file \/nonexistent\/redis-url: no such file/);
    assert.deepEqual([list[1]!.line, list[1]!.path], [3, 'notify.webhook.env']);
    assert.match(list[1]!.message, /environment variable PC_TEST_UNSET_HOOK is not set/);
    assert.match(formatIssues(list), /^p\.yaml:1:16 store\.file: /);

    // a bad value from a secret source is refused without showing it
    await writeFile(join(dir, 'bad'), 'redis://:hunter2-pw@10.0.0.1:6379/0#frag\n');
    const bad = issues(loadConfigText(`store: { file: bad }\n${APPS}`, 'p.yaml', { cwd: dir }));
    assert.equal(bad.length, 1);
    assert.match(bad[0]!.message, /the Redis URL from file .*bad cannot have a fragment/);
    assert.ok(!formatIssues(bad).includes('hunter2'), formatIssues(bad));
    const inline = issues(loadConfigText(`store: "redis://:hunter2-pw@10.0.0.1:6379/0#frag"\n${APPS}`, 'p.yaml'));
    assert.ok(!formatIssues(inline).includes('hunter2'), formatIssues(inline));
    const env = issues(loadConfigText(`notify: { webhook: { env: HOOK } }\n${APPS}`, 'p.yaml', { env: { HOOK: 'ftp://tok3n-value@x' } }));
    assert.ok(!formatIssues(env).includes('tok3n'), formatIssues(env));
  });

  it('refuses an empty secret, both file and env, and a stray key', () => {
    assert.match(issues(loadConfigText(`store: { env: EMPTY }\n${APPS}`, 'p.yaml', { env: { EMPTY: '' } }))[0]!.message, /is empty/);
    assert.match(issues(loadConfigText(`store: { env: A, file: b }\n${APPS}`, 'p.yaml', { env: { A: 'memory' } }))[0]!.message, /exactly one/);
    assert.ok(issues(loadConfigText(`store: { path: b }\n${APPS}`, 'p.yaml')).some((i) => /unknown key "path"/.test(i.message)));
  });
});

describe('key and token files: 0600, or 0640 owned by root or this user', () => {
  const refused = (e: unknown) => isPortcullisError(e, 'PC_CONFIG_INVALID') && /accessible by group or others/.test((e as Error).message);

  it('accepts 0600 and 0640 (root- or self-owned), refuses group write and anything for others', async () => {
    const f = join(await tmp(), 'token');
    await writeFile(f, 'x');
    for (const m of [0o600, 0o640, 0o400, 0o440]) {
      await chmod(f, m);
      await assertPrivateFile(f);
    }
    for (const m of [0o660, 0o644, 0o604, 0o650, 0o641]) {
      await chmod(f, m);
      await assert.rejects(assertPrivateFile(f), refused, m.toString(8));
    }
  });

  it('refuses 0640 when someone else owns the file (needs root to set up)', { skip: process.getuid?.() !== 0 }, async () => {
    const f = join(await tmp(), 'token');
    await writeFile(f, 'x', { mode: 0o600 });
    await chown(f, 4242, 4242);
    await assertPrivateFile(f); // 0600 of another owner: only that owner (and root) can read it
    await chmod(f, 0o640);
    await assert.rejects(assertPrivateFile(f), refused);
  });

  it('refuses 0640 when the group is not one of this process (e.g. `users`: every local account)', { skip: process.getuid?.() !== 0 }, async () => {
    const f = join(await tmp(), 'token');
    await writeFile(f, 'x', { mode: 0o640 });
    await chown(f, process.getuid!(), 4243); // our own file, but a group we are not in
    await assert.rejects(assertPrivateFile(f), refused);
    await chown(f, process.getuid!(), process.getgid!());
    await assertPrivateFile(f);
  });

  it('PORTCULLIS_SECRET_KEY_FILE: read from a mounted (0640) file, never created; both variables is an error', async () => {
    const dir = await tmp();
    const key = Buffer.alloc(32, 9);
    const f = join(dir, 'mounted-key');
    await writeFile(f, `${key.toString('base64')}\n`, { mode: 0o640 });
    const fromFile = await SecretBox.fromDataDir(join(dir, 'data'), { PORTCULLIS_SECRET_KEY_FILE: f });
    assert.equal(fromFile.hmac('p:x', 'v'), new SecretBox(key).hmac('p:x', 'v'));
    await assert.rejects(stat(join(dir, 'data', 'secret.key')), /ENOENT/, 'no key is generated in data_dir');
    await assert.rejects(SecretBox.fromDataDir(dir, { PORTCULLIS_SECRET_KEY_FILE: join(dir, 'missing') }), /no such file/);
    await assert.rejects(SecretBox.fromDataDir(dir, { PORTCULLIS_SECRET_KEY_FILE: f, PORTCULLIS_SECRET_KEY: key.toString('hex') }), /not both/);
    await chmod(f, 0o644);
    await assert.rejects(SecretBox.fromDataDir(dir, { PORTCULLIS_SECRET_KEY_FILE: f }), refused);
    await writeFile(f, 'hunter2\n', { mode: 0o600 });
    await chmod(f, 0o600);
    await assert.rejects(SecretBox.fromDataDir(dir, { PORTCULLIS_SECRET_KEY_FILE: f }), (e) => !(e as Error).message.includes('hunter2'));
  });
});

describe('first start', () => {
  it('writes the admin password to a 0600 file in data_dir as well as announcing it', async () => {
    const dir = await tmp();
    const configFile = join(dir, 'portcullis.yaml');
    await writeFile(
      configFile,
      `listen: "127.0.0.1:0"\nusers_file: ${JSON.stringify(join(dir, 'users.yaml'))}\ndata_dir: ${JSON.stringify(join(dir, 'data'))}\n` +
        `admin: { listen: "127.0.0.1:0" }\n${APPS}`,
    );
    const said: string[] = [];
    const gw = await Gateway.start({ configFile, port: 0, host: '127.0.0.1', logger: silentLogger(), argon2: TEST_PARAMS, watch: false, announce: (l) => said.push(l) });
    try {
      const file = join(dir, 'data', 'initial-admin-password');
      const st = await stat(file);
      assert.equal(st.mode & 0o777, 0o600);
      const pw = (await readFile(file, 'utf8')).trim();
      assert.match(pw, /^[a-zA-Z0-9]{6}(-[a-zA-Z0-9]{6}){3}$/);
      assert.ok(said.some((l) => l.includes(pw)), 'also announced');
      assert.ok(said.some((l) => l.includes(file)), 'the announcement names the file');
    } finally {
      await gw.close();
    }
  });
});
