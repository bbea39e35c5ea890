/**
 * `portcullis allow` as an admin meets it: the YAML file is edited in place (every comment, blank
 * line and quote left as written; the only difference is the entry asked for), nothing is
 * written when the request or the result is wrong, emptying a network a rule relies on is
 * refused with the rules named, and two admins editing at once do not lose each other's edit.
 */
import { strict as assert } from 'node:assert';
import { lstat, readdir, readFile, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { editConfigFile, editNetworks } from '../../src/config/edit.js';
import { loadConfigText } from '../../src/config/index.js';
import { isPortcullisError } from '../../src/errors.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';
import { runCommand } from '../helpers/cli.js';

const DEMO = fileURLToPath(new URL('../../../config/portcullis.yaml', import.meta.url));

let tmp: TmpDir;
before(async () => {
  tmp = await tmpDir('pc-allow');
});
after(async () => {
  await tmp.cleanup();
});

/** A config that points its admin token at a file that does not exist: no gateway is running. */
function fixture(dir: string, body: string): string {
  return `${body}
admin: { listen: "127.0.0.1:9", token_file: ${JSON.stringify(join(dir, 'no-such.token'))} }
data_dir: ${JSON.stringify(join(dir, 'data'))}
users_file: ${JSON.stringify(join(dir, 'users.yaml'))}
`;
}

const COMMENTED = `# Production gateway for the mail service.
#   Owner: infrastructure team.  Change through a ticket.

listen: "127.0.0.1:8080"      # behind the load balancer

# --- who may come in -------------------------------------------------------------------
networks:
  # head office, both address families
  office: ["192.0.2.0/24",   "2001:db8:10::/48"]    # keep aligned with the firewall
  vpn:
    # the old concentrator
    - 10.8.0.0/16          # retire in Q3
    - '10.9.0.0/16'
  spare: [203.0.113.0/24]


session:
  idle_timeout: 30m   # short on purpose

lockdown:
  networks: [office]  # the NOC must still get in

apps:
  - name: mail
    hosts: ["mail.example.org"]
    upstream: "builtin:whoami"
    rules:
      - { paths: ["/healthz"], policy: bypass }   # the monitor
      - { networks: [office],  policy: password }
      - { networks: [vpn], policy: mfa }
      - { policy: deny }
# end of file`;

interface Run {
  code: number;
  out: string;
  err: string;
}

const cli = (...argv: string[]): Promise<Run> => runCommand(argv, { env: { USER: 'tester' } });

let n = 0;
async function configFile(body: string): Promise<{ file: string; text: string }> {
  const file = join(tmp.dir, `c${++n}.yaml`);
  const text = fixture(tmp.dir, body);
  await writeFile(file, text);
  return { file, text };
}

async function untouched(file: string, text: string, mtimeMs: number): Promise<void> {
  assert.equal(await readFile(file, 'utf8'), text, 'the file content is unchanged');
  assert.equal((await stat(file)).mtimeMs, mtimeMs, 'the file was not rewritten');
  const leftovers = (await readdir(tmp.dir)).filter((f) => f.endsWith('.tmp') || f.endsWith('.lock'));
  assert.deepEqual(leftovers, [], 'no temporary or lock file is left behind');
}

describe('allow add keeps the file as the admin wrote it', () => {
  it('adds to a flow list: the only difference is the new entry, in the same quoting', async () => {
    const { file, text } = await configFile(COMMENTED);
    const r = await cli('allow', 'add', 'office', '198.51.100.0/24', '--config', file);
    assert.equal(r.code, 0, r.err);
    const expected = text.replace('"2001:db8:10::/48"]', '"2001:db8:10::/48", "198.51.100.0/24"]');
    assert.notEqual(expected, text);
    assert.equal(await readFile(file, 'utf8'), expected);
    assert.match(r.out, /network "office": added 198\.51\.100\.0\/24/);
  });

  it('adds to a block list: one new line, indented and quoted like its neighbour', async () => {
    const { file, text } = await configFile(COMMENTED);
    const r = await cli('allow', 'add', 'vpn', '10.10.0.0/16', '2001:db8:99::/48', '--config', file);
    assert.equal(r.code, 0, r.err);
    const expected = text.replace("    - '10.9.0.0/16'\n", "    - '10.9.0.0/16'\n    - '10.10.0.0/16'\n    - '2001:db8:99::/48'\n");
    assert.equal(await readFile(file, 'utf8'), expected);
  });

  it('creates a missing network after the last one, and says nothing uses it yet', async () => {
    const { file, text } = await configFile(COMMENTED);
    const r = await cli('allow', 'add', 'branch', '198.51.100.7', '--config', file);
    assert.equal(r.code, 0, r.err);
    const expected = text.replace('  spare: [203.0.113.0/24]\n', '  spare: [203.0.113.0/24]\n  branch: ["198.51.100.7/32"]\n');
    assert.equal(await readFile(file, 'utf8'), expected);
    assert.match(r.out, /created network "branch" with 198\.51\.100\.7\/32/);
    assert.match(r.out, /nothing uses it yet/);
  });

  it('edits the shipped demo configuration with a one-line difference', async () => {
    const demo = await readFile(DEMO, 'utf8');
    const r = editNetworks(demo, 'portcullis.yaml', { kind: 'add', network: 'local', cidrs: ['192.0.2.0/24'] });
    assert.ok(r.ok, !r.ok ? r.message : '');
    const before = demo.split('\n');
    const afterLines = r.text.split('\n');
    assert.equal(afterLines.length, before.length);
    const diff = before.flatMap((l, i) => (l === afterLines[i] ? [] : [[l, afterLines[i]]]));
    assert.deepEqual(diff, [['  local: ["127.0.0.0/8", "::1/128"]', '  local: ["127.0.0.0/8", "::1/128", "192.0.2.0/24"]']]);
  });

  it('keeps Windows line endings', () => {
    const text = 'networks:\r\n  vpn:\r\n    - 10.8.0.0/16\r\napps:\r\n  - { name: a, hosts: [a.test], upstream: "builtin:whoami", rules: [{ networks: [vpn], policy: password }] }\r\n';
    const r = editNetworks(text, 'c.yaml', { kind: 'add', network: 'vpn', cidrs: ['10.9.0.0/16'] });
    assert.ok(r.ok);
    assert.equal(r.text, text.replace('    - 10.8.0.0/16\r\n', '    - 10.8.0.0/16\r\n    - 10.9.0.0/16\r\n'));
  });

  it('writes canonical CIDRs and does not add what is already there (compared canonically)', async () => {
    const { file, text } = await configFile(COMMENTED);
    const { mtimeMs } = await stat(file);
    const r = await cli('allow', 'add', 'office', '2001:DB8:10:0::/48', '::ffff:192.0.2.0/120', '--config', file);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /already has 2001:db8:10::\/48, 192\.0\.2\.0\/24/);
    assert.match(r.out, /nothing to change/);
    await untouched(file, text, mtimeMs);
  });

  it('follows a symlinked configuration to the real file and keeps the link', async () => {
    const { file } = await configFile(COMMENTED);
    const link = join(tmp.dir, 'link.yaml');
    await symlink(file, link);
    const r = await cli('allow', 'add', 'spare', '203.0.114.0/24', '--config', link);
    assert.equal(r.code, 0, r.err);
    assert.match(await readFile(file, 'utf8'), /spare: \[203\.0\.113\.0\/24, 203\.0\.114\.0\/24\]/);
    assert.ok((await stat(link)).isFile());
    assert.ok((await lstat(link)).isSymbolicLink());
  });
});

