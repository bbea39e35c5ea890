/**
 * A read-only configuration directory, as a container mounts it (`-v /srv/etc:/etc/portcullis:ro`,
 * a Kubernetes ConfigMap): the gateway runs as an unprivileged user (uid 10001, as in the image)
 * that cannot write there. With `users_file` under `data_dir` everything works (users file, state,
 * first admin password in a 0600 file, `portcullis user add`); with the default users file next
 * to the config, or a data_dir it cannot write, `serve` and `user add` stop with exit 1 and a
 * message saying what cannot be written and what to set, instead of a bare EACCES; `allow add`,
 * which edits the configuration itself, says to edit it where it is managed.
 *
 * As root (permissions do not stop root) the CLI runs under `setpriv --reuid=10001`; as another
 * user it runs as that user, and the directories are made read-only with chmod.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, chown, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findBinary, tmpDir } from '../helpers/tmp.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const IS_ROOT = process.getuid?.() === 0;
const SETPRIV = findBinary('setpriv', ['/usr/bin/setpriv', '/bin/setpriv']);
const skip = IS_ROOT && !SETPRIV ? 'running as root without setpriv (util-linux) to drop to uid 10001' : false;
const UID = IS_ROOT ? 10001 : process.getuid!();
const GID = IS_ROOT ? 10001 : process.getgid!();

interface Run {
  code: number | null;
  out: string;
  err: string;
}

function cli(args: string[], opts: { stdin?: string; cwd: string; until?: RegExp; timeoutMs?: number }): Promise<Run> {
  const argv = IS_ROOT ? [SETPRIV!, '--reuid=10001', '--regid=10001', '--clear-groups', process.execPath, CLI, ...args] : [process.execPath, CLI, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { cwd: opts.cwd, env: { PATH: process.env.PATH ?? '', PORTCULLIS_ARGON2: 'test' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out: ${args.join(' ')}\n${out}\n${err}`));
    }, opts.timeoutMs ?? 15_000);
    const check = () => {
      if (opts.until && opts.until.test(out + err)) child.kill('SIGINT'); // SIGINT: no drain
    };
    child.stdout.on('data', (c: Buffer) => ((out += c.toString()), check()));
    child.stderr.on('data', (c: Buffer) => ((err += c.toString()), check()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
    child.stdin.end(opts.stdin ?? '');
  });
}

/** root/etc (read-only, holds portcullis.yaml) and root/data (writable by the service user, or not). */
async function layout(config: (data: string) => string, opts: { dataWritable?: boolean } = {}) {
  const tmp = await tmpDir('pc-roconf');
  await chmod(tmp.dir, 0o755);
  const etc = join(tmp.dir, 'etc');
  const data = join(tmp.dir, 'data');
  await mkdir(etc);
  await mkdir(data);
  await writeFile(join(etc, 'portcullis.yaml'), config(data), { mode: 0o644 });
  await chmod(etc, 0o555);
  if (IS_ROOT) await chown(data, UID, GID);
  await chmod(data, opts.dataWritable === false ? 0o555 : 0o700);
  return { tmp, etc, data, config: join(etc, 'portcullis.yaml') };
}

const APP = `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
apps:
  - name: demo
    hosts: [localhost]
    upstream: builtin:whoami
    rules: [{ policy: password }]
`;

test('users_file under data_dir: the gateway starts with a read-only config directory; the first admin password is in a 0600 file', { skip }, async (t) => {
  const l = await layout((data) => `data_dir: ${JSON.stringify(data)}\nusers_file: ${JSON.stringify(join(data, 'users.yaml'))}\n${APP}`);
  t.after(() => l.tmp.cleanup());
  const r = await cli(['serve', '--config', l.config], { cwd: l.etc, until: /portcullis listening/ });
  assert.match(r.err, /created .*users\.yaml with user "admin"/, r.err + r.out);
  assert.match(r.out + r.err, /portcullis listening/);
  const pw = await stat(join(l.data, 'initial-admin-password'));
  assert.equal(pw.mode & 0o777, 0o600);
  assert.equal(pw.uid, UID);
  assert.ok((await readdir(l.data)).includes('secret.key'), 'state and keys live under data_dir');
  assert.deepEqual(await readdir(l.etc), ['portcullis.yaml'], 'nothing was written next to the config');
  const add = await cli(['user', 'add', 'bob', '--password-stdin', '--config', l.config], { cwd: l.etc, stdin: 'harbour lantern quartz 4471\n' });
  assert.equal(add.code, 0, add.err);
  assert.match(add.out, /user "bob" added/);
  const allow = await cli(['allow', 'add', 'office', '192.0.2.0/24', '--config', l.config], { cwd: l.etc });
  assert.equal(allow.code, 1, 'the configuration itself cannot be edited in place');
  assert.match(allow.err, /permission denied; edit the configuration where it is managed/);
});

test('default users file next to a read-only config: serve and user add exit 1 saying what to set', { skip }, async (t) => {
  const l = await layout((data) => `data_dir: ${JSON.stringify(data)}\n${APP}`);
  t.after(() => l.tmp.cleanup());
  const expected = `users_file: ${join(l.data, 'users.yaml')}`;
  const serve = await cli(['serve', '--config', l.config], { cwd: l.etc });
  assert.equal(serve.code, 1);
  assert.match(serve.err, /the users file .*config\/users\.yaml cannot be written: permission denied \(EACCES/);
  assert.ok(serve.err.includes(expected), serve.err);
  assert.doesNotMatch(serve.err, /password:/, 'no admin password was announced for a file that was never written');
  assert.deepEqual(await readdir(l.data).then((f) => f.filter((x) => x === 'initial-admin-password')), []);
  const add = await cli(['user', 'add', 'bob', '--password-stdin', '--config', l.config], { cwd: l.etc, stdin: 'harbour lantern quartz 4471\n' });
  assert.equal(add.code, 1);
  assert.match(add.err, /^portcullis user: the users file .* cannot be written/);
  assert.ok(add.err.includes(expected), add.err);
});

test('a data_dir the service user cannot write: serve exits 1 before creating anything', { skip }, async (t) => {
  const l = await layout((data) => `data_dir: ${JSON.stringify(data)}\nusers_file: ${JSON.stringify(join(data, 'users.yaml'))}\n${APP}`, { dataWritable: false });
  t.after(() => l.tmp.cleanup());
  const serve = await cli(['serve', '--config', l.config], { cwd: l.etc });
  assert.equal(serve.code, 1);
  assert.match(serve.err, /data_dir .* cannot be written: permission denied \(EACCES\) for this process \(uid \d+, gid \d+\)\. It holds the secret key/);
  assert.deepEqual(await readdir(l.data), []);
});
