/**
 * The attack posture (src/auth/attack.ts) with a ManualClock over the memory rate store: it starts
 * on the rate given (above `threshold` a minute, or above `factor` x the day's baseline), lasts
 * until the rate has stayed at or below it for `cooldown` after the last high minute, is written
 * once per episode even when several instances share the store, and `off` ends it for one
 * cooldown.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AttackPosture } from '../../src/auth/attack.js';
import { AuditLog } from '../../src/audit/audit-log.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { ManualClock } from '../../src/clock.js';
import type { AttackConfig } from '../../src/config/types.js';
import { MemoryRateStore } from '../../src/store/memory.js';
import { loadConfigText } from '../../src/config/index.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
/** 09:00:00 UTC: minute and hour boundaries are easy to reason about. */
const T0 = Date.UTC(2026, 2, 2, 9, 0, 0);

function setup(cfg: AttackConfig | null, shared?: { clock: ManualClock; rates: MemoryRateStore; events: AuditEvent[] }) {
  const clock = shared?.clock ?? new ManualClock(T0);
  const rates = shared?.rates ?? new MemoryRateStore(clock, 10_000);
  const events = shared?.events ?? [];
  const audit = new AuditLog({ file: null, clock });
  audit.on((e) => events.push(e));
  let config = cfg;
  const posture = new AttackPosture({ rates, clock, config: () => config, audit });
  // failures from distinct networks (one network counts at most PER_SOURCE_PER_MINUTE a minute)
  let nextSource = 0;
  const fail = async (n: number) => {
    for (let i = 0; i < n; i++) await posture.recordFailure(`198.18.${(nextSource >> 8) & 255}.${nextSource++ & 255}/src`);
  };
  const count = (event: string) => events.filter((e) => e.event === event).length;
  return { clock, rates, events, posture, fail, count, setConfig: (c: AttackConfig | null) => (config = c) };
}