describe('allow refuses, and writes nothing', () => {
  it('a CIDR with host bits set, a malformed address, or a range covering everyone', async () => {
    const { file, text } = await configFile(COMMENTED);
    const { mtimeMs } = await stat(file);
    const r = await cli('allow', 'add', 'office', '198.51.100.0/24', '10.0.0.1/8', '1.2.3', '0.0.0.0/0', '--config', file);
    assert.equal(r.code, 1);
    assert.match(r.err, /"10\.0\.0\.1\/8" has host bits set; did you mean 10\.0\.0\.0\/8\?/);
    assert.match(r.err, /"1\.2\.3" is not a valid/);
    assert.match(r.err, /"0\.0\.0\.0\/0" covers every IPv4 address/);
    await untouched(file, text, mtimeMs);
  });

  it('removing the last entry of a network a rule relies on, naming the rule', async () => {
    const { file, text } = await configFile(COMMENTED.replace('      - { networks: [office],  policy: password }', '      - { networks: [office, spare],  policy: password }'));
    const { mtimeMs } = await stat(file);
    const r = await cli('allow', 'remove', 'spare', '203.0.113.0/24', '--config', file);
    assert.equal(r.code, 1);
    assert.match(r.err, /refusing to remove the last entry of network "spare"/);
    assert.match(r.err, /apps\[0\]\.rules\[1\] \(app "mail", line \d+\)/);
    assert.match(r.err, /would match nothing/);
    await untouched(file, text, mtimeMs);
  });

  it('emptying a network lockdown relies on names lockdown', async () => {
    const { file, text } = await configFile(COMMENTED);
    const { mtimeMs } = await stat(file);
    const r = await cli('allow', 'remove', 'office', '192.0.2.0/24', '2001:db8:10::/48', '--config', file);
    assert.equal(r.code, 1);
    assert.match(r.err, /apps\[0\]\.rules\[1\].*lockdown\.networks/s);
    await untouched(file, text, mtimeMs);
  });

  it('removing a CIDR the network does not hold, or from a network that does not exist', async () => {
    const { file, text } = await configFile(COMMENTED);
    const { mtimeMs } = await stat(file);
    const a = await cli('allow', 'remove', 'vpn', '10.8.0.0/16', '10.11.0.0/16', '--config', file);
    assert.equal(a.code, 1);
    assert.match(a.err, /network "vpn" does not contain 10\.11\.0\.0\/16 \(it has: 10\.8\.0\.0\/16, 10\.9\.0\.0\/16\)/);
    const b = await cli('allow', 'remove', 'offcie', '10.8.0.0/16', '--config', file);
    assert.equal(b.code, 1);
    assert.match(b.err, /there is no network "offcie" \(defined: office, vpn, spare\)/);
    await untouched(file, text, mtimeMs);
  });

  it('an edit that leaves the configuration invalid: every issue listed', async () => {
    const { file, text } = await configFile(`${COMMENTED}\nbogus_key: 1\nsession_typo: {}`);
    const { mtimeMs } = await stat(file);
    const r = await cli('allow', 'add', 'vpn', '10.20.0.0/16', '--config', file);
    assert.equal(r.code, 1);
    assert.match(r.err, /must be fixed first/);
    assert.match(r.err, /:\d+:1 bogus_key: unknown key "bogus_key"/);
    assert.match(r.err, /:\d+:1 session_typo: unknown key "session_typo"/);
    await untouched(file, text, mtimeMs);
  });

  it('a name that is not a network name', async () => {
    const { file, text } = await configFile(COMMENTED);
    const { mtimeMs } = await stat(file);
    const r = await cli('allow', 'add', 'Head Office', '10.0.0.0/8', '--config', file);
    assert.equal(r.code, 1);
    assert.match(r.err, /not a valid network name/);
    await untouched(file, text, mtimeMs);
  });
});

