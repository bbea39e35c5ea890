/**
 * The CLI commands that act on a running gateway (`sessions`, `unblock`, `lockdown`, `totp`,
 * `app-password`), run against a live gateway found through `--config`, as an operator runs them:
 * what they print, their exit status, and the effect on the gateway. Also what they say when the
 * gateway is not running or the token is wrong.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { parseArgs, UsageError, type CliIO, type Command } from '../../src/cli/args.js';
import { runCli } from '../../src/cli/main.js';
import { run as sessions } from '../../src/cli/commands/sessions.js';
import { run as unblock } from '../../src/cli/commands/unblock.js';
import { run as lockdown } from '../../src/cli/commands/lockdown.js';
import { run as totp } from '../../src/cli/commands/totp.js';
import { run as appPassword } from '../../src/cli/commands/app-password.js';
import { AdminClient } from '../../src/cli/admin-client.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';
import { freePort } from '../helpers/ports.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

let up: Upstream;
let tg: TestGateway;
let side: TmpDir;
let adminPort: number;

before(async () => {
  up = await startUpstream();
  side = await tmpDir('pc-cli-admin');
  adminPort = await freePort();
  tg = await startTestGateway(
    `
admin: { listen: "127.0.0.1:${adminPort}", token_file: ${JSON.stringify(join(side.dir, 'secrets', 'admin.token'))} }
networks:
  office: ["127.0.0.1/32"]
lockdown: { networks: [office] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    rules:
      - { paths: ["/public/**"], policy: bypass }
      - { policy: password }
    basic_auth: { paths: ["/dav/**"] }
`,
    { users: [{ name: 'alice', password: 'correct horse battery staple' }, { name: 'bob', password: 'another fine passphrase' }] },
  );
});

after(async () => {
  await tg?.close();
  await up?.close();
  await side?.cleanup();
});

function sink(): Writable & { text(): string } {
  const chunks: Buffer[] = [];
  const w = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      cb();
    },
  }) as Writable & { text(): string };
  w.text = () => Buffer.concat(chunks).toString('utf8');
  return w;
}

interface Ran {
  code: number;
  out: string;
  err: string;
}

async function cli(cmd: Command, argv: string[], opts: { stdin?: string; config?: string } = {}): Promise<Ran> {
  const stdout = sink();
  const stderr = sink();
  const io: CliIO = { stdout, stderr, stdin: Readable.from(opts.stdin !== undefined ? [opts.stdin] : []), env: { USER: 'tester' } };
  const code = await cmd(parseArgs([...argv, '--config', opts.config ?? tg.configFile]), io);
  return { code, out: stdout.text(), err: stderr.text() };
}

async function whole(argv: string[]): Promise<Ran> {
  const stdout = sink();
  const stderr = sink();
  const code = await runCli([...argv, '--config', tg.configFile], { stdout, stderr, stdin: Readable.from([]), env: {} });
  return { code, out: stdout.text(), err: stderr.text() };
}

const signIn = (user: string, ip = '127.0.0.1') => tg.gw.rt.sessions.create({ user, amr: ['pwd', 'otp'], pending: 'none', ip });

test('lockdown status, on and off from the command line, as the running gateway sees them', async () => {
  const s = await signIn('alice');
  let r = await cli(lockdown, ['status']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^lockdown: off/);

  r = await cli(lockdown, ['on']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^lockdown is ON: only office may reach apps; 1 session\(s\) revoked/);
  assert.equal(tg.gw.rt.lockdown.on, true);
  assert.equal(tg.gw.rt.lockdown.by, 'cli:tester');
  assert.equal(await tg.gw.rt.sessions.lookup(s.id), null);

  r = await cli(lockdown, ['status', '--json']);
  const v = JSON.parse(r.out);
  assert.equal(v.on, true);
  assert.equal(v.by, 'cli:tester');
  assert.deepEqual(v.networks, ['office']);

  r = await cli(lockdown, ['off']);
  assert.equal(r.code, 0);
  assert.match(r.out, /lockdown is off/);
  assert.equal(tg.gw.rt.lockdown.on, false);
  r = await cli(lockdown, ['off']);
  assert.match(r.out, /already off/);
});

test('sessions list shows users, addresses and handles but never ids; revoke by handle, user or all', async () => {
  const a = await signIn('alice', '127.0.0.1');
  const b = await signIn('bob', '127.0.0.1');
  let r = await cli(sessions, ['list']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^USER\s+CREATED\s+LAST SEEN\s+ADDRESS\s+FACTORS\s+STATE\s+HANDLE$/m);
  assert.match(r.out, /^alice\s.*127\.0\.0\.1\s+pwd\+otp\s+signed in\s+[A-Za-z0-9_-]{16}$/m);
  assert.ok(!r.out.includes(a.id) && !r.out.includes(b.id), 'no session ids');

  r = await cli(sessions, ['list', '--user', 'bob', '--json']);
  const rows = JSON.parse(r.out) as Array<{ user: string; handle: string }>;
  assert.deepEqual(rows.map((x) => x.user), ['bob']);

  r = await cli(sessions, ['revoke', '--handle', rows[0]!.handle]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^revoked 1 session \(session /);
  assert.equal(await tg.gw.rt.sessions.lookup(b.id), null);
  assert.ok(await tg.gw.rt.sessions.lookup(a.id));

  r = await cli(sessions, ['revoke', '--user', 'alice']);
  assert.match(r.out, /^revoked 1 session \(sessions of "alice"\)/);
  // the revoked cookie no longer opens the app
  const seen = up.requests.length;
  const res = await rawHttp(tg.port, get('/inbox', 'mail.test', [`Cookie: portcullis_dev_session=${a.id}`]));
  assert.notEqual(res.status, 200);
  assert.equal(up.requests.length, seen);

  await signIn('alice');
  await signIn('bob');
  r = await cli(sessions, ['revoke', '--all']);
  assert.match(r.out, /^revoked 2 sessions \(all sessions\)/);
  r = await cli(sessions, ['list']);
  assert.equal(r.out, 'no sessions\n');

  r = await cli(sessions, ['revoke', '--handle', 'AAAAAAAAAAAAAAAA']);
  assert.equal(r.code, 1);
  assert.match(r.err, /^portcullis sessions: no session with handle AAAAAAAAAAAAAAAA\n$/);
});

test('usage errors exit 2 without touching the gateway', async () => {
  await signIn('alice');
  for (const argv of [
    ['sessions', 'revoke'],
    ['sessions', 'revoke', '--user', 'alice', '--all'],
    ['sessions', 'drop'],
    ['unblock'],
    ['unblock', '--user', 'a', '--ip', '192.0.2.1'],
    ['lockdown', 'maybe'],
    ['totp', 'set', 'alice'],
    ['app-password', 'add', 'alice'],
    ['app-password', 'revoke', 'alice'],
    ['lockdown', 'on', '--force'],
  ]) {
    const r = await whole(argv);
    assert.equal(r.code, 2, argv.join(' '));
    assert.ok(r.err.length > 0);
  }
  assert.equal(tg.gw.rt.lockdown.on, false);
  assert.equal((await tg.gw.rt.stores.sessions.list()).length, 1);
  await assert.rejects(cli(sessions, ['revoke']), UsageError);
});

test('unblock lifts a user lockout and a source block on the running gateway', async () => {
  const rt = tg.gw.rt;
  const L = rt.config.loginLimits;
  for (let i = 0; i < L.perUser.maxFailures; i++) {
    await rt.throttle.recordFailure({ ip: '198.51.100.1', user: 'alice', passwordFingerprint: `f${i}`, familiar: false });
  }
  for (let i = 0; i < L.perIp.maxFailures; i++) {
    await rt.throttle.recordFailure({ ip: '2001:db8:5:6::1', user: `u${i % 2}`, passwordFingerprint: `g${i}`, familiar: false });
  }
  assert.equal((await rt.throttle.check({ ip: '198.51.100.2', user: 'alice' })).allowed, false);

  let r = await cli(unblock, ['--user', 'alice']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^lifted \d+ block\(s\) on user "alice"/);
  assert.equal((await rt.throttle.check({ ip: '198.51.100.2', user: 'alice' })).allowed, true);

  r = await cli(unblock, ['--ip', '2001:db8:5:6::99']);
  assert.match(r.out, /^lifted \d+ block\(s\) on address 2001:db8:5:6::99/, 'the /64 the address belongs to');
  assert.equal((await rt.throttle.check({ ip: '2001:db8:5:6::1', user: 'bob' })).allowed, true);

  r = await cli(unblock, ['--user', 'alice']);
  assert.match(r.out, /^no block in force on user "alice"/);
  r = await cli(unblock, ['--ip', 'not-an-ip']);
  assert.equal(r.code, 1);
  assert.match(r.err, /IPv4 or IPv6/);
});

test('totp set provisions a device (secret from argv or stdin); totp reset forgets it', async () => {
  const rt = tg.gw.rt;
  let r = await cli(totp, ['set', 'alice', '--secret', 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^TOTP device provisioned for "alice"/);
  const rec = await rt.stores.state.getTotp('alice');
  assert.equal(rec?.source, 'provisioned');
  assert.equal(rt.box.open(rec!.secret, 'totp:alice'), 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP');

  r = await cli(totp, ['set', 'bob', '--secret', '-'], { stdin: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n' });
  assert.equal(r.code, 0, r.err);
  assert.equal(rt.box.open((await rt.stores.state.getTotp('bob'))!.secret, 'totp:bob'), 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');

  r = await cli(totp, ['set', 'alice', '--secret', 'too-short']);
  assert.equal(r.code, 1);
  assert.match(r.err, /^portcullis totp: the TOTP secret/);
  r = await cli(totp, ['set', 'nobody', '--secret', 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP']);
  assert.equal(r.code, 1);
  assert.match(r.err, /no user "nobody"/);

  r = await cli(totp, ['reset', 'alice']);
  assert.equal(r.code, 0);
  assert.match(r.out, /TOTP device and recovery codes of "alice" removed/);
  assert.equal(await rt.stores.state.getTotp('alice'), null);
  r = await cli(totp, ['reset', 'alice']);
  assert.match(r.out, /"alice" had no TOTP device/);
});

test('app-password add prints it once, and it opens Basic paths through the gateway until revoked', async () => {
  let r = await cli(appPassword, ['add', 'alice', '--label', 'phone']);
  assert.equal(r.code, 0, r.err);
  const password = r.out.trim();
  assert.match(password, /^pcap_[a-z2-7]{32}$/, 'stdout carries the password alone');
  assert.match(r.err, /shown once/);

  const basic = `Authorization: Basic ${Buffer.from(`alice:${password}`).toString('base64')}`;
  const ok = await rawHttp(tg.port, get('/dav/calendar', 'mail.test', [basic]), { localAddress: '127.0.0.1' });
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.body).headers['remote-user'], 'alice');
  assert.equal(JSON.parse(ok.body).headers.authorization, undefined, 'the app password is not passed on');

  r = await cli(appPassword, ['list', 'alice']);
  assert.match(r.out, /^LABEL\s+CREATED\s+LAST USED$/m);
  assert.match(r.out, /^phone\s/m);
  assert.ok(!r.out.includes(password));
  r = await cli(appPassword, ['add', 'alice', '--label', 'phone']);
  assert.equal(r.code, 1);
  assert.match(r.err, /already has an app password labelled "phone"/);

  r = await cli(appPassword, ['revoke', 'alice', 'phone']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /app password "phone" of "alice" revoked/);
  const after = await rawHttp(tg.port, get('/dav/calendar', 'mail.test', [basic]), { localAddress: '127.0.0.1' });
  assert.equal(after.status, 401);
  r = await cli(appPassword, ['list', 'alice', '--json']);
  assert.deepEqual(JSON.parse(r.out), []);
  r = await cli(appPassword, ['revoke', 'alice', 'phone']);
  assert.equal(r.code, 1);
  assert.match(r.err, /no app password labelled "phone"/);
});

test('passkey list and remove, as docs/passkeys.md prints them: the key goes, and so do the sessions', async () => {
  const rt = tg.gw.rt;
  await rt.stores.state.addPasskey('bob', { id: 'lost-key-1', publicKey: 'x', counter: 0, transports: ['usb'], name: 'yubikey', createdAt: Date.UTC(2026, 0, 2) }, 10);
  const s = await signIn('bob');
  let r = await whole(['passkey', 'list', 'bob']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^ID\s+NAME\s+ADDED\s+LAST USED$/m);
  assert.match(r.out, /^lost-key-1\s+yubikey\s/m);
  r = await whole(['passkey', 'list', 'bob', '--json']);
  assert.deepEqual((JSON.parse(r.out) as Array<{ id: string }>).map((p) => p.id), ['lost-key-1']);
  r = await whole(['passkey', 'remove', 'bob', 'lost-key-1']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^passkey lost-key-1 of "bob" removed; 1 session\(s\) ended$/m);
  assert.deepEqual(await rt.stores.state.listPasskeys('bob'), []);
  assert.equal(await rt.sessions.lookup(s.id), null, "bob's session ended");
  r = await whole(['passkey', 'list', 'bob']);
  assert.match(r.out, /"bob" has no passkeys/);
  r = await whole(['passkey', 'remove', 'bob']);
  assert.equal(r.code, 2, 'a missing id is a usage error');
});

test('reload through the admin API keeps the running config when the new one is invalid', async () => {
  const c = await AdminClient.connect(tg.configFile);
  try {
    const original = await readFile(tg.configFile, 'utf8');
    await writeFile(tg.configFile, `${original}\nbogus_key: 1\n`);
    await assert.rejects(c.post('/api/reload'), (e: Error & { code?: string }) => e.code === 'PC_CONFIG_INVALID' && /bogus_key/.test(e.message));
    assert.deepEqual(tg.gw.rt.config.apps.map((a) => a.name), ['mail']);
    await writeFile(tg.configFile, original);
    const ok = await c.post<{ reloaded: boolean; apps: string[] }>('/api/reload');
    assert.deepEqual(ok, { reloaded: true, apps: ['mail'], users: 2 });
  } finally {
    await c.close();
  }
});

test('a gateway that is not running, a missing token file and a wrong token each get a clear error and exit 1', async () => {
  const dir = join(side.dir, 'other');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const deadPort = await freePort();
  const tokenFile = join(dir, 'admin.token');
  const config = join(dir, 'portcullis.yaml');
  const base = (await readFile(tg.configFile, 'utf8')).replace(/^admin: .*$/m, `admin: { listen: "127.0.0.1:${deadPort}", token_file: ${JSON.stringify(tokenFile)} }`);
  await writeFile(config, base);

  let r = await cli(lockdown, ['status'], { config });
  assert.equal(r.code, 1);
  assert.match(r.err, /no admin token at .*admin\.token: the gateway creates it when it starts/);

  await writeFile(tokenFile, `${'x'.repeat(43)}\n`, { mode: 0o600 });
  r = await cli(lockdown, ['status'], { config });
  assert.equal(r.code, 1);
  assert.equal(r.err, `portcullis lockdown: is the gateway running? admin listener at http://127.0.0.1:${deadPort} refused the connection\n`);

  // the live gateway's listener, someone else's token
  await writeFile(config, (await readFile(tg.configFile, 'utf8')).replace(/token_file: [^}]*/, `token_file: ${JSON.stringify(tokenFile)} `));
  r = await cli(lockdown, ['on'], { config });
  assert.equal(r.code, 1);
  assert.match(r.err, /refused the admin token/);
  assert.equal(tg.gw.rt.lockdown.on, false);

  r = await cli(lockdown, ['status'], { config: join(dir, 'missing.yaml') });
  assert.equal(r.code, 1);
  assert.match(r.err, /cannot read the configuration/);
});