describe('attack posture, threshold: 300 a minute, cooldown 30m', () => {
  const cfg: AttackConfig = { threshold: 300, factor: null, cooldownMs: 30 * MIN };

  it('300 failures in a minute is not an attack; the 301st is', async () => {
    const s = setup(cfg);
    s.clock.advance(20_000);
    await s.fail(300);
    assert.equal((await s.posture.tick()).active, false);
    assert.equal(s.posture.active, false);
    await s.fail(1);
    const st = await s.posture.tick();
    assert.equal(st.active, true);
    assert.equal(s.posture.active, true);
    assert.equal(st.since, T0 + 20_000);
    assert.equal(st.failuresThisMinute, 301);
    assert.equal(s.count('attack_started'), 1);
    assert.match(s.events[0]!.reason ?? '', /^301 failed sign-ins in a minute, above 300/);
  });

  it('one network alone can never switch it on, however fast it fails (it counts 2 a minute)', async () => {
    const s = setup(cfg);
    for (let minute = 0; minute < 5; minute++) {
      for (let i = 0; i < 1000; i++) await s.posture.recordFailure('203.0.113.0/24');
      assert.equal((await s.posture.tick()).active, false, `minute ${minute}`);
      s.clock.advance(MIN);
    }
    assert.equal(s.count('attack_started'), 0);
  });

  it('300 a minute spread over two minutes never starts it', async () => {
    const s = setup(cfg);
    await s.fail(200);
    s.clock.advance(MIN);
    await s.fail(200);
    assert.equal((await s.posture.tick()).active, false);
  });

  it('ends exactly one cooldown after the last minute above the threshold, not before; once', async () => {
    const s = setup(cfg);
    s.clock.advance(10_000); // 09:00:10
    await s.fail(400);
    await s.posture.tick();
    // still high in the next minute: the posture runs from the end of that minute
    s.clock.set(T0 + MIN + 5_000); // 09:01:05
    await s.fail(350);
    assert.equal((await s.posture.tick()).endsAt, T0 + 2 * MIN + 30 * MIN);
    // quiet from 09:02 on: ticks keep it on until 09:32:00
    for (const t of [T0 + 5 * MIN, T0 + 20 * MIN, T0 + 32 * MIN - 1]) {
      s.clock.set(t);
      assert.equal((await s.posture.tick()).active, true, new Date(t).toISOString());
    }
    s.clock.set(T0 + 32 * MIN);
    const st = await s.posture.tick();
    assert.equal(st.active, false);
    assert.equal(s.posture.active, false);
    assert.deepEqual(st.last, { since: T0 + 10_000, endedAt: T0 + 32 * MIN, by: null });
    await s.posture.tick();
    assert.equal(s.count('attack_started'), 1);
    assert.equal(s.count('attack_ended'), 1);
  });

  it('a high minute during the cooldown extends it; a later attack is a new episode', async () => {
    const s = setup(cfg);
    await s.fail(301);
    await s.posture.tick();
    s.clock.set(T0 + 20 * MIN);
    await s.fail(301);
    assert.equal((await s.posture.tick()).endsAt, T0 + 51 * MIN);
    s.clock.set(T0 + 51 * MIN);
    assert.equal((await s.posture.tick()).active, false);
    s.clock.set(T0 + 3 * HOUR);
    await s.fail(301);
    assert.equal((await s.posture.tick()).active, true);
    assert.equal(s.count('attack_started'), 2);
    assert.equal(s.count('attack_ended'), 1);
  });

  it('only the instance that wins the claim writes the events, however many share the store', async () => {
    const a = setup(cfg);
    const b = setup(cfg, { clock: a.clock, rates: a.rates, events: a.events });
    const c = setup(cfg, { clock: a.clock, rates: a.rates, events: a.events });
    await a.fail(150);
    await b.fail(151); // above only together
    await Promise.all([a.posture.tick(), b.posture.tick(), c.posture.tick()]);
    await Promise.all([a.posture.tick(), b.posture.tick(), c.posture.tick()]);
    assert.deepEqual([a.posture.active, b.posture.active, c.posture.active], [true, true, true]);
    a.clock.advance(31 * MIN);
    await Promise.all([a.posture.tick(), b.posture.tick(), c.posture.tick()]);
    assert.deepEqual([a.posture.active, b.posture.active, c.posture.active], [false, false, false]);
    assert.equal(a.count('attack_started'), 1);
    assert.equal(a.count('attack_ended'), 1);
  });

  it('off ends the episode at once; it does not start again for one cooldown, then does if the rate is still high', async () => {
    const s = setup(cfg);
    await s.fail(301);
    await s.posture.tick();
    const off = await s.posture.off('cli:admin', '127.0.0.1');
    assert.equal(off.changed, true);
    assert.equal(off.status.active, false);
    assert.equal(off.status.quietUntil, T0 + 30 * MIN);
    assert.equal(s.posture.active, false);
    const ended = s.events.find((e) => e.event === 'attack_ended')!;
    assert.match(ended.reason ?? '', /^ended by cli:admin/);
    assert.equal(ended.ip, '127.0.0.1');
    // the attack goes on
    for (let m = 1; m < 30; m += 7) {
      s.clock.set(T0 + m * MIN);
      await s.fail(400);
      assert.equal((await s.posture.tick()).active, false, `quiet at minute ${m}`);
    }
    s.clock.set(T0 + 30 * MIN + 1_000);
    await s.fail(400);
    assert.equal((await s.posture.tick()).active, true);
    assert.equal(s.count('attack_started'), 2);
    assert.equal((await s.posture.off('cli:admin')).changed, true);
    assert.equal((await s.posture.off('cli:admin')).changed, false, 'nothing to end');
    assert.equal(s.count('attack_ended'), 2);
  });

  it('without an attack section nothing is counted and nothing starts; removing it ends an episode', async () => {
    const s = setup(null);
    await s.fail(10_000);
    assert.equal((await s.posture.tick()).configured, false);
    assert.equal(s.posture.active, false);
    assert.equal(s.rates.sizes.counters, 0, 'no counting without the section');
    s.setConfig(cfg);
    await s.fail(301);
    await s.posture.tick();
    assert.equal(s.posture.active, true);
    s.setConfig(null);
    assert.equal(s.posture.active, false);
    await s.posture.tick();
    assert.equal(s.count('attack_ended'), 1);
  });
});

describe('attack posture, factor: 10 x the baseline of the last day', () => {
  const cfg: AttackConfig = { threshold: null, factor: 10, cooldownMs: 30 * MIN };

  it('with no history the baseline is taken as 1 a minute: more than 10 in a minute starts it', async () => {
    const s = setup(cfg);
    await s.fail(10);
    const st = await s.posture.tick();
    assert.equal(st.active, false);
    assert.equal(st.threshold, 10);
    assert.equal(st.baselinePerMinute, 0);
    await s.fail(1);
    assert.equal((await s.posture.tick()).active, true);
  });

  it('a day at 3 a minute: 30 in a minute is normal, 31 is an attack; the bar is frozen for the episode', async () => {
    const s = setup(cfg);
    // 24 whole hours of 180 failures each (3 a minute on average)
    for (let h = 0; h < 24; h++) {
      s.clock.set(T0 + h * HOUR + 30 * MIN);
      await s.fail(180);
    }
    s.clock.set(T0 + 24 * HOUR + 10_000);
    await s.fail(30);
    const quiet = await s.posture.tick();
    assert.equal(quiet.baselinePerMinute, 3);
    assert.equal(quiet.threshold, 30);
    assert.equal(quiet.active, false);
    await s.fail(1);
    const on = await s.posture.tick();
    assert.equal(on.active, true);
    assert.match(s.events.find((e) => e.event === 'attack_started')!.reason ?? '', /31 failed sign-ins in a minute, above 30 \(10 x the baseline of 3 a minute\)/);
    // hours later, the attack itself has raised the day's average; the episode keeps its bar
    for (let h = 1; h <= 3; h++) {
      s.clock.set(T0 + (24 + h) * HOUR + 10_000);
      await s.fail(31);
      const st = await s.posture.tick();
      assert.equal(st.active, true);
      assert.equal(st.threshold, 30);
    }
  });
});

