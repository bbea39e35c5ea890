/**
 * Audit flooding: an attacker writes the audit trail.
 *
 * The attack: refusals cost the attacker nothing and each one was a line. The 2017 replay wrote
 * 180,000 `busy` lines in six minutes; a scanner outside the allowlist writes a `network_denied`
 * line per request. The trail fills the disk, costs a SIEM by the gigabyte, and buries the few
 * lines that matter (the one success among the failures) where nobody reads them. It is CWE-779
 * (logging of excessive data), and the reason syslog writes "last message repeated N times".
 *
 * The safe answer: identical refusals (same event, source address, outcome, reason and app:
 * throttled, busy, network and rule refusals, IP blocks) from one source within a clock minute
 * become one line with a `count`; the first is written at once; successes, failures that checked
 * a credential, lockouts, and anything distinct are written at once and never merged; pending
 * counts are written at the minute's end and on close; the table of pending counts is bounded
 * (an attacker rotating addresses gets lines written early, never counts dropped); the counts
 * in the file add up to every refusal, and `portcullis report` counts them.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ManualClock } from '../../src/clock.js';
import { AuditLog, type AuditInput } from '../../src/audit/audit-log.js';
import { reportFromFile } from '../../src/audit/report.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';
import { startTestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';

const T0 = Date.UTC(2026, 4, 4, 10, 0, 0);
let dir: TmpDir;
let n = 0;

before(async () => {
  dir = await tmpDir('pc-audit-flood');
});
after(async () => {
  await dir?.cleanup();
});

type Line = { ts: string; event: string; ip: string; user?: string; app?: string; outcome: string; reason?: string; count?: number };

function fresh(opts: { maxAggregates?: number } = {}): { log: AuditLog; clock: ManualClock; file: string; lines: () => Promise<Line[]>; seen: () => number } {
  const clock = new ManualClock(T0);
  const file = join(dir.dir, `audit-${n++}.jsonl`);
  const log = new AuditLog({ file, clock, ...opts });
  let seen = 0;
  log.on(() => seen++);
  return {
    log,
    clock,
    file,
    seen: () => seen,
    lines: async () => {
      // the file is written through a stream: read until it stops changing
      let text = await readFile(file, 'utf8').catch(() => '');
      for (;;) {
        await new Promise((r) => setTimeout(r, 30));
        const again = await readFile(file, 'utf8').catch(() => '');
        if (again === text) break;
        text = again;
      }
      return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
    },
  };
}

const busy = (ip: string, user = 'alice'): AuditInput => ({ event: 'login_failed', ip, user, app: 'mail', outcome: 'denied', reason: 'busy (hash budget spent)' });
const total = (ls: Line[], pred: (l: Line) => boolean = () => true) => ls.filter(pred).reduce((a, l) => a + (l.count ?? 1), 0);

test('10,000 identical refusals from one source in a minute: two lines, counting all 10,000', async () => {
  const { log, clock, lines, seen } = fresh();
  for (let i = 0; i < 10_000; i++) {
    log.record(busy('198.51.100.7'));
    clock.advance(5);
  }
  const during = await lines();
  assert.equal(during.length, 1, 'the first is written at once, the rest are held');
  assert.equal(during[0]!.count, undefined);
  clock.set(T0 + 60_000);
  log.flushDue(); // the periodic check at the minute's end
  const out = await lines();
  assert.equal(out.length, 2);
  assert.equal(out[1]!.count, 9_999);
  assert.equal(out[1]!.user, 'alice');
  assert.equal(out[1]!.reason, 'busy (hash budget spent)');
  assert.equal(total(out), 10_000);
  assert.equal(seen(), 10_000, 'listeners (metrics, notifications, the console) still see every event');
  assert.deepEqual(Object.keys(out[1]!), ['ts', 'event', 'ip', 'user', 'app', 'outcome', 'reason', 'count']);
  await log.close();
});

test('successes, credential failures, lockouts and anything distinct are written at once, never merged', async () => {
  const { log, clock, lines } = fresh();
  for (let i = 0; i < 50; i++) {
    log.record(busy('198.51.100.7'));
    log.record({ event: 'login_failed', ip: '198.51.100.7', user: 'alice', app: 'mail', outcome: 'failure', reason: 'wrong password' });
    clock.advance(100);
  }
  log.record({ event: 'login_succeeded', ip: '198.51.100.7', user: 'alice', app: 'mail', outcome: 'success' });
  log.record({ event: 'locked_out', ip: '198.51.100.7', user: 'alice', app: 'mail', outcome: 'denied', reason: 'unfamiliar networks' });
  log.record({ event: 'locked_out', ip: '198.51.100.7', user: 'bob', app: 'mail', outcome: 'denied', reason: 'unfamiliar networks' });
  log.record({ event: 'totp_replayed', ip: '198.51.100.7', user: 'alice', app: 'mail', outcome: 'denied', reason: 'time step already used' });
  log.record({ event: 'totp_replayed', ip: '198.51.100.7', user: 'alice', app: 'mail', outcome: 'denied', reason: 'time step already used' });
  // each differs from the flood in one field: each is a first occurrence
  log.record(busy('198.51.100.8'));
  log.record({ ...busy('198.51.100.7'), reason: 'throttled (ip)' });
  log.record({ ...busy('198.51.100.7'), event: 'mfa_failed' });
  log.record({ ...busy('198.51.100.7'), app: 'vpn' });
  const now = await lines();
  assert.equal(now.filter((l) => l.reason === 'wrong password').length, 50, 'every wrong password is its own line');
  assert.equal(now.filter((l) => l.event === 'login_succeeded').length, 1, 'the success is not held back');
  assert.equal(now.filter((l) => l.event === 'locked_out').length, 2);
  assert.equal(now.filter((l) => l.event === 'totp_replayed').length, 2);
  assert.equal(now.filter((l) => l.ip === '198.51.100.8').length, 1);
  assert.equal(now.filter((l) => l.reason === 'throttled (ip)').length, 1);
  assert.equal(now.filter((l) => l.event === 'mfa_failed').length, 1);
  assert.equal(now.filter((l) => l.app === 'vpn').length, 1);
  assert.equal(total(now, (l) => l.reason === 'busy (hash budget spent)' && l.ip === '198.51.100.7' && l.event === 'login_failed' && l.app === 'mail'), 1);
  await log.close(); // pending counts are written on close
  const out = await lines();
  assert.equal(total(out, (l) => l.reason === 'busy (hash budget spent)' && l.ip === '198.51.100.7' && l.event === 'login_failed' && l.app === 'mail'), 50);
  assert.ok(out.every((l) => l.count === undefined || l.outcome === 'denied'));
});

test('one line per source per minute: a new minute starts a new count; names that differ are not claimed', async () => {
  const { log, clock, lines } = fresh();
  clock.set(T0 + 59_000);
  log.record(busy('203.0.113.1', 'alice'));
  log.record(busy('203.0.113.1', 'bob'));
  log.record(busy('203.0.113.1', 'carol'));
  clock.set(T0 + 60_000);
  log.record(busy('203.0.113.1', 'dave')); // the minute is over: the held count goes out first
  log.record(busy('203.0.113.1', 'dave'));
  await log.close();
  const out = await lines();
  assert.deepEqual(
    out.map((l) => [l.user ?? null, l.count ?? 1, l.ts]),
    [
      ['alice', 1, new Date(T0 + 59_000).toISOString()],
      [null, 2, new Date(T0 + 59_000).toISOString()], // bob and carol: the line names no one rather than one of them
      ['dave', 1, new Date(T0 + 60_000).toISOString()],
      ['dave', 1, new Date(T0 + 60_000).toISOString()],
    ],
  );
});

test('an attacker rotating addresses cannot grow the table: it stays bounded, lines go out early, nothing is lost', async () => {
  const { log, lines } = fresh({ maxAggregates: 100 });
  let peak = 0;
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 5_000; i++) {
      log.record(busy(`10.${(i >> 8) & 255}.${i & 255}.${round}`));
      log.record(busy(`10.${(i >> 8) & 255}.${i & 255}.${round}`));
      peak = Math.max(peak, log.pendingAggregates);
    }
  }
  assert.ok(peak <= 100, `the table held ${peak} aggregates`);
  await log.close();
  const out = await lines();
  assert.equal(total(out), 30_000, 'every refusal is counted in the file');
  assert.ok(out.length <= 30_000);
});

test('portcullis report counts what a line with `count` stands for', async () => {
  const { log, clock, file } = fresh();
  for (let i = 0; i < 500; i++) log.record(busy('198.51.100.7'));
  for (let i = 0; i < 300; i++) log.record({ event: 'network_denied', ip: '198.51.100.9', app: 'mail', outcome: 'denied', reason: 'no rule admits this network' });
  for (let i = 0; i < 20; i++) log.record({ event: 'ip_blocked', ip: '198.51.100.7', user: 'alice', app: 'mail', outcome: 'denied', reason: 'too many failures from this source' });
  log.record({ event: 'login_failed', ip: '198.51.100.7', user: 'alice', app: 'mail', outcome: 'denied', reason: 'throttled (ip)' });
  await log.close();
  const r = await reportFromFile(file, { since: T0 - 60_000, until: clock.now() + 60_000 });
  assert.equal(r.totals.login_failed, 501);
  assert.equal(r.totals.network_denied, 300);
  assert.equal(r.totals.ip_blocked, 20);
  assert.equal(r.ipBlocks.count, 20);
  const source = r.attackSources.top.find((s) => s.network === '198.51.100.0/24');
  assert.equal(source?.failures, 501);
  assert.equal(source?.ipBlocks, 20);
  const alice = r.attackedAccounts.top.find((a) => a.user === 'alice');
  assert.equal(alice?.failures, 501);
  assert.equal(alice?.throttled, 1);
});

test('through the gateway: a scanner outside the allowlist writes a handful of lines, not one per request', async () => {
  const clock = new ManualClock(T0);
  const gw = await startTestGateway(
    `
apps:
  - name: files
    hosts: ["files.test"]
    upstream: "builtin:whoami"
    rules:
      - { networks: ["192.0.2.0/24"], policy: bypass }
`,
    { clock },
  );
  let text: string;
  try {
    for (let i = 0; i < 200; i++) {
      const r = await rawHttp(gw.port, get(`/probe/${i}`, 'files.test'));
      assert.equal(r.status, 403);
    }
  } finally {
    await gw.gw.close(); // writes what is held
    text = await readFile(gw.gw.rt.config.audit.file!, 'utf8');
    await gw.dir.cleanup();
  }
  const out = text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line)
    .filter((l) => l.ip === '127.0.0.1' && l.outcome === 'denied');
  assert.ok(out.length >= 1 && out.length <= 4, `${out.length} lines for 200 refusals`);
  assert.equal(total(out), 200);
});
