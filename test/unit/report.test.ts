/**
 * `portcullis report` over an audit file written by the real AuditLog: the accounts that signed
 * in after failures come first, attacked accounts and source networks are ranked, events outside
 * the window are ignored, damaged lines are skipped and counted, and a spray over a huge number of
 * invented user names stays within bounded memory without hiding a real account's compromise.
 */
import { Readable } from 'node:stream';
import { strict as assert } from 'node:assert';
import { appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../../src/clock.js';
import { AuditLog, type AuditInput } from '../../src/audit/audit-log.js';
import { AUDIT_EVENTS } from '../../src/audit/events.js';
import { feedLines, formatReportText, ReportBuilder, reportFromFile, sourceNetwork, type AuditReport } from '../../src/audit/report.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';
import { runCommand } from '../helpers/cli.js';

const T0 = Date.UTC(2026, 0, 10, 0, 0, 0);
const MIN = 60_000;
const HOUR = 60 * MIN;

let tmp: TmpDir;
let file: string;

/** Writes the scenario through AuditLog, as the gateway would, starting at `start`. */
async function writeScenario(path: string, start: number): Promise<void> {
  const clock = new ManualClock(start - 2 * 24 * HOUR);
  const audit = new AuditLog({ file: path, clock });
  const rec = (e: AuditInput, advanceMs = 1000) => {
    clock.advance(advanceMs);
    audit.record(e);
  };
  // two days earlier, outside a 24 h window: must not count
  rec({ event: 'login_failed', ip: '192.0.2.1', user: 'olduser', app: 'mail', outcome: 'failure', reason: 'wrong password' });
  rec({ event: 'login_succeeded', ip: '192.0.2.1', user: 'olduser', app: 'mail', outcome: 'success' });

  clock.set(start + HOUR);
  // a spray from 203.0.113.0/24 over invented names and alice
  for (let i = 0; i < 40; i++) {
    rec({ event: 'login_failed', ip: `203.0.113.${5 + (i % 3)}`, user: `u${i}`, app: 'mail', outcome: 'failure', reason: 'unknown user' });
  }
  for (let i = 0; i < 5; i++) rec({ event: 'login_failed', ip: '203.0.113.5', user: 'alice', app: 'mail', outcome: 'failure', reason: 'wrong password' });
  rec({ event: 'locked_out', ip: '203.0.113.5', user: 'alice', app: 'mail', outcome: 'denied', reason: 'unfamiliar networks' }, 0);
  rec({ event: 'ip_blocked', ip: '203.0.113.5', user: 'alice', app: 'mail', outcome: 'denied', reason: 'too many failures from this source' }, 0);
  rec({ event: 'login_failed', ip: '203.0.113.6', user: 'alice', app: 'mail', outcome: 'denied', reason: 'throttled (user)' });
  // ...and then alice's password works from the attacking network
  rec({ event: 'login_succeeded', ip: '203.0.113.7', user: 'alice', app: 'mail', outcome: 'success' }, 20 * MIN);
  rec({ event: 'mfa_failed', ip: '203.0.113.7', user: 'alice', app: 'mail', outcome: 'failure' });
  rec({ event: 'mfa_failed', ip: '203.0.113.7', user: 'alice', app: 'mail', outcome: 'failure' });

  // bob: one failure from one network, then a success from another, a new one: worth a look
  rec({ event: 'login_failed', ip: '198.51.100.4', user: 'bob', app: 'mail', outcome: 'failure', reason: 'wrong password' }, HOUR);
  rec({ event: 'login_succeeded', ip: '10.20.30.40', user: 'bob', app: 'mail', outcome: 'success' });
  rec({ event: 'mfa_succeeded', ip: '198.51.100.4', user: 'bob', app: 'mail', outcome: 'success', reason: 'totp' });
  rec({ event: 'new_network_login', ip: '198.51.100.4', user: 'bob', app: 'mail', outcome: 'info', reason: '198.51.100.4' });
  rec({ event: 'session_started', ip: '198.51.100.4', user: 'bob', app: 'mail', outcome: 'success' });

  // carol: no failures at all
  rec({ event: 'login_succeeded', ip: '192.0.2.20', user: 'carol', app: 'mail', outcome: 'success' });

  // attempts over IPv6, two from one /64 and one from the next
  rec({ event: 'login_failed', ip: '2001:db8:1:2::10', user: 'dave', app: 'mail', outcome: 'failure', reason: 'wrong password' });
  rec({ event: 'login_failed', ip: '2001:db8:1:2:ffff::20', user: 'erin', app: 'mail', outcome: 'failure', reason: 'wrong password' });
  rec({ event: 'login_failed', ip: '2001:db8:1:3::1', user: 'dave', app: 'mail', outcome: 'failure', reason: 'wrong password' });

  // dave's password is below the policy (on_weak: flag)
  rec({ event: 'weak_password', ip: '192.0.2.30', user: 'dave', app: 'mail', outcome: 'info', reason: 'blocklist,too-short' });
  rec({ event: 'weak_password', ip: '192.0.2.30', user: 'dave', app: 'mail', outcome: 'info', reason: 'blocklist' });
  rec({ event: 'config_reloaded', ip: '-', outcome: 'success', reason: 'file changed' });
  await audit.close();
  // damage: a stray line, a JSON value that is not an audit event, an endless line, an unknown event
  await appendFile(path, `not json\n{"foo":1}\n${'x'.repeat(100 * 1024)}\n`);
  await appendFile(path, `${JSON.stringify({ ts: new Date(clock.now()).toISOString(), event: 'from_the_future', ip: '192.0.2.9', outcome: 'info' })}\n`);
}

before(async () => {
  tmp = await tmpDir('pc-report');
  file = join(tmp.dir, 'audit.jsonl');
  await writeScenario(file, T0);
});
after(async () => {
  await tmp.cleanup();
});

const WINDOW = { since: T0, until: T0 + 24 * HOUR };
const iso = (ms: number) => new Date(ms).toISOString();

describe('report over an audit file', () => {
  let r: AuditReport;
  before(async () => {
    r = await reportFromFile(file, WINDOW);
  });

  it('flags accounts that signed in after failures, the most failed first, with context', () => {
    assert.deepEqual(r.possibleCompromise.map((c) => c.user), ['alice', 'bob']);
    const alice = r.possibleCompromise[0]!;
    assert.deepEqual(alice, {
      user: 'alice',
      failuresBefore: 6,
      failureSources: 1,
      firstFailure: alice.firstFailure,
      lastFailure: alice.lastFailure,
      succeededAt: alice.succeededAt,
      succeededFrom: '203.0.113.7',
      fromFailingSource: true,
      laterSuccesses: 0,
      mfaSucceededAfter: 0,
      mfaFailedAfter: 2,
    });
    assert.ok(alice.firstFailure < alice.lastFailure && alice.lastFailure < alice.succeededAt);
    const bob = r.possibleCompromise[1]!;
    assert.equal(bob.failuresBefore, 1);
    assert.equal(bob.mfaSucceededAfter, 1);
    assert.ok(!r.possibleCompromise.some((c) => c.user === 'carol' || c.user === 'olduser'));
  });

  it('ranks the accounts attacked, marking names that do not exist', () => {
    assert.equal(r.attackedAccounts.count, 40 + 4); // u0..u39, alice, bob, dave, erin
    const top = r.attackedAccounts.top;
    assert.equal(top.length, 10);
    assert.deepEqual(top[0], { user: 'alice', failures: 6, throttled: 1, sources: 1, exists: true, lastFailure: top[0]!.lastFailure });
    assert.deepEqual(top[1]!.user, 'dave');
    assert.equal(top[1]!.failures, 2);
    assert.equal(top[1]!.sources, 2, 'two different /64s');
    const u0 = top.find((a) => a.user === 'u0');
    assert.equal(u0?.exists, false);
  });

  it('groups sources by IPv4 /24 and IPv6 /64', () => {
    assert.deepEqual(
      r.attackSources.top.map((s) => [s.network, s.failures, s.users, s.usersCapped, s.ipBlocks]),
      [
        ['203.0.113.0/24', 48, 32, true, 1], // 46 sign-in failures + 2 second-factor failures; 41 names, counted to 32
        ['2001:db8:1:2::/64', 2, 2, false, 0],
        ['198.51.100.0/24', 1, 1, false, 0],
        ['2001:db8:1:3::/64', 1, 1, false, 0],
      ],
    );
  });

  it('lists new-network sign-ins, weak passwords, lockouts and IP blocks', () => {
    assert.equal(r.newNetworkSignIns.count, 1);
    assert.deepEqual(
      r.newNetworkSignIns.recent.map((e) => [e.user, e.ip, e.reason, e.app]),
      [['bob', '198.51.100.4', '198.51.100.4', 'mail']],
    );
    assert.deepEqual(r.weakPasswords, { count: 1, accounts: [{ user: 'dave', count: 2, last: r.weakPasswords.accounts[0]!.last, reasons: ['blocklist', 'too-short'] }] });
    assert.equal(r.lockouts.count, 1);
    assert.equal(r.lockouts.accounts, 1);
    assert.equal(r.lockouts.recent[0]!.user, 'alice');
    assert.equal(r.ipBlocks.count, 1);
    assert.equal(r.ipBlocks.recent[0]!.ip, '203.0.113.5');
  });

  it('counts every event in the window, and only those; damaged lines are skipped and counted', () => {
    assert.deepEqual(Object.keys(r.totals), [...AUDIT_EVENTS]);
    assert.equal(r.totals.login_failed, 40 + 5 + 1 + 1 + 3);
    assert.equal(r.totals.login_succeeded, 3);
    assert.equal(r.totals.config_reloaded, 1);
    assert.equal(r.totals.lockdown_changed, 0);
    assert.deepEqual(r.input, { lines: 2 + 63 + 3 + 1, inWindow: 64, malformed: 2, tooLong: 1, unknownEvents: 1 });
    assert.equal(r.approximate, false);
    assert.deepEqual(r.window, { since: iso(T0), until: iso(T0 + 24 * HOUR) });
  });

  it('the JSON is stable: fixed keys, same output for the same input', async () => {
    assert.deepEqual(Object.keys(r), ['version', 'window', 'grouping', 'input', 'approximate', 'totals', 'possibleCompromise', 'attackedAccounts', 'attackSources', 'newNetworkSignIns', 'weakPasswords', 'lockouts', 'ipBlocks', 'sprayedPasswords', 'attackPosture']);
    assert.equal(JSON.stringify(await reportFromFile(file, WINDOW)), JSON.stringify(r));
  });

  it('the text leads with the possible compromise', () => {
    const text = formatReportText(r, 'audit.jsonl');
    const lines = text.split('\n');
    assert.match(lines[0]!, /^portcullis audit report: 2026-01-10 00:00:00Z to 2026-01-11 00:00:00Z \(audit\.jsonl\)$/);
    assert.match(lines[1]!, /^64 events in the window; 3 unreadable lines skipped$/);
    assert.equal(lines[3], '!!! POSSIBLE COMPROMISE: 2 accounts signed in after failed attempts in this window');
    assert.match(lines[4]!, /^!!! {3}alice: signed in 2026-01-10 \d\d:\d\d:\d\dZ from 203\.0\.113\.7, from a network that also failed, after 6 failures from 1 network .*second factor afterwards: 0 passed, 2 failed$/);
    assert.match(text, /^ {2}user +failures +throttled +networks +last failure$/m);
    assert.match(text, /^ {2}u0 \(no such user\) +1 +0 +1 /m);
    assert.match(text, /^ {2}203\.0\.113\.0\/24 +48 +32\+ +1 /m);
    assert.match(text, /^ {2}dave: 2 sign-ins, last .*; blocklist, too-short$/m);
  });

  it('a narrower window leaves out what happened before it', async () => {
    const late = await reportFromFile(file, { since: T0 + 90 * MIN, until: T0 + 24 * HOUR });
    assert.deepEqual(late.possibleCompromise.map((c) => c.user), ['bob']);
    assert.equal(late.totals.locked_out, 0);
  });
});

describe('reading', () => {
  it('lines and characters split anywhere across chunks, and CRLF endings, read the same', async () => {
    const lines = [
      JSON.stringify({ ts: iso(T0 + 1000), event: 'login_failed', ip: '192.0.2.7', user: 'zed', outcome: 'failure', reason: 'wrong password' }),
      JSON.stringify({ ts: iso(T0 + 2000), event: 'login_succeeded', ip: '198.51.100.7', user: 'zed', outcome: 'success' }),
    ];
    // a user name with multi-byte characters, cut in the middle of them by the chunking
    const bytes = Buffer.from(`${lines.join('\r\n')}\r\n`.replaceAll('zed', 'zé€d'));
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 7) chunks.push(bytes.subarray(i, i + 7));
    const b = new ReportBuilder(WINDOW);
    await feedLines(Readable.from(chunks), b);
    const out = b.finish();
    assert.equal(out.input.malformed, 0);
    assert.deepEqual(out.possibleCompromise.map((c) => [c.user, c.failuresBefore]), [['zé€d', 1]]);
  });

  it('one typo then the right password from the same network within minutes is the user, not a compromise', () => {
    const b = new ReportBuilder(WINDOW);
    const ev = (at: number, o: Record<string, string>) => b.addLine(JSON.stringify({ ts: iso(T0 + at), ...o }));
    ev(1000, { event: 'login_failed', ip: '192.0.2.7', user: 'typo', outcome: 'failure', reason: 'wrong password' });
    ev(20_000, { event: 'login_succeeded', ip: '192.0.2.8', user: 'typo', outcome: 'success' });
    // the same shape from another network, or after a long pause, is still flagged
    ev(1000, { event: 'login_failed', ip: '203.0.113.7', user: 'far', outcome: 'failure', reason: 'wrong password' });
    ev(20_000, { event: 'login_succeeded', ip: '192.0.2.9', user: 'far', outcome: 'success' });
    ev(1000, { event: 'login_failed', ip: '192.0.2.7', user: 'slow', outcome: 'failure', reason: 'wrong password' });
    ev(HOUR, { event: 'login_succeeded', ip: '192.0.2.7', user: 'slow', outcome: 'success' });
    const out = b.finish();
    assert.deepEqual(out.possibleCompromise.map((c) => c.user).sort(), ['far', 'slow']);
    assert.equal(out.attackedAccounts.count, 3, 'the typo still counts as an attempt on the account');
  });

  it('a spray over 200,000 invented names stays bounded and still flags the real account', () => {
    const b = new ReportBuilder({ ...WINDOW, maxKeys: 1000 });
    let t = T0 + 1000;
    const ev = (o: Record<string, string>) => b.addLine(JSON.stringify({ ts: iso((t += 10)), ...o }));
    ev({ event: 'login_failed', ip: '192.0.2.50', user: 'alice', outcome: 'failure', reason: 'wrong password' });
    for (let i = 0; i < 200_000; i++) {
      ev({ event: 'login_failed', ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, user: `guess${i}`, outcome: 'failure', reason: 'unknown user' });
    }
    ev({ event: 'login_succeeded', ip: '192.0.2.50', user: 'alice', outcome: 'success' });
    const out = b.finish();
    assert.equal(out.approximate, true);
    assert.ok(out.attackedAccounts.count <= 1000, `${out.attackedAccounts.count} names kept`);
    assert.ok(out.attackSources.count <= 1000);
    assert.deepEqual(out.possibleCompromise.map((c) => [c.user, c.failuresBefore, c.fromFailingSource]), [['alice', 1, true]]);
    assert.equal(out.totals.login_failed, 200_001, 'totals stay exact');
  });

  it('sourceNetwork groups addresses, mapped IPv6 as IPv4', () => {
    assert.equal(sourceNetwork('203.0.113.77'), '203.0.113.0/24');
    assert.equal(sourceNetwork('::ffff:203.0.113.77'), '203.0.113.0/24');
    assert.equal(sourceNetwork('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
    assert.equal(sourceNetwork('2001:db8:1:2:3:4:5:6', 48), '2001:db8:1::/48');
    assert.equal(sourceNetwork('-'), null);
  });
});

describe('portcullis report', () => {
  const cli = (...argv: string[]) => runCommand(argv);

  let config: string;
  before(async () => {
    // the same scenario, ending a few hours before now
    const recent = join(tmp.dir, 'recent.jsonl');
    await writeScenario(recent, Date.now() - 6 * HOUR);
    config = join(tmp.dir, 'portcullis.yaml');
    await writeFile(
      config,
      `data_dir: ${JSON.stringify(join(tmp.dir, 'data'))}
audit: { file: ${JSON.stringify(recent)} }
apps:
  - { name: mail, hosts: [mail.test], upstream: "builtin:whoami", rules: [{ policy: password }] }
`,
    );
  });

  it('--since 24h --format json: the report of the last day', async () => {
    const r = await cli('report', '--since', '24h', '--format', 'json', '--config', config);
    assert.equal(r.code, 0, r.err);
    const rep = JSON.parse(r.out) as AuditReport;
    assert.deepEqual(rep.possibleCompromise.map((c) => c.user), ['alice', 'bob']);
    assert.equal(rep.totals.login_failed, 50);
  });

  it('text by default; --since 1h sees nothing of it', async () => {
    const day = await cli('report', '--config', config);
    assert.equal(day.code, 0, day.err);
    assert.match(day.out, /!!! POSSIBLE COMPROMISE: 2 accounts/);
    const hour = await cli('report', '--since', '1h', '--config', config);
    assert.equal(hour.code, 0, hour.err);
    assert.match(hour.out, /No account signed in after failed attempts in this window\./);
    assert.match(hour.out, /^0 events in the window/m);
  });

  it('refuses a bad --since or --format, and says when there is no audit file', async () => {
    assert.equal((await cli('report', '--since', 'yesterday', '--config', config)).code, 2);
    assert.equal((await cli('report', '--format', 'xml', '--config', config)).code, 2);
    const missing = await cli('report', '--file', join(tmp.dir, 'nope.jsonl'), '--config', config);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /cannot read the audit file .*nope\.jsonl: no such file yet/);
  });
});