describe('attack config', () => {
  const base = 'apps:\n  - { name: m, hosts: [m.test], upstream: "builtin:whoami", rules: [{ policy: password }] }\n';
  it('threshold or factor, with cooldown defaulting to 30m; absent means no posture', () => {
    const a = loadConfigText(`attack: { threshold: 300 }\n${base}`, 'a.yaml');
    assert.ok(a.ok);
    assert.deepEqual(a.config.attack, { threshold: 300, factor: null, cooldownMs: 30 * MIN });
    const f = loadConfigText(`attack: { factor: 10, cooldown: 1h }\n${base}`, 'f.yaml');
    assert.ok(f.ok);
    assert.deepEqual(f.config.attack, { threshold: null, factor: 10, cooldownMs: HOUR });
    const none = loadConfigText(base, 'n.yaml');
    assert.ok(none.ok);
    assert.equal(none.config.attack, null);
  });

  it('both, neither, bad values and unknown keys are refused with file:line:col', () => {
    const bad = loadConfigText(
      `attack:\n  threshold: 300\n  factor: 10\n${base}`,
      'both.yaml',
    );
    assert.ok(!bad.ok);
    assert.deepEqual(bad.issues.map((i) => [i.line, i.col, i.path]), [[3, 11, 'attack.factor']]);
    assert.match(bad.issues[0]!.message, /not both/);
    const neither = loadConfigText(`attack: { cooldown: 10m }\n${base}`, 'neither.yaml');
    assert.ok(!neither.ok);
    assert.match(neither.issues[0]!.message, /give "threshold".*or "factor"/);
    const values = loadConfigText(`attack: { factor: 1, cooldown: 30, thresold: 3 }\n${base}`, 'v.yaml');
    assert.ok(!values.ok);
    const msgs = values.issues.map((i) => `${i.file}:${i.line}:${i.col} ${i.path}: ${i.message}`);
    assert.ok(msgs.some((m) => /^v\.yaml:1:\d+ attack\.thresold: unknown key "thresold"; did you mean "threshold"\?/.test(m)), msgs.join('\n'));
    assert.ok(msgs.some((m) => /attack\.factor: expected a whole number from 2 to 1000/.test(m)), msgs.join('\n'));
    assert.ok(msgs.some((m) => /attack\.cooldown: .*has no unit/.test(m)), msgs.join('\n'));
  });
});

describe('portcullis report: attack posture episodes and sprayed passwords', () => {
  it('counts the episodes that started in the window and the passwords marked, in JSON and text', async () => {
    const { ReportBuilder, formatReportText } = await import('../../src/audit/report.js');
    const b = new ReportBuilder({ since: T0, until: T0 + 24 * HOUR });
    const at = (m: number) => new Date(T0 + m * MIN).toISOString();
    const lines = [
      { ts: at(1), event: 'attack_started', ip: '-', outcome: 'info', reason: '400 failed sign-ins in a minute, above 300' },
      { ts: at(2), event: 'password_sprayed', ip: '198.51.100.7', outcome: 'denied', reason: 'tried on 20 accounts within 1h; refused from unfamiliar networks for 1d: a, b' },
      { ts: at(3), event: 'login_failed', ip: '198.51.100.8', user: 'c', outcome: 'denied', reason: 'sprayed password' },
      { ts: at(4), event: 'login_failed', ip: '198.51.100.9', user: 'd', outcome: 'denied', reason: 'sprayed password' },
      { ts: at(40), event: 'attack_ended', ip: '-', outcome: 'info', reason: 'failed sign-ins at or below 300 a minute for 30m' },
      { ts: at(90), event: 'attack_started', ip: '-', outcome: 'info', reason: '310 failed sign-ins in a minute, above 300' },
    ];
    for (const l of lines) b.addLine(JSON.stringify(l));
    const r = b.finish();
    assert.deepEqual({ episodes: r.attackPosture.episodes, ended: r.attackPosture.ended }, { episodes: 2, ended: 1 });
    assert.deepEqual({ marked: r.sprayedPasswords.marked, refused: r.sprayedPasswords.refused }, { marked: 1, refused: 2 });
    const text = formatReportText(r);
    assert.match(text, /Attack posture episodes: 2 started, 1 ended/);
    assert.match(text, /Passwords marked as sprayed: 1; sign-ins refused for using one: 2/);
  });
});