describe('allow remove', () => {
  it('removes a block-list line with its comment and leaves the rest, canonical match', async () => {
    const { file, text } = await configFile(COMMENTED);
    const r = await cli('allow', 'remove', 'vpn', '10.8.0.0/16', '--config', file);
    assert.equal(r.code, 0, r.err);
    assert.equal(await readFile(file, 'utf8'), text.replace('    - 10.8.0.0/16          # retire in Q3\n', ''));
  });

  it('removes from a flow list, IPv6 written in another case', async () => {
    const { file, text } = await configFile(COMMENTED);
    const r = await cli('allow', 'remove', 'office', '2001:DB8:10::/48', '--config', file);
    assert.equal(r.code, 0, r.err);
    assert.equal(await readFile(file, 'utf8'), text.replace('["192.0.2.0/24",   "2001:db8:10::/48"]', '["192.0.2.0/24"]'));
  });

  it('removes every spelling of the range, and warns when a wider entry still admits it', () => {
    const text = 'networks:\n  vpn: [10.0.0.0/8, "::ffff:10.1.0.0/112", 10.1.0.0/16]\napps:\n  - { name: a, hosts: [a.test], upstream: "builtin:whoami", rules: [{ networks: [vpn], policy: password }] }\n';
    const r = editNetworks(text, 'c.yaml', { kind: 'remove', network: 'vpn', cidrs: ['10.1.0.0/16'] });
    assert.ok(r.ok, !r.ok ? r.message : '');
    assert.equal(r.text, text.replace('[10.0.0.0/8, "::ffff:10.1.0.0/112", 10.1.0.0/16]', '[10.0.0.0/8]'));
    assert.deepEqual(r.notes, ['10.1.0.0/16 is still admitted: 10.0.0.0/8 in the same network covers it']);
  });

  it('empties a network nothing relies on into []', async () => {
    const { file, text } = await configFile(COMMENTED);
    const r = await cli('allow', 'remove', 'spare', '203.0.113.0/24', '--config', file);
    assert.equal(r.code, 0, r.err);
    const now = await readFile(file, 'utf8');
    assert.equal(now, text.replace('spare: [203.0.113.0/24]', 'spare: []'));
    assert.ok(loadConfigText(now, file, { checkFiles: false }).ok);
  });
});

