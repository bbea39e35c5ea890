/**
 * The configuration loader as an admin meets it: a valid file compiles into a frozen config, and a
 * broken one is refused with every problem at its line and column, in the form check-config prints.
 */
import { strict as assert } from 'node:assert';
import { availableParallelism } from 'node:os';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runCli } from '../../src/cli/main.js';
import { compilePathPattern } from '../../src/config/paths.js';
import {
  ConfigError,
  formatIssues,
  loadConfigFile,
  loadConfigOrThrow,
  loadConfigText,
  parseListen,
  type CompiledConfig,
  type ConfigIssue,
  type LoadResult,
} from '../../src/config/index.js';
import { isPortcullisError } from '../../src/errors.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const DEMO = fileURLToPath(new URL('../../../config/portcullis.yaml', import.meta.url));

/** 1-based line of the first line containing `needle`. */
function lineOf(text: string, needle: string): number {
  const i = text.split('\n').findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `fixture has no line with ${needle}`);
  return i + 1;
}

function ok(r: LoadResult): CompiledConfig {
  if (!r.ok) assert.fail(`expected a valid config, got:\n${formatIssues(r.issues)}`);
  return r.config;
}

function issues(r: LoadResult): ConfigIssue[] {
  assert.equal(r.ok, false, 'expected the config to be refused');
  return r.ok ? [] : r.issues;
}

/** The single issue of a config that should have exactly one. */
function only(text: string, opts: { cwd?: string; checkFiles?: boolean } = {}): ConfigIssue {
  const list = issues(loadConfigText(text, 'p.yaml', { checkFiles: false, ...opts }));
  assert.equal(list.length, 1, `expected one issue, got:\n${formatIssues(list)}`);
  return list[0]!;
}

/** A minimal valid file with `extra` top-level YAML and the one app's fields replaced by `app`. */
function minimal(extra = '', app = 'upstream: builtin:whoami\n    rules: [{ policy: mfa }]'): string {
  return `${extra}\napps:\n  - name: demo\n    hosts: [localhost]\n    ${app}\n`;
}

function capture(): { stream: Writable; text(): string } {
  let out = '';
  const stream = new Writable({
    write(chunk, _enc, cb) {
      out += String(chunk);
      cb();
    },
  });
  return { stream, text: () => out };
}

async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = capture();
  const err = capture();
  const code = await runCli(argv, { stdout: out.stream, stderr: err.stream, stdin: Readable.from([]), env: {} });
  return { code, stdout: out.text(), stderr: err.text() };
}

// The SPEC's example, every section filled in, plus the keys this implementation adds.
const FULL = `listen: "0.0.0.0:8443"
tls: { cert: "./tls/cert.pem", key: "./tls/key.pem" }
trusted_proxies: ["10.0.0.2", "2001:db8:ff::/64"]
proxy_protocol: true
admin: { listen: "127.0.0.1:9090", token_file: "./secrets/admin.token" }
data_dir: "./state"
store: "redis://redis.internal:6379/0"
workers: 4
networks: { office: ["192.0.2.0/24", "2001:db8:10::/48"], vpn: ["198.51.100.0/24"] }
users_file: "./config/users.yaml"
session: { idle_timeout: 30m, absolute_timeout: 12h, grace: 2m }
totp: { issuer: "Example Mail", period: 30, digits: 6, algorithm: SHA1, skew: 1,
        enrol: { networks: [office] } }
password_policy: { min_length: 12, blocklist: common, min_strength: 3, on_weak: change }
login_limits:
  per_ip:   { max_failures: 20, window: 15m, block: 15m }
  per_user: { max_failures: 5,  window: 15m, lockout: 15m }
  spray:    { distinct_users: 10, window: 10m, block: 1h }
  mfa:      { max_failures: 5, window: 15m }
  ipv6_prefix: 56
  hash_concurrency: 8
lockdown: { networks: [office, "203.0.113.7"] }
notify:
  webhook: "https://hooks.example.org/portcullis?token=abc"
  smtp: { url: "smtps://mailer:secret@smtp.example.org:465", from: "portcullis@example.org", to: ["security@example.org"] }
  events: [new_network_login, locked_out]
audit: { file: "/var/log/portcullis/audit.jsonl" }
upstream_timeouts: { connect: 3s, headers: 30s, idle: 2m }
apps:
  - name: webmail
    hosts: ["Mail.Example.org", "webmail.example.org"]
    upstream: "http://10.1.1.5:8080"
    websocket: true
    rules:
      - { paths: ["/healthz"], policy: bypass }
      - { networks: [office], policy: password }
      - { groups: [remote-staff], policy: mfa }
      - { policy: deny }
    basic_auth: { paths: ["/Microsoft-Server-ActiveSync"] }
  - name: guacamole
    hosts: ["rd.example.org", "[2001:DB8::1]"]
    upstream: "https://10.1.1.6/"
    rules:
      - { paths: ["/api/**"], methods: [GET, POST], networks: [vpn, "192.0.2.0/25"], policy: mfa }
      - { policy: deny }
`;

