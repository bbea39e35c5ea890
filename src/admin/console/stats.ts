/**
 * What the console shows about attacks, computed from the audit trail's in-memory ring of recent
 * events (`AuditLog.recent`): the latest sign-in attempts, the accounts and source networks that
 * failed most, and failures over time. Pure functions over audit events; no I/O, no clock (the
 * caller passes `now`).
 *
 * A failure is a wrong password or app password (including attempts a throttle refused), a wrong
 * second-factor code, or a replayed one: `login_failed`, `mfa_failed`, `totp_replayed`. The
 * consequences (`locked_out`, `ip_blocked`) are shown as attempts but not counted again.
 * Sources are grouped the way one attacker usually holds addresses: an IPv4 /24, an IPv6 /64.
 */
import type { AuditEvent, AuditEventName } from '../../audit/events.js';
import { userKeyFor } from '../../auth/throttle.js';
import { networkKey, parseIp } from '../../net/ip.js';

/** Events shown in the "recent attempts" table. */
export const ATTEMPT_EVENTS: ReadonlySet<AuditEventName> = new Set<AuditEventName>([
  'login_failed',
  'login_succeeded',
  'mfa_failed',
  'mfa_succeeded',
  'totp_replayed',
  'locked_out',
  'ip_blocked',
  'network_denied',
]);

/** Events counted as one failed attempt each. */
export const FAILURE_EVENTS: ReadonlySet<AuditEventName> = new Set<AuditEventName>(['login_failed', 'mfa_failed', 'totp_replayed']);

/** IPv6 sources are grouped to this prefix (one subscriber usually holds a whole /64). */
export const SOURCE_V6_PREFIX = 64;

export function isFailure(e: AuditEvent): boolean {
  return FAILURE_EVENTS.has(e.event) && e.outcome !== 'success';
}

/** The latest attempts, newest first, at most `limit`. `events` are oldest first (as the ring gives them). */
export function recentAttempts(events: readonly AuditEvent[], limit: number): AuditEvent[] {
  const out: AuditEvent[] = [];
  for (let i = events.length - 1; i >= 0 && out.length < limit; i--) {
    const e = events[i]!;
    if (ATTEMPT_EVENTS.has(e.event)) out.push(e);
  }
  return out;
}

export interface TargetStat {
  /** What is shown: the user name as last typed, or the source network (`192.0.2.0/24`). */
  label: string;
  failures: number;
  /** Distinct source networks (for an account) or distinct accounts (for a source). */
  distinct: number;
  /** Timestamp (ISO) of the latest failure. */
  last: string;
}

/** The source network an address is grouped under, or null for a non-address (`-`). */
export function sourceNetwork(ip: string): string | null {
  return parseIp(ip) ? networkKey(ip, SOURCE_V6_PREFIX) : null;
}

interface Acc {
  label: string;
  failures: number;
  others: Set<string>;
  last: string;
}

function bump(map: Map<string, Acc>, key: string, label: string, other: string | null, ts: string): void {
  let a = map.get(key);
  if (!a) {
    a = { label, failures: 0, others: new Set(), last: ts };
    map.set(key, a);
  }
  a.failures++;
  if (other !== null) a.others.add(other);
  if (ts >= a.last) {
    a.last = ts;
    a.label = label;
  }
}

function top(map: Map<string, Acc>, limit: number): TargetStat[] {
  return [...map.values()]
    .sort((a, b) => b.failures - a.failures || (a.last < b.last ? 1 : a.last > b.last ? -1 : 0) || (a.label < b.label ? -1 : 1))
    .slice(0, limit)
    .map((a) => ({ label: a.label, failures: a.failures, distinct: a.others.size, last: a.last }));
}

/**
 * The accounts and source networks with the most failures, most first. User names are grouped
 * as the throttle groups them (case- and compatibility-folded), so `Alice` and `alice` are one.
 */
export function mostAttacked(events: readonly AuditEvent[], limit: number): { accounts: TargetStat[]; sources: TargetStat[] } {
  const accounts = new Map<string, Acc>();
  const sources = new Map<string, Acc>();
  for (const e of events) {
    if (!isFailure(e)) continue;
    const net = sourceNetwork(e.ip);
    const userKey = e.user !== undefined && e.user !== '' ? userKeyFor(e.user) : null;
    if (userKey !== null) bump(accounts, userKey, e.user!, net, e.ts);
    if (net !== null) bump(sources, net, net, userKey, e.ts);
  }
  return { accounts: top(accounts, limit), sources: top(sources, limit) };
}

export interface Series {
  /** Start of the first bucket (ms epoch). */
  start: number;
  bucketMs: number;
  counts: number[];
}

/**
 * Failures per bucket over the `buckets` buckets that end with the one holding `now`. Buckets
 * are aligned to multiples of `bucketMs` since the epoch (whole minutes, whole hours in UTC).
 */
export function failureSeries(events: readonly AuditEvent[], now: number, bucketMs: number, buckets: number): Series {
  if (!Number.isSafeInteger(bucketMs) || bucketMs < 1 || !Number.isSafeInteger(buckets) || buckets < 1) {
    throw new RangeError('failureSeries: bucketMs and buckets must be positive integers');
  }
  const end = Math.floor(now / bucketMs) * bucketMs + bucketMs;
  const start = end - buckets * bucketMs;
  const counts = new Array<number>(buckets).fill(0);
  for (const e of events) {
    if (!isFailure(e)) continue;
    const t = Date.parse(e.ts);
    if (!Number.isFinite(t) || t < start || t >= end) continue;
    counts[Math.floor((t - start) / bucketMs)]!++;
  }
  return { start, bucketMs, counts };
}