describe('allow list', () => {
  it('prints every network, its entries and what relies on it', async () => {
    const { file } = await configFile(COMMENTED);
    const r = await cli('allow', 'list', '--config', file);
    assert.equal(r.code, 0, r.err);
    const lines = COMMENTED.split('\n');
    const ruleLine = lines.findIndex((l) => l.includes('{ networks: [office],')) + 1;
    const lockdownLine = lines.findIndex((l) => l.includes('networks: [office]  # the NOC')) + 1;
    assert.equal(
      r.out,
      [
        `office: 2 entries; used by apps[0].rules[1] (app "mail", line ${ruleLine}), lockdown.networks (line ${lockdownLine})`,
        '  192.0.2.0/24',
        '  2001:db8:10::/48',
        `vpn: 2 entries; used by apps[0].rules[2] (app "mail", line ${ruleLine + 1})`,
        '  10.8.0.0/16',
        '  10.9.0.0/16',
        'spare: 1 entry; not used by any rule, enrolment or lockdown',
        '  203.0.113.0/24',
        '',
      ].join('\n'),
    );
    const j = await cli('allow', 'list', '--json', '--config', file);
    assert.deepEqual(
      (JSON.parse(j.out) as Array<{ name: string; cidrs: string[] }>).map((x) => [x.name, x.cidrs]),
      [
        ['office', ['192.0.2.0/24', '2001:db8:10::/48']],
        ['vpn', ['10.8.0.0/16', '10.9.0.0/16']],
        ['spare', ['203.0.113.0/24']],
      ],
    );
  });
});

describe('two admins at once', () => {
  it('twelve concurrent edits all land: the lock serialises them and each re-reads the file', async () => {
    const { file } = await configFile(COMMENTED);
    const cidrs = Array.from({ length: 12 }, (_, i) => `198.51.${100 + i}.0/24`);
    const results = await Promise.all(cidrs.map((c) => editConfigFile(file, { kind: 'add', network: 'spare', cidrs: [c] })));
    for (const r of results) assert.ok(r.ok && r.written);
    const text = await readFile(file, 'utf8');
    for (const c of cidrs) assert.ok(text.includes(c), `${c} survived`);
    assert.ok(text.includes('# retire in Q3'));
  });

  it('a fresh lock held by another editor makes the edit wait, then give up with PC_BUSY', async () => {
    const { file, text } = await configFile(COMMENTED);
    await writeFile(`${file}.lock`, '99999\n');
    await assert.rejects(editConfigFile(file, { kind: 'add', network: 'spare', cidrs: ['198.51.100.0/24'] }, { lockWaitMs: 150 }), (e) =>
      isPortcullisError(e, 'PC_BUSY') && /being edited by another process/.test(e.message),
    );
    assert.equal(await readFile(file, 'utf8'), text);
    await unlink(`${file}.lock`);
  });

  it('a lock left behind by a crashed editor (older than 30 s) is broken', async () => {
    const { file } = await configFile(COMMENTED);
    await writeFile(`${file}.lock`, '99999\n');
    const old = new Date(Date.now() - 60_000);
    await utimes(`${file}.lock`, old, old);
    const r = await editConfigFile(file, { kind: 'add', network: 'spare', cidrs: ['198.51.100.0/24'] }, { lockWaitMs: 150 });
    assert.ok(r.ok && r.written);
    assert.ok((await readdir(tmp.dir)).every((f) => !f.startsWith(`c${n}.yaml.lock`)), 'no lock left');
  });
});
