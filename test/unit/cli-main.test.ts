/**
 * The `portcullis` program as the README shows it: the built bin is executable and runs on its own
 * (shebang, execute bit kept by `npm run build`), `--version`
 * prints package.json's version, every command and sub-command answers `--help`/`-h` with its
 * usage and exit 0 without doing anything, the exit codes are the documented ones (0 ok, 1 error,
 * 2 usage), and `--config` defaults to `$PORTCULLIS_CONFIG`, else `config/portcullis.yaml`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { runCommand } from '../helpers/cli.js';
import { COMMANDS } from '../../src/cli/main.js';
import { HELP, markdownReference } from '../../src/cli/help.js';
import { defaultConfig, parseArgs, scanForHelp } from '../../src/cli/args.js';
import { freePort } from '../helpers/ports.js';
import { tmpDir } from '../helpers/tmp.js';

const run = promisify(execFile);
/** This file is dist/test/unit/cli-main.test.js; the package root is three levels up. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

test('after npm run build the bin is executable, starts with a node shebang and runs on its own', async () => {
  const st = statSync(BIN);
  assert.equal(st.mode & 0o111, 0o111, `${BIN} is not executable by everyone (mode ${(st.mode & 0o777).toString(8)})`);
  assert.equal(readFileSync(BIN, 'utf8').split('\n')[0], '#!/usr/bin/env node');
  // executed directly, as a shell runs it from PATH (no `node` in front)
  const { stdout } = await run(BIN, ['--version'], { env: { ...process.env, PORTCULLIS_CONFIG: '' } });
  assert.equal(stdout, `portcullis ${VERSION}\n`);
  const help = await run(BIN, ['--help']);
  assert.match(help.stdout, /^usage: portcullis COMMAND/);
});

test('--version, --help, -h and help print to stdout and exit 0; no command is a usage error (2, stderr)', async () => {
  for (const v of [['--version'], ['-V']]) {
    const r = await runCommand(v);
    assert.deepEqual([r.code, r.out, r.err], [0, `portcullis ${VERSION}\n`, '']);
  }
  for (const h of [['--help'], ['-h'], ['help']]) {
    const r = await runCommand(h);
    assert.equal(r.code, 0, h.join(' '));
    assert.equal(r.err, '');
    for (const name of Object.keys(COMMANDS)) assert.ok(r.out.includes(`  ${name} `), `the main help lists ${name}`);
    assert.match(r.out, /Exit status: 0 success; 1 error .*; 2 usage error/s);
    assert.match(r.out, /\$PORTCULLIS_CONFIG, else config\/portcullis\.yaml/);
  }
  const none = await runCommand([]);
  assert.equal(none.code, 2);
  assert.equal(none.out, '');
  assert.match(none.err, /^usage: portcullis COMMAND/);
  const topic = await runCommand(['help', 'lockdown']);
  assert.equal(topic.code, 0);
  assert.match(topic.out, /^usage: portcullis lockdown on\|off\|status/);
  assert.equal((await runCommand(['help', 'nonesuch'])).code, 2);
});

test('every command has help, and every help names only the sub-commands the command accepts', async () => {
  assert.deepEqual(Object.keys(HELP).sort(), Object.keys(COMMANDS).sort());
  for (const [name, h] of Object.entries(HELP)) {
    if (!h.subs) continue;
    // the command's own refusal of an unknown sub-command lists what it accepts
    const r = await runCommand([name, 'nonesuch']);
    assert.equal(r.code, 2, `${name} nonesuch`);
    for (const sub of Object.keys(h.subs)) assert.match(r.err, new RegExp(`\\b${sub}\\b`), `${name} accepts ${sub}`);
  }
});

test('--help and -h on every command and sub-command print its usage and exit 0, touching nothing', async () => {
  // a config that does not exist and no stdin: had any command run, it would fail
  const env = { PORTCULLIS_CONFIG: '/nonexistent/portcullis.yaml' };
  for (const [name, h] of Object.entries(HELP)) {
    for (const flag of ['--help', '-h']) {
      const r = await runCommand([name, flag], { env });
      assert.equal(r.code, 0, `${name} ${flag}: ${r.err}`);
      assert.equal(r.err, '');
      assert.ok(r.out.startsWith(`usage: portcullis ${name}`), `${name} ${flag}:\n${r.out}`);
      assert.match(r.out, /--config FILE/);
      assert.match(r.out, /Exit status: 0 success/);
      for (const sub of Object.keys(h.subs ?? {})) assert.match(r.out, new RegExp(`\\n  ${sub} `), `${name} --help lists ${sub}`);
    }
    for (const sub of Object.keys(h.subs ?? {})) {
      for (const argv of [[name, sub, '--help'], [name, sub, '-h'], [name, '--help', sub], [name, sub, 'alice', '--config', 'x.yaml', '-h']]) {
        const r = await runCommand(argv, { env });
        assert.equal(r.code, 0, `${argv.join(' ')}: ${r.err}`);
        assert.equal(r.out, (await runCommand(['help', name, sub])).out);
        assert.ok(r.out.startsWith(`usage: portcullis ${name} ${sub}`), `${argv.join(' ')}:\n${r.out}`);
      }
    }
  }
  // `user add alice --password-stdin --help` prints help; it does not wait for a password
  const r = await runCommand(['user', 'add', 'alice', '--password-stdin', '--help'], { env });
  assert.equal(r.code, 0);
  // after `--`, -h is a word, not a request for help
  assert.equal(scanForHelp(['add', '--', '-h']).help, false);
  // an option's value is not a request for help
  assert.deepEqual(scanForHelp(['add', 'alice', '--label', '-h']), { help: false, first: 'add' });
  assert.deepEqual(scanForHelp(['--config', 'c.yaml', 'revoke', '-h']), { help: true, first: 'revoke' });
});

test('exit codes: 2 for usage errors, 1 for errors, 0 for success', async (t) => {
  const dir = await tmpDir('pc-cli-main');
  t.after(() => dir.cleanup());
  const bad = join(dir.dir, 'bad.yaml');
  await writeFile(bad, 'listen: "127.0.0.1:8080"\nnonesuch: 1\napps: []\n');
  const adminPort = await freePort();
  const good = join(dir.dir, 'good.yaml');
  await writeFile(
    good,
    [
      'listen: "127.0.0.1:8080"',
      `data_dir: ${JSON.stringify(join(dir.dir, 'data'))}`,
      `users_file: ${JSON.stringify(join(dir.dir, 'users.yaml'))}`,
      `admin: { listen: "127.0.0.1:${adminPort}", token_file: ${JSON.stringify(join(dir.dir, 'admin.token'))} }`,
      'apps:',
      '  - { name: app, hosts: [app.test], upstream: "builtin:whoami", rules: [{ policy: password }] }',
      '',
    ].join('\n'),
  );
  await writeFile(join(dir.dir, 'admin.token'), 'x'.repeat(43) + '\n', { mode: 0o600 });
  const cases: Array<[string[], number]> = [
    [['nonesuch'], 2],
    [['--nonesuch'], 2],
    [['check-config', '--nonesuch'], 2],
    [['check-config', 'extra'], 2],
    [['check-config', '--config'], 2],
    [['check-config', '--config='], 2],
    [['explain', '--config', good, '--ip', '192.0.2.1'], 2],
    [['explain', '--config', good, '--url', 'https://app.test/', '--ip', 'not-an-ip'], 2],
    [['report', '--config', good, '--since', 'yesterday'], 2],
    [['lockdown', '--config', good], 2],
    [['healthcheck', '--config', good, '--timeout', 'soon'], 2],
    [['check-config', '--config', bad], 1],
    [['check-config', '--config', join(dir.dir, 'missing.yaml')], 1],
    [['user', 'list', '--config', bad], 1],
    [['lockdown', 'status', '--config', good], 1], // nothing listens on the admin port
    [['check-config', '--config', good], 0],
    [['explain', '--config', good, '--url', 'https://app.test/', '--ip', '192.0.2.1'], 0],
  ];
  for (const [argv, code] of cases) {
    const r = await runCommand(argv);
    assert.equal(r.code, code, `${argv.join(' ')} -> ${r.code}\n${r.out}${r.err}`);
    if (code !== 0) assert.notEqual(r.err, '', `${argv.join(' ')} says why on stderr`);
    if (code === 2) assert.match(r.err, /--help|usage: portcullis/, 'a usage error points at the help');
  }
});

test('--config defaults to $PORTCULLIS_CONFIG, else config/portcullis.yaml; --config wins', async (t) => {
  assert.equal(defaultConfig({}), 'config/portcullis.yaml');
  assert.equal(defaultConfig({ PORTCULLIS_CONFIG: '' }), 'config/portcullis.yaml');
  assert.equal(defaultConfig({ PORTCULLIS_CONFIG: '/etc/portcullis/portcullis.yaml' }), '/etc/portcullis/portcullis.yaml');
  assert.equal(parseArgs([], { PORTCULLIS_CONFIG: '/a.yaml' }).config, '/a.yaml');
  assert.equal(parseArgs(['--config', '/b.yaml'], { PORTCULLIS_CONFIG: '/a.yaml' }).config, '/b.yaml');
  assert.equal(parseArgs([]).config, 'config/portcullis.yaml');

  const dir = await tmpDir('pc-cli-env');
  t.after(() => dir.cleanup());
  const file = join(dir.dir, 'from-env.yaml');
  await writeFile(
    file,
    `listen: "127.0.0.1:8080"\ndata_dir: ${JSON.stringify(join(dir.dir, 'data'))}\nusers_file: ${JSON.stringify(join(dir.dir, 'users.yaml'))}\napps:\n  - { name: app, hosts: [app.test], upstream: "builtin:whoami", rules: [{ policy: deny }] }\n`,
  );
  const r = await runCommand(['check-config'], { env: { PORTCULLIS_CONFIG: file } });
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, `${file}: ok (1 apps)\n`);
  const over = await runCommand(['check-config', '--config', join(dir.dir, 'missing.yaml')], { env: { PORTCULLIS_CONFIG: file } });
  assert.equal(over.code, 1);
  assert.match(over.err, /missing\.yaml/);
});

test('docs/cli.md is the help, as generated by `npm run docs:cli` (never out of date)', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'cli.md'), 'utf8');
  assert.ok(doc === markdownReference(), 'docs/cli.md differs from src/cli/help.ts: run `npm run docs:cli`');
  for (const [name, h] of Object.entries(HELP)) {
    assert.ok(doc.includes(`### ${name}\n`));
    for (const line of h.usage.split('\n')) assert.ok(doc.includes(line), line);
  }
});
