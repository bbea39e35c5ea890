/**
 * Durations as the configuration writes them: one whole number and one unit,
 * `500ms`, `90s`, `15m`, `12h`, `30d`. Nothing else is a duration: no bare numbers
 * (is `30` seconds or minutes?), no fractions, no compound forms, no signs, no spaces.
 */

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

type Unit = keyof typeof UNIT_MS;

/** At most nine digits: large enough for any sane timeout, far from losing integer precision. */
const DURATION = /^(0|[1-9][0-9]{0,8})(ms|s|m|h|d)$/;

/** Milliseconds for `90s`, `15m`, `12h`, `30d` or `500ms`; null for anything else. */
export function parseDuration(s: string): number | null {
  if (typeof s !== 'string') return null;
  const m = DURATION.exec(s);
  if (!m) return null;
  const ms = Number(m[1]) * UNIT_MS[m[2] as Unit];
  return Number.isSafeInteger(ms) ? ms : null;
}

/** The shortest exact spelling of `ms` in the configuration's own notation (`90000` -> `90s`). */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new RangeError(`not a duration: ${ms}`);
  if (ms === 0) return '0s';
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
