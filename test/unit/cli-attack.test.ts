/**
 * `portcullis attack status|off` and the admin API behind it (`GET /api/attack`,
 * `POST /api/attack {off: true}`), against a live gateway found through `--config`: what it
 * prints, its exit status, and the effect on the running gateway's posture.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { parseArgs, type CliIO } from '../../src/cli/args.js';
import { runCli } from '../../src/cli/main.js';
import { run as attack } from '../../src/cli/commands/attack.js';
import { AdminClient, AdminClientError } from '../../src/cli/admin-client.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

let tg: TestGateway;
let side: TmpDir;

before(async () => {
  side = await tmpDir('pc-cli-attack');
  const adminPort = await freePort();
  tg = await startTestGateway(
    `
admin: { listen: "127.0.0.1:${adminPort}", token_file: ${JSON.stringify(join(side.dir, 'secrets', 'admin.token'))} }
attack: { threshold: 3, cooldown: 10m }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "builtin:whoami"
    rules:
      - { policy: password }
`,
    { users: [{ name: 'alice', password: 'correct horse battery staple' }] },
  );
});

after(async () => {
  await tg?.close();
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

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = sink();
  const stderr = sink();
  const io: CliIO = { stdout, stderr, stdin: Readable.from([]), env: { USER: 'tester' } };
  const code = await attack(parseArgs([...argv, '--config', tg.configFile]), io);
  return { code, out: stdout.text(), err: stderr.text() };
}

test('attack status, then the posture starts on the rate, then attack off ends it', async () => {
  const rt = tg.gw.rt;
  const events: Array<{ event: string; reason?: string }> = [];
  rt.audit.on((e) => events.push(e));
  let r = await cli(['status']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^attack posture: off\n/);
  assert.match(r.out, /threshold 3 a minute/);
  assert.match(r.out, /passwords marked sprayed: 0/);

  for (let i = 0; i < 4; i++) await rt.attack.recordFailure(`192.0.2.${i}/24`);
  await rt.attack.tick();
  assert.equal(rt.attack.active, true);

  r = await cli(['status']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^attack posture: ON since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d.*Z; sign-ins from networks unfamiliar to the account need a second factor/);
  assert.match(r.out, /failed sign-ins: 4 this minute/);

  r = await cli(['status', '--json']);
  const v = JSON.parse(r.out);
  assert.equal(v.active, true);
  assert.equal(v.mode, 'threshold');
  assert.equal(v.threshold, 3);
  assert.equal(v.cooldownSeconds, 600);

  r = await cli(['off']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^attack posture ended/);
  assert.match(r.out, /it will not start again before /);
  assert.equal(rt.attack.active, false);
  assert.deepEqual(
    events.filter((e) => e.event.startsWith('attack_')).map((e) => [e.event, e.reason?.startsWith('ended by cli:tester') ?? false]),
    [
      ['attack_started', false],
      ['attack_ended', true],
    ],
  );

  r = await cli(['off']);
  assert.match(r.out, /^attack posture was not on/);
});

test('the dispatcher knows the command; wrong sub-commands are usage errors', async () => {
  const stdout = sink();
  const stderr = sink();
  const code = await runCli(['attack', 'status', '--config', tg.configFile], { stdout, stderr, stdin: Readable.from([]), env: {} });
  assert.equal(code, 0, stderr.text());
  assert.match(stdout.text(), /^attack posture:/);
  for (const argv of [['on'], [], ['status', 'now']]) {
    const s = sink();
    const e = sink();
    const c = await runCli(['attack', ...argv, '--config', tg.configFile], { stdout: s, stderr: e, stdin: Readable.from([]), env: {} });
    assert.equal(c, 2, `${argv.join(' ')}: ${e.text()}`);
  }
});

test('POST /api/attack takes only {off: true, by?}', async () => {
  const c = await AdminClient.connect(tg.configFile);
  for (const b of [{ off: false }, {}, { off: true, on: true }, { off: true, by: 'bad name!' }]) {
    await assert.rejects(
      () => c.post('/api/attack', b),
      (e: unknown) => e instanceof AdminClientError && e.status === 400,
      JSON.stringify(b),
    );
  }
});
