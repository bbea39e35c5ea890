/** `portcullis explain`: the matching rule, the rules skipped on the way and why. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../helpers/cli.js';

const cli = (argv: string[]) => runCommand(argv);

test('explain names the rule that decides and why the others did not', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pc-explain-'));
  try {
    const cfg = join(dir, 'p.yaml');
    await writeFile(join(dir, 'users.yaml'), 'users:\n  bob:\n    password: "$argon2id$v=19$m=256,t=1,p=1$c29tZXNhbHQ$2m5NfYjXUJuKNWcYfOF4Z4EqK+VLGGPwPgDn8B9MTm0"\n    groups: [admins]\n');
    await writeFile(
      cfg,
      `users_file: ${JSON.stringify(join(dir, 'users.yaml'))}
data_dir: ${JSON.stringify(join(dir, 'data'))}
networks:
  office: ["192.0.2.0/24"]
apps:
  - name: mail
    hosts: ["mail.example.org"]
    upstream: "builtin:whoami"
    rules:
      - { paths: ["/healthz"], policy: bypass }
      - { paths: ["/admin/**"], groups: [admins], policy: mfa }
      - { networks: [office], policy: password }
      - { policy: deny }
`,
    );
    const office = await cli(['explain', '--config', cfg, '--url', 'https://mail.example.org/inbox', '--ip', '192.0.2.7']);
    assert.equal(office.code, 0, office.err);
    assert.match(office.out, /rules\[0\].*skipped, path \/inbox matches none/);
    assert.match(office.out, /rules\[2\].*MATCH/);
    assert.match(office.out, /decision: password/);
    const outside = await cli(['explain', '--config', cfg, '--url', 'https://mail.example.org/inbox', '--ip', '203.0.113.5']);
    assert.match(outside.out, /203\.0\.113\.5 is not in \[office\]/);
    assert.match(outside.out, /decision: deny .*network_denied/);
    const admin = await cli(['explain', '--config', cfg, '--url', 'https://mail.example.org/admin/x', '--ip', '203.0.113.5', '--user', 'bob']);
    assert.match(admin.out, /decision: mfa/);
    const unsafe = await cli(['explain', '--config', cfg, '--url', 'https://mail.example.org/a/../admin', '--ip', '192.0.2.7']);
    assert.match(unsafe.out, /refused with 400/);
    const bad = await cli(['explain', '--config', cfg, '--url', 'https://mail.example.org/', '--ip', 'not-an-ip']);
    assert.equal(bad.code, 2);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('explain knows the passkey policy (issue 13)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pc-explain-'));
  try {
    const cfg = join(dir, 'p.yaml');
    await writeFile(join(dir, 'users.yaml'), 'users: {}\n');
    await writeFile(
      cfg,
      `users_file: ${JSON.stringify(join(dir, 'users.yaml'))}
data_dir: ${JSON.stringify(join(dir, 'data'))}
webauthn: { rp_id: example.org, origins: ["https://mail.example.org"] }
apps:
  - name: mail
    hosts: ["mail.example.org"]
    upstream: "builtin:whoami"
    rules:
      - { paths: ["/ecp/**"], policy: passkey }
      - { policy: mfa }
`,
    );
    const ecp = await cli(['explain', '--config', cfg, '--url', 'https://mail.example.org/ecp/', '--ip', '203.0.113.5']);
    assert.equal(ecp.code, 0, ecp.err);
    assert.match(ecp.out, /rules\[0\].*MATCH/);
    assert.match(ecp.out, /decision: passkey \(password then a passkey/);
    const inbox = await cli(['explain', '--config', cfg, '--url', 'https://mail.example.org/inbox', '--ip', '203.0.113.5']);
    assert.match(inbox.out, /decision: mfa \(password then a second factor: a TOTP code or a passkey\)/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
