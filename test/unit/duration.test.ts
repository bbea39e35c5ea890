import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { formatDuration, parseDuration } from '../../src/config/duration.js';

describe('parseDuration', () => {
  it('reads the units the configuration documents', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('90s'), 90_000);
    assert.equal(parseDuration('15m'), 15 * 60_000);
    assert.equal(parseDuration('12h'), 12 * 3_600_000);
    assert.equal(parseDuration('30d'), 30 * 86_400_000);
    assert.equal(parseDuration('0s'), 0);
  });

  it('refuses everything else instead of guessing', () => {
    for (const bad of [
      '',
      '30', // which unit?
      '1.5h',
      '-5m',
      '+5m',
      ' 5m',
      '5m ',
      '5 m',
      '5M',
      '5min',
      '1h30m',
      '05m',
      'm',
      '5w',
      '5y',
      'Infinity',
      '1e3s',
      '0x10s',
      '9999999999d', // too many digits
    ]) {
      assert.equal(parseDuration(bad), null, JSON.stringify(bad));
    }
    assert.equal(parseDuration(30 as unknown as string), null);
  });

  it('writes a duration back in the shortest exact form', () => {
    assert.equal(formatDuration(0), '0s');
    assert.equal(formatDuration(90_000), '90s');
    assert.equal(formatDuration(15 * 60_000), '15m');
    assert.equal(formatDuration(3_600_000), '1h');
    assert.equal(formatDuration(86_400_000 * 30), '30d');
    assert.equal(formatDuration(1_500), '1500ms');
    for (const s of ['500ms', '90s', '15m', '12h', '30d']) assert.equal(formatDuration(parseDuration(s)!), s);
    assert.throws(() => formatDuration(-1), RangeError);
  });
});