describe('a valid configuration', () => {
  let tmp: TmpDir;
  let config: CompiledConfig;

  before(async () => {
    tmp = await tmpDir('portcullis-config-');
    await mkdir(join(tmp.dir, 'tls'));
    await writeFile(join(tmp.dir, 'tls/cert.pem'), 'cert');
    await writeFile(join(tmp.dir, 'tls/key.pem'), 'key', { mode: 0o600 });
    config = ok(loadConfigText(FULL, 'portcullis.yaml', { cwd: tmp.dir }));
  });
  after(() => tmp.cleanup());

  it('resolves every value: addresses, absolute paths, durations in ms, networks', () => {
    assert.equal(config.file, join(tmp.dir, 'portcullis.yaml'));
    assert.deepEqual(config.listen, { host: '0.0.0.0', port: 8443 });
    assert.deepEqual(config.tls, { cert: join(tmp.dir, 'tls/cert.pem'), key: join(tmp.dir, 'tls/key.pem') });
    assert.equal(config.trustedProxies.contains('10.0.0.2'), true);
    assert.equal(config.trustedProxies.contains('10.0.0.3'), false);
    assert.equal(config.trustedProxies.contains('2001:db8:ff::77'), true);
    assert.equal(config.proxyProtocol, true);
    assert.deepEqual(config.admin, { listen: { host: '127.0.0.1', port: 9090 }, tokenFile: join(tmp.dir, 'secrets/admin.token'), hosts: [] });
    assert.equal(config.dataDir, join(tmp.dir, 'state'));
    assert.deepEqual(config.store, { kind: 'redis', url: 'redis://redis.internal:6379/0' });
    assert.equal(config.workers, 4);
    assert.equal(config.usersFile, join(tmp.dir, 'config/users.yaml'));
    assert.equal(config.networks.get('office')!.contains('2001:db8:10:ffff::1'), true);
    assert.equal(config.networks.get('vpn')!.contains('192.0.2.1'), false);
    assert.deepEqual(config.session, { idleTimeoutMs: 30 * 60_000, absoluteTimeoutMs: 12 * 3_600_000, graceMs: 120_000, domain: null, portal: null });
    assert.equal(config.totp.issuer, 'Example Mail');
    assert.equal(config.totp.enrolNetworks.contains('192.0.2.9'), true);
    assert.equal(config.totp.enrolNetworks.contains('198.51.100.9'), false);
    assert.deepEqual(config.passwordPolicy, { minLength: 12, blocklist: 'common', minStrength: 3, onWeak: 'change' });
    assert.deepEqual(config.loginLimits, {
      perIp: { maxFailures: 20, windowMs: 900_000, blockMs: 900_000 },
      perUser: { maxFailures: 5, windowMs: 900_000, lockoutMs: 900_000, ceiling: { maxFailures: 100, windowMs: 86_400_000 } },
      spray: { distinctUsers: 10, windowMs: 600_000, blockMs: 3_600_000 },
      samePassword: { accounts: 20, windowMs: 3_600_000, blockMs: 86_400_000 },
      mfa: { maxFailures: 5, windowMs: 900_000 },
      ipv6Prefix: 56,
      maxConcurrentHashes: 8,
    });
    assert.equal(config.lockdown.networks.contains('203.0.113.7'), true);
    assert.equal(config.lockdown.networks.contains('203.0.113.8'), false);
    assert.deepEqual(config.lockdown.networkNames, ['office', '203.0.113.7']);
    assert.equal(config.notify.webhook, 'https://hooks.example.org/portcullis?token=abc');
    assert.deepEqual(config.notify.smtp, { url: 'smtps://mailer:secret@smtp.example.org:465', from: 'portcullis@example.org', to: ['security@example.org'] });
    assert.deepEqual([...config.notify.events], ['new_network_login', 'locked_out']);
    assert.deepEqual(config.audit, { file: '/var/log/portcullis/audit.jsonl' });
    assert.deepEqual(config.upstreamTimeouts, { connectMs: 3_000, headersMs: 30_000, idleMs: 120_000 });
  });

  it('compiles apps and rules, in order, with their positions and labels', () => {
    const [webmail, guac] = config.apps;
    assert.equal(webmail!.name, 'webmail');
    assert.deepEqual(webmail!.hosts, ['mail.example.org', 'webmail.example.org']);
    assert.equal(webmail!.upstream.kind, 'http');
    assert.equal(webmail!.upstream.kind === 'http' && webmail!.upstream.origin, 'http://10.1.1.5:8080');
    assert.equal(webmail!.websocket, true);
    assert.deepEqual(webmail!.pos, { file: 'portcullis.yaml', line: lineOf(FULL, '- name: webmail'), col: 5 });
    assert.deepEqual(
      webmail!.rules.map((r) => r.label),
      [
        'apps[0].rules[0] {paths: [/healthz]} -> bypass',
        'apps[0].rules[1] {networks: [office]} -> password',
        'apps[0].rules[2] {groups: [remote-staff]} -> mfa',
        'apps[0].rules[3] {} -> deny',
      ],
    );
    assert.deepEqual(
      webmail!.rules.map((r) => [r.index, r.pos.line, r.policy]),
      [
        [0, lineOf(FULL, '/healthz'), 'bypass'],
        [1, lineOf(FULL, '[office], policy: password'), 'password'],
        [2, lineOf(FULL, 'remote-staff'), 'mfa'],
        [3, lineOf(FULL, '{ policy: deny }'), 'deny'],
      ],
    );
    const [health, office, staff, deny] = webmail!.rules;
    assert.equal(health!.paths![0]!.test('/healthz'), true);
    assert.equal(health!.paths![0]!.test('/healthz/x'), false);
    assert.equal(office!.networks!.contains('192.0.2.200'), true);
    assert.deepEqual(office!.networkNames, ['office']);
    assert.deepEqual(staff!.groups, ['remote-staff']);
    assert.equal(deny!.paths, null);
    assert.equal(deny!.methods, null);
    assert.equal(deny!.networks, null);
    assert.equal(deny!.groups, null);
    assert.equal(webmail!.basicAuthPaths[0]!.test('/Microsoft-Server-ActiveSync'), true);

    assert.deepEqual(guac!.hosts, ['rd.example.org', '[2001:db8::1]']);
    assert.equal(guac!.upstream.kind === 'http' && guac!.upstream.url.href, 'https://10.1.1.6/');
    assert.equal(guac!.websocket, false);
    const api = guac!.rules[0]!;
    assert.equal(api.label, 'apps[1].rules[0] {paths: [/api/**], methods: [GET, POST], networks: [vpn, 192.0.2.0/25]} -> mfa');
    assert.deepEqual([...api.methods!], ['GET', 'POST']);
    assert.equal(api.networks!.contains('198.51.100.1'), true);
    assert.equal(api.networks!.contains('192.0.2.1'), true);
    assert.equal(api.networks!.contains('192.0.2.129'), false);

    assert.equal(config.appsByHost.get('mail.example.org'), webmail);
    assert.equal(config.appsByHost.get('webmail.example.org'), webmail);
    assert.equal(config.appsByHost.get('[2001:db8::1]'), guac);
    assert.equal(config.appsByHost.size, 4);
  });

  it('is deep-frozen: nothing downstream can change it', () => {
    assert.equal(Object.isFrozen(config), true);
    assert.equal(Object.isFrozen(config.listen), true);
    assert.equal(Object.isFrozen(config.apps), true);
    assert.equal(Object.isFrozen(config.apps[0]!.rules[1]!), true);
    assert.equal(Object.isFrozen(config.apps[0]!.rules[1]!.networkNames), true);
    assert.equal(Object.isFrozen(config.loginLimits.perUser), true);
    assert.throws(() => {
      (config.listen as { port: number }).port = 1;
    }, TypeError);
    assert.throws(() => {
      (config.apps as CompiledConfig['apps'][number][]).push(config.apps[0]!);
    }, TypeError);
    assert.throws(() => (config.appsByHost as Map<string, unknown>).set('evil.example', config.apps[0]), TypeError);
    assert.throws(() => (config.appsByHost as Map<string, unknown>).delete('mail.example.org'), TypeError);
    assert.throws(() => (config.networks as Map<string, unknown>).clear(), TypeError);
    assert.throws(() => (config.notify.events as Set<string>).add('login_failed'), TypeError);
    assert.throws(() => (config.apps[1]!.rules[0]!.methods as Set<string>).add('DELETE'), TypeError);
    const up = config.apps[0]!.upstream;
    assert.ok(up.kind === 'http');
    assert.throws(() => {
      up.url.pathname = '/evil';
    }, TypeError);
    assert.throws(() => {
      up.url.host = 'evil.example';
    }, TypeError);
    up.url.searchParams.append('x', '1'); // a copy: the URL itself cannot change
    assert.equal(up.url.href, 'http://10.1.1.5:8080/');
    assert.equal(config.appsByHost.size, 4);
  });

  it('applies the documented defaults to a minimal file', () => {
    const c = ok(loadConfigText(minimal(), 'p.yaml', { cwd: '/srv/portcullis' }));
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 8080 });
    assert.equal(c.tls, null);
    assert.equal(c.trustedProxies.size, 0);
    assert.equal(c.proxyProtocol, false);
    assert.deepEqual(c.admin, { listen: { host: '127.0.0.1', port: 9090 }, tokenFile: '/srv/portcullis/data/admin.token', hosts: [] });
    assert.equal(c.dataDir, '/srv/portcullis/data');
    assert.equal(c.usersFile, '/srv/portcullis/config/users.yaml');
    assert.deepEqual(c.store, { kind: 'memory' });
    assert.equal(c.workers, 1);
    assert.deepEqual(c.session, { idleTimeoutMs: 1_800_000, absoluteTimeoutMs: 43_200_000, graceMs: 0, domain: null, portal: null });
    assert.equal(c.totp.period, 30);
    assert.equal(c.totp.digits, 6);
    assert.equal(c.totp.algorithm, 'SHA1');
    assert.equal(c.totp.skew, 1);
    assert.equal(c.totp.enrolNetworks.size, 0, 'enrolment is allowed nowhere by default');
    assert.deepEqual(c.passwordPolicy, { minLength: 8, blocklist: 'common', minStrength: 3, onWeak: 'deny' });
    assert.equal(c.loginLimits.ipv6Prefix, 64);
    assert.equal(c.loginLimits.maxConcurrentHashes, Math.min(4, Math.max(2, availableParallelism())), 'scaled to the machine');
    assert.equal(c.lockdown.networks.size, 0, 'nobody gets through a lockdown by default');
    assert.deepEqual(c.audit, { file: '/srv/portcullis/data/audit.jsonl' });
    assert.deepEqual(c.upstreamTimeouts, { connectMs: 5_000, headersMs: 60_000, idleMs: 300_000 });
    assert.deepEqual(c.notify.webhook, null);
    assert.deepEqual([...c.notify.events], [
      'new_network_login',
      'locked_out',
      'weak_password',
      'password_refused_correct',
      'totp_enrolled',
      'totp_removed',
      'password_sprayed',
      'attack_started',
      'attack_ended',
    ]);
    assert.deepEqual(c.apps[0]!.upstream, { kind: 'builtin', name: 'whoami' });
    assert.equal(ok(loadConfigText(minimal('audit: { file: null }'), 'p.yaml')).audit.file, null);
  });

  it('accepts YAML anchors and aliases', () => {
    const c = ok(loadConfigText(minimal('networks: { office: &o ["192.0.2.0/24"], hq: *o }'), 'p.yaml'));
    assert.equal(c.networks.get('hq')!.contains('192.0.2.1'), true);
  });
});

describe('a configuration with many errors', () => {
  // Each line marked "<-" holds exactly one error; everything else is valid.
  const BROKEN = `listen: "127.0.0.1:8080"
trusted_proxies:
  - "10.0.0.0/8"
  - "0.0.0.0/0"                                   # <- covers everyone
  - "::ffff:0:0/96"                               # <- all of IPv4, through ::ffff:
networks:
  office: ["192.0.2.0/24", "192.0.2.300/32"]      # <- not an address
  vpn: []
session:
  idle_timout: 30m                                # <- typo in the key
  absolute_timeout: 12 hours                      # <- not a duration
apps:
  - name: webmail
    hosts: [mail.example.org]
    upstream: "http://10.1.1.5:8080/ evil"        # <- a space
    rules:
      - { networks: [office, partners], policy: password }   # <- unknown network
      - { networks: [vpn], policy: password }                # <- network without entries
      - { methods: [get, POST], policy: mfa }                # <- lower-case method
      - { policy: deny }
  - name: rdweb
    hosts: [rd.example.org]
    upstream: "http://10.1.1.6/\\r\\nX-Injected: 1"     # <- CR/LF
    rules:
      - { policy: mfa }
`;
  const expected: Array<[string, string, RegExp]> = [
    ['"0.0.0.0/0"', 'trusted_proxies[1]', /"0\.0\.0\.0\/0" covers every IPv4 address; trusting it would let any client forge its address/],
    ['"::ffff:0:0/96"', 'trusted_proxies[2]', /covers every IPv4 address \(written as IPv6 through ::ffff:0:0\/96/],
    ['192.0.2.300', 'networks.office[1]', /"192\.0\.2\.300\/32" is not a valid/],
    ['idle_timout', 'session.idle_timout', /unknown key "idle_timout"; did you mean "idle_timeout"\?/],
    ['12 hours', 'session.absolute_timeout', /"12 hours" is not a duration/],
    [' evil"', 'apps[0].upstream', /contains a space/],
    ['partners', 'apps[0].rules[0].networks[1]', /unknown network "partners"/],
    ['[vpn]', 'apps[0].rules[1].networks[0]', /rule relies on network "vpn" which has no entries/],
    ['[get, POST]', 'apps[0].rules[2].methods[0]', /case-sensitive.*write GET/],
    ['X-Injected', 'apps[1].upstream', /line break \(CR\/LF\)/],
  ];

  it('reports every error, in file order, each at its line', () => {
    const list = issues(loadConfigText(BROKEN, 'broken.yaml'));
    assert.deepEqual(
      list.map((i) => [i.line, i.path]),
      expected.map(([needle, path]) => [lineOf(BROKEN, needle), path]),
      formatIssues(list),
    );
    list.forEach((issue, n) => {
      assert.equal(issue.file, 'broken.yaml');
      assert.match(issue.message, expected[n]![2]);
    });
    // columns point at the offending value, not the start of the line
    const bad = list.find((i) => i.path === 'apps[0].rules[2].methods[0]')!;
    assert.equal(bad.col, lineOfText(BROKEN, bad.line).indexOf('get') + 1);
  });

  it('check-config prints them all as FILE:LINE:COL key.path: message and exits 1', async () => {
    const tmp = await tmpDir('portcullis-check-');
    try {
      const file = join(tmp.dir, 'broken.yaml');
      await writeFile(file, BROKEN);
      const res = await cli(['check-config', '--config', file]);
      assert.equal(res.code, 1);
      assert.equal(res.stdout, '');
      const lines = res.stderr.trimEnd().split('\n');
      assert.equal(lines.length, expected.length, res.stderr);
      lines.forEach((line, n) => {
        const [needle, path] = expected[n]!;
        const m = /^(.+):(\d+):(\d+) ([^ ]+): (.+)$/.exec(line);
        assert.ok(m, `not FILE:LINE:COL key.path: message: ${line}`);
        assert.equal(m[1], file);
        assert.equal(Number(m[2]), lineOf(BROKEN, needle));
        assert.equal(m[4], path);
        assert.match(m[5]!, expected[n]![2]);
      });
    } finally {
      await tmp.cleanup();
    }
  });

  it('loadConfigOrThrow throws a ConfigError carrying the issues', async () => {
    const tmp = await tmpDir('portcullis-throw-');
    try {
      const file = join(tmp.dir, 'broken.yaml');
      await writeFile(file, BROKEN);
      await assert.rejects(loadConfigOrThrow(file), (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.ok(isPortcullisError(e, 'PC_CONFIG_INVALID'));
        assert.equal(e.issues.length, expected.length);
        assert.match(e.message, /10 issues/);
        assert.ok(e.message.includes(`${file}:${lineOf(BROKEN, 'partners')}:`));
        return true;
      });
    } finally {
      await tmp.cleanup();
    }
  });
});

function lineOfText(text: string, line: number): string {
  return text.split('\n')[line - 1]!;
}

describe('check-config on the shipped demo', () => {
  it('exits 0 with "FILE: ok (N apps)"', async () => {
    const res = await cli(['check-config', '--config', DEMO]);
    assert.equal(res.stderr, '');
    assert.equal(res.code, 0);
    assert.equal(res.stdout, `${DEMO}: ok (1 apps)\n`);
  });

  it('protects builtin:whoami with MFA from this machine and denies everything else', async () => {
    const r = await loadConfigFile(DEMO);
    const c = ok(r);
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(c.store, { kind: 'memory' });
    const app = c.apps[0]!;
    assert.deepEqual(app.upstream, { kind: 'builtin', name: 'whoami' });
    assert.equal(c.appsByHost.get('localhost'), app);
    assert.equal(c.appsByHost.get('127.0.0.1'), app);
    assert.deepEqual(
      app.rules.map((x) => x.label),
      ['apps[0].rules[0] {networks: [local]} -> mfa', 'apps[0].rules[1] {} -> deny'],
    );
    assert.equal(app.rules[0]!.networks!.contains('::1'), true);
    assert.equal(app.rules[0]!.networks!.contains('127.0.0.1'), true);
    assert.equal(app.rules[0]!.networks!.contains('192.0.2.1'), false);
    assert.equal(c.totp.enrolNetworks.contains('127.0.0.1'), true);
    assert.equal(c.totp.enrolNetworks.contains('10.0.0.1'), false);
  });

  it('a file that cannot be read is one issue at 1:1', async () => {
    const missing = join(fileURLToPath(new URL('.', import.meta.url)), 'no-such-config.yaml');
    const r = await loadConfigFile(missing);
    assert.deepEqual(issues(r), [{ file: missing, line: 1, col: 1, path: '', message: 'cannot read the configuration: no such file' }]);
    const res = await cli(['check-config', '--config', missing]);
    assert.equal(res.code, 1);
    assert.equal(res.stderr, `${missing}:1:1 cannot read the configuration: no such file\n`);
  });
});

describe('YAML structure', () => {
  it('reports a syntax error with its line and column, and nothing built on the mis-parse', () => {
    const text = 'apps:\n  - name: x\n    hosts: [a\n';
    const list = issues(loadConfigText(text, 'p.yaml'));
    assert.ok(list.length >= 1);
    assert.ok(list.every((i) => i.message.startsWith('YAML: ') && i.path === ''));
    assert.equal(list[0]!.line, 4);
  });

  it('refuses duplicate keys, naming the first', () => {
    const i = only(minimal('listen: "127.0.0.1:8080"\nlisten: "127.0.0.1:8081"'));
    assert.deepEqual([i.line, i.col, i.path], [2, 1, 'listen']);
    assert.match(i.message, /duplicate key "listen" \(first written at line 1\)/);
  });

  it('refuses unknown keys, with a suggestion when one is close', () => {
    const i = only(minimal('sesion: { idle_timeout: 5m }'));
    assert.deepEqual([i.line, i.col, i.path], [1, 1, 'sesion']);
    assert.match(i.message, /did you mean "session"\?/);
    const j = only(minimal('', 'upstream: builtin:whoami\n    rules: [{ policy: mfa, method: [GET] }]'));
    assert.equal(j.path, 'apps[0].rules[0].method');
    assert.match(j.message, /did you mean "methods"\?/);
    assert.match(only(minimal('frobnicate: 1')).message, /^unknown key "frobnicate"$/);
  });

  it('points a missing required key at the mapping that lacks it', () => {
    const text = minimal('', 'rules: [{ policy: mfa }]');
    const i = only(text);
    assert.deepEqual([i.line, i.col, i.path], [lineOf(text, '- name: demo'), 5, 'apps[0]']);
    assert.equal(i.message, 'missing required key "upstream"');
    const noApps = only('listen: "127.0.0.1:8080"\n');
    assert.deepEqual([noApps.line, noApps.col, noApps.path, noApps.message], [1, 1, '', 'missing required key "apps"']);
    const r = only(minimal('', 'upstream: builtin:whoami\n    rules: [{ paths: [/x] }]'));
    assert.deepEqual([r.path, r.message], ['apps[0].rules[0]', 'missing required key "policy"']);
    assert.equal(r.col, 13, 'at the rule mapping itself');
  });

  it('refuses wrong types with what was found', () => {
    assert.match(only(minimal('workers: "2"')).message, /expected a whole number from 1 to 64, found text/);
    assert.match(only(minimal('', 'upstream: builtin:whoami\n    websocket: yes\n    rules: [{ policy: mfa }]')).message, /expected true or false, found text/);
    assert.match(only(minimal('networks: ["192.0.2.0/24"]')).message, /expected a mapping of network names/);
    assert.match(only(minimal('session: { idle_timeout: 30 }')).message, /"30" has no unit/);
    assert.match(only(minimal('listen:')).message, /has no value/);
    const bare = only(minimal('', 'upstream: builtin:whoami\n    rules: [{ policy }]'));
    assert.deepEqual([bare.path, bare.message], ['apps[0].rules[0].policy', 'has no value; expected one of deny, bypass, password, mfa, passkey']);
  });

  it('prints one issue a line even when the file quotes line breaks or escape sequences', () => {
    const r = loadConfigText(minimal('session: { idle_timeout: "1\\nh\\u001b[2J" }'), 'p.yaml');
    const text = formatIssues(issues(r));
    assert.equal(text, 'p.yaml:1:26 session.idle_timeout: "1\\nh\\u001b[2J" is not a duration; write a whole number and one unit: ms, s, m, h or d (e.g. 90s, 15m, 12h, 30d)');
  });

  it('refuses an empty file, several documents, merge keys and unknown tags', () => {
    assert.match(only('').message, /the file is empty/);
    assert.match(only(`${minimal()}---\n${minimal()}`).message, /more than one document/);
    assert.match(only(minimal('session: { <<: { idle_timeout: 5m } }')).message, /merge keys/);
    assert.match(only(minimal('store: !secret memory')).message, /Unresolved tag/);
  });
});

describe('values', () => {
  it('trusted_proxies refuses ranges that cover everyone, in every spelling', () => {
    for (const everyone of ['0.0.0.0/0', '::/0', '::ffff:0:0/96', '::ffff:0.0.0.0/96', '::/96', '::/64', '::/1']) {
      const i = only(minimal(`trusted_proxies: ["${everyone}"]`));
      assert.equal(i.path, 'trusted_proxies[0]');
      assert.match(i.message, /covers every/, everyone);
    }
    assert.match(only(minimal('trusted_proxies: ["10.0.0.1/8"]')).message, /host bits set; did you mean 10\.0\.0\.0\/8\?/);
    ok(loadConfigText(minimal('trusted_proxies: ["0.0.0.0/1", "10.0.0.1", "::ffff:10.0.0.0/104"]'), 'p.yaml'));
  });

  it('network names and references', () => {
    assert.match(only(minimal('networks: { Office: ["192.0.2.0/24"] }')).message, /not a valid network name/);
    const wrongCase = only(
      minimal('networks: { office: ["192.0.2.0/24"] }', 'upstream: builtin:whoami\n    rules: [{ networks: [Office], policy: mfa }]'),
    );
    assert.match(wrongCase.message, /lower case; did you mean "office"\?/);
    assert.match(only(minimal('', 'upstream: builtin:whoami\n    rules: [{ networks: [], policy: mfa }]')).message, /empty networks list would never match/);
    const enrol = only(minimal('networks: { vpn: [] }\ntotp: { enrol: { networks: [vpn] } }'));
    assert.deepEqual([enrol.path, enrol.message], ['totp.enrol.networks[0]', 'totp.enrol relies on network "vpn" which has no entries']);
    const broken = only(
      minimal('networks: { vpn: ["10.0.0.1/8"] }', 'upstream: builtin:whoami\n    rules: [{ networks: [vpn], policy: mfa }]'),
    );
    assert.equal(broken.path, 'networks.vpn[0]', 'a network with a bad entry is reported once, not again where it is used');
    const lockdown = only(minimal('lockdown: { networks: [nowhere] }'));
    assert.match(lockdown.message, /unknown network "nowhere" \(no networks are defined\)/);
  });

  it('rules: methods, groups with bypass, path patterns', () => {
    const rule = (r: string) => only(minimal('', `upstream: builtin:whoami\n    rules: [${r}]`));
    assert.match(rule('{ methods: [CONNECT], policy: mfa }').message, /CONNECT is refused/);
    assert.match(rule('{ methods: [TRACE], policy: mfa }').message, /TRACE is refused/);
    assert.match(rule('{ methods: ["G T"], policy: mfa }').message, /not an HTTP method/);
    assert.match(rule('{ methods: [GET, GET], policy: mfa }').message, /listed twice/);
    const bypass = rule('{ groups: [admins], policy: bypass }');
    assert.equal(bypass.path, 'apps[0].rules[0].policy');
    assert.match(bypass.message, /a groups condition is only known after sign-in, so it cannot bypass/);
    assert.match(rule('{ policy: pasword }').message, /did you mean password\?/);
    const badRegex = rule('{ paths: [/ok, "^/(unclosed"], policy: mfa }');
    assert.equal(badRegex.path, 'apps[0].rules[0].paths[1]');
    assert.match(badRegex.message, /not a valid regular expression/);
    assert.match(rule('{ paths: [healthz], policy: bypass }').message, /must start with "\/"/);
    assert.match(rule('{ paths: ["/.portcullis/login"], policy: bypass }').message, /serves itself/);
  });

  it('upstream: builtin:whoami or a bare http(s) origin, nothing that could smuggle anything', () => {
    const up = (u: string) => only(minimal('', `upstream: ${JSON.stringify(u)}\n    rules: [{ policy: mfa }]`));
    const cases: Array<[string, RegExp]> = [
      ['http://10.0.0.1/ x', /contains a space/],
      ['http://10.0.0.1/\r\nHost: evil', /line break/],
      ['http://10.0.0.1/\n', /line break/],
      ['http://10.0.0.1\t/', /control character \(U\+0009\)/],
      ['http://10.0.0.1/"', /quote/],
      ["http://10.0.0.1/'", /quote/],
      ['http://10.0.0.1/<script>', /contains "<"/],
      ['http:\\\\10.0.0.1\\', /contains "\\"/],
      ['http://exämple.org/', /non-ASCII/],
      ['http://user:pw@10.0.0.1/', /credentials/],
      ['http://10.0.0.1/?a=1', /query string/],
      ['http://10.0.0.1/#x', /fragment/],
      ['http://10.0.0.1/owa', /cannot have a path/],
      ['ftp://10.0.0.1/', /expected a http:\/\/ or https:\/\/ URL/],
      ['10.0.0.1:8080', /expected a http:\/\/ or https:\/\/ URL|not a valid absolute URL/],
      ['builtin:echo', /only one is builtin:whoami/],
    ];
    for (const [u, re] of cases) {
      const i = up(u);
      assert.equal(i.path, 'apps[0].upstream', u);
      assert.match(i.message, re, u);
    }
    const c = ok(loadConfigText(minimal('', 'upstream: "https://Backend.Example:8443"\n    rules: [{ policy: mfa }]'), 'p.yaml'));
    assert.ok(c.apps[0]!.upstream.kind === 'http');
    assert.equal(c.apps[0]!.upstream.origin, 'https://backend.example:8443');
  });

  it('store, webhook and smtp URLs are checked the same way', () => {
    assert.match(only(minimal('store: "redis://10.0.0.1:6379/0\\r\\nFLUSHALL"')).message, /line break/);
    assert.match(only(minimal('store: "redis://10.0.0.1:6379/x"')).message, /database number/);
    assert.match(only(minimal('store: postgres://db')).message, /expected "memory" or a redis:\/\//);
    assert.deepEqual(ok(loadConfigText(minimal('store: "rediss://:pw@10.0.0.1:6380/2"\nworkers: 2'), 'p.yaml')).store, {
      kind: 'redis',
      url: 'rediss://:pw@10.0.0.1:6380/2',
    });
    assert.match(only(minimal('workers: 2')).message, /need a shared store/);
    assert.match(only(minimal('notify: { webhook: "https://hooks.example.org/a b" }')).message, /contains a space/);
    assert.match(only(minimal('notify: { webhook: "http://hooks.example.org/x" }')).message, /use https:\/\//);
    assert.equal(ok(loadConfigText(minimal('notify: { webhook: "http://127.0.0.1:9000/x" }'), 'p.yaml')).notify.webhook, 'http://127.0.0.1:9000/x');
    assert.match(only(minimal('notify: { webhook: "https://u:p@hooks.example.org/" }')).message, /credentials/);
    assert.match(only(minimal('notify: { smtp: { url: "smtp://mail.example.org>", from: "a@example.org", to: ["b@example.org"] } }')).message, /contains ">"/);
    const header = only(minimal('notify: { smtp: { url: "smtp://mail.example.org", from: "a@example.org\\r\\nBcc: x@evil.example", to: ["b@example.org"] } }'));
    assert.equal(header.path, 'notify.smtp.from');
    assert.match(header.message, /not a plain e-mail address/);
    assert.match(only(minimal('notify: { events: [login_failed] }')).message, /expected one of new_network_login, locked_out, weak_password, password_refused_correct, totp_enrolled, totp_removed/);
  });

  it('hosts are lower-cased DNS names or IP literals, unique across apps', () => {
    const host = (h: string) => only(`apps:\n  - { name: a, hosts: [${JSON.stringify(h)}], upstream: builtin:whoami, rules: [] }\n`);
    assert.match(host('mail.example.org:443').message, /without the port/);
    assert.match(host('*.example.org').message, /wildcard/);
    assert.match(host('mail.example.org.').message, /trailing dot/);
    assert.match(host('mail_server.example').message, /not a valid DNS name/);
    assert.match(host('::ffff:10.0.0.1').message, /IPv4-mapped/);
    const two = `apps:
  - { name: one, hosts: [mail.example.org], upstream: builtin:whoami, rules: [] }
  - { name: two, hosts: [MAIL.example.org], upstream: builtin:whoami, rules: [] }
`;
    const dup = only(two);
    assert.deepEqual([dup.line, dup.path], [3, 'apps[1].hosts[0]']);
    assert.match(dup.message, /already served by app "one" \(apps\[0\]\)/);
    const names = only(two.replace('two, hosts: [MAIL', 'one, hosts: [rd'));
    assert.match(names.message, /app name "one" is already used by apps\[0\]/);
    assert.match(only('apps: []\n').message, /at least one app/);
  });

  it('totp, password policy and limits stay within sound ranges', () => {
    assert.match(only(minimal('password_policy: { min_length: 6 }')).message, /below 8.*NIST/);
    assert.match(only(minimal('password_policy: { on_weak: allow }')).message, /expected one of deny, change, flag/);
    assert.match(only(minimal('password_policy: { min_strength: 5 }')).message, /expected one of 0, 1, 2, 3, 4/);
    assert.match(only(minimal('totp: { digits: 7 }')).message, /expected one of 6, 8/);
    assert.match(only(minimal('totp: { algorithm: sha1 }')).message, /did you mean SHA1\?/);
    assert.match(only(minimal('totp: { period: 10 }')).message, /from 15 to 120/);
    assert.match(only(minimal('totp: { skew: 3 }')).message, /from 0 to 2/);
    assert.match(only(minimal('totp: { issuer: "Mail: Example" }')).message, /cannot contain ":"/);
    assert.match(only(minimal('login_limits: { ipv6_prefix: 16 }')).message, /from 32 to 128/);
    assert.match(only(minimal('login_limits: { per_user: { lockout: 0s } }')).message, /longer than 0s/);
    assert.match(only(minimal('session: { idle_timeout: 13h }')).message, /cannot be longer than absolute_timeout \(12h\)/);
    assert.match(only(minimal('proxy_protocol: true')).message, /needs trusted_proxies/);
    assert.match(only(minimal('admin: { listen: "0.0.0.0:8080" }')).message, /cannot share/);
    const clash = only(minimal('listen: "127.0.0.1:9090"'));
    assert.deepEqual([clash.path, clash.message], ['listen', 'the admin listener (127.0.0.1:9090) and "listen" (127.0.0.1:9090) cannot share a port']);
    assert.match(only(minimal('listen: "localhost:8080"')).message, /not an IP address and port/);
  });

  it('TLS files must be readable unless the check is switched off', async () => {
    const text = minimal('tls: { cert: ./missing-cert.pem, key: ./missing-key.pem }');
    const list = issues(loadConfigText(text, 'p.yaml', { cwd: '/nonexistent-dir' }));
    assert.deepEqual(
      list.map((i) => [i.line, i.path]),
      [
        [1, 'tls.cert'],
        [1, 'tls.key'],
      ],
    );
    assert.match(list[0]!.message, /cannot read the TLS certificate \/nonexistent-dir\/missing-cert\.pem: no such file/);
    ok(loadConfigText(text, 'p.yaml', { cwd: '/nonexistent-dir', checkFiles: false }));
  });
});

describe('parseListen', () => {
  it('reads IP literals with a port', () => {
    assert.deepEqual(parseListen('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(parseListen('0.0.0.0:443'), { host: '0.0.0.0', port: 443 });
    assert.deepEqual(parseListen('[::1]:8080'), { host: '::1', port: 8080 });
    assert.deepEqual(parseListen('[2001:DB8::1]:443'), { host: '2001:db8::1', port: 443 });
    assert.deepEqual(parseListen('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  });
  it('refuses anything ambiguous', () => {
    for (const bad of ['localhost:8080', ':8080', '127.0.0.1', '127.0.0.1:65536', '127.0.0.1:080', '::1:8080', '[127.0.0.1]:80', '[::ffff:127.0.0.1]:80', '127.0.0.01:80', ' 127.0.0.1:80', '[fe80::1%eth0]:80']) {
      assert.equal(parseListen(bad), null, bad);
    }
  });
});

describe('path patterns', () => {
  const m = (pattern: string) => {
    const r = compilePathPattern(pattern);
    if (!r.ok) assert.fail(`${pattern}: ${r.error}`);
    return r.matcher;
  };
  const table = (pattern: string, yes: string[], no: string[]) => {
    const p = m(pattern);
    for (const s of yes) assert.equal(p.test(s), true, `${pattern} should match ${s}`);
    for (const s of no) assert.equal(p.test(s), false, `${pattern} should not match ${s}`);
  };

  it('a literal glob matches that path only, case-sensitively', () => {
    table('/healthz', ['/healthz'], ['/healthz/', '/healthzz', '/HEALTHZ', '/x/healthz', '']);
    table('/a.b', ['/a.b'], ['/aXb']);
    table('/a+b(c)$', ['/a+b(c)$'], ['/aab(c)']);
  });

  it('* is one segment, ? one character, neither crosses "/"', () => {
    table('/api/*', ['/api/x', '/api/', '/api/x.json'], ['/api', '/api/x/y', '/apix']);
    table('/*.php', ['/index.php', '/.php'], ['/a/index.php', '/index.phps']);
    table('/file?.txt', ['/file1.txt', '/fileA.txt'], ['/file.txt', '/file12.txt', '/file/.txt']);
  });

  it('** crosses "/"; a trailing /** also covers the directory itself', () => {
    table('/admin/**', ['/admin', '/admin/', '/admin/x', '/admin/x/y/z'], ['/administrator', '/adminx/y', '/x/admin']);
    table('/a/**/b', ['/a/b', '/a/x/b', '/a/x/y/b'], ['/a/xb', '/ab', '/a/b/c']);
    table('/static/**.css', ['/static/site.css', '/static/a/b/site.css'], ['/static/site.js']);
    table('/**', ['/', '/anything/at/all'], []);
  });

  it('^regex is a JavaScript regular expression, anchored only as written', () => {
    table('^/api/v[0-9]+/', ['/api/v2/users', '/api/v10/'], ['/api/v/', '/x/api/v2/']);
    table('^/api', ['/api', '/api2', '/api/x'], ['/x/api']);
    table('^/exact$', ['/exact'], ['/exact/', '/exactly']);
  });

  it('refuses patterns that cannot mean what they seem to', () => {
    const bad: Array<[string, RegExp]> = [
      ['', /empty/],
      ['api/*', /must start with "\/"/],
      ['^/(', /not a valid regular expression/],
      ['/a/[bc]', /write a \^regex/],
      ['/a/{b,c}', /write a \^regex/],
      ['/a\\b', /write a \^regex/],
      ['/a/***', /\*\*\*/],
      ['/a/../b', /never match/],
      ['/./a', /never match/],
      ['/.portcullis/login', /serves itself/],
      ['/a\u0000', /control characters/],
    ];
    for (const [p, re] of bad) {
      const r = compilePathPattern(p);
      assert.equal(r.ok, false, p);
      if (!r.ok) assert.match(r.error, re, p);
    }
    assert.equal(compilePathPattern('/.well-known/**').ok, true);
  });

  it('a matcher is frozen and keeps no state between calls', () => {
    const p = m('^/x');
    assert.equal(Object.isFrozen(p), true);
    for (let i = 0; i < 3; i++) assert.equal(p.test('/x'), true);
  });
});
