/**
 * The audit report (`portcullis report`): what an admin needs to know after a night of password
 * guessing, read from the audit trail (JSON lines, `audit.file`).
 *
 * - accounts that signed in after failed attempts in the window: a possible compromise, listed
 *   first, with how many failures from how many sources, whether the success came from a source
 *   that also failed, and what happened at the second factor afterwards;
 * - the accounts attacked (failed sign-ins by user name, names that do not exist marked);
 * - where the attempts came from, grouped by IPv4 /24 and IPv6 /64 (one subscriber or one cloud
 *   tenant usually holds a whole block), with how many user names each block tried;
 * - sign-ins from new networks, passwords below the policy in use, lockouts and IP blocks;
 * - passwords marked as sprayed and sign-ins refused for using one; attack posture episodes;
 * - a count of every event.
 *
 * The file is read as a stream, one line at a time, in bounded memory whatever its size or
 * content: a line longer than 64 KiB is skipped, and each table keeps at most `maxKeys` names;
 * past that the least active entries (names that do not exist first) are forgotten and the report
 * is marked approximate (a spray over millions of random names cannot exhaust memory).
 *
 * JSON output is stable: fixed keys, every event name in `totals`, lists sorted with ties broken
 * by name, times in ISO 8601 UTC.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { networkKey, parseIp } from '../net/ip.js';
import { AUDIT_EVENTS, type AuditEventName } from './events.js';

export interface ReportOptions {
  /** Count events at or after this time (ms since the epoch). */
  since: number;
  /** ...and before this one. */
  until: number;
  /** Rows in each ranked list (default 10). */
  top?: number;
  /** Sources are grouped by this IPv6 prefix (default 64) and IPv4 /24. */
  ipv6Prefix?: number;
  /** Names kept per table before counts become approximate (default 50,000). */
  maxKeys?: number;
  /** Entries kept in the event lists (new networks, lockouts, blocks; default 50, most recent). */
  maxListed?: number;
}

/** At most this many failures, all from the network that then succeeded within TYPO_WINDOW_MS, are typing mistakes. */
const TYPO_FAILURES = 2;
const TYPO_WINDOW_MS = 10 * 60_000;
/** Typing mistakes held aside at most (each a real account that then signed in). */
const MAX_TYPOS = 100_000;

export interface CompromiseSuspect {
  user: string;
  /** Failed sign-ins for the account in the window before its first success. */
  failuresBefore: number;
  /** Distinct source networks those failures came from. */
  failureSources: number;
  firstFailure: string;
  lastFailure: string;
  succeededAt: string;
  succeededFrom: string;
  /** The successful source network is one the failures came from. */
  fromFailingSource: boolean;
  /** Sign-ins after the first suspect one, and second-factor outcomes from then on. */
  laterSuccesses: number;
  mfaSucceededAfter: number;
  mfaFailedAfter: number;
}

export interface AttackedAccount {
  user: string;
  failures: number;
  /** Of which refused by throttling without a password check. */
  throttled: number;
  /** Distinct source networks (at most 32 counted). */
  sources: number;
  /** False when every checked attempt said "unknown user". */
  exists: boolean;
  lastFailure: string;
}

export interface AttackSource {
  /** `203.0.113.0/24` or `2001:db8:1:2::/64`. */
  network: string;
  /** Failed sign-ins and second factors from the network. */
  failures: number;
  /** Distinct user names tried (at most 32 counted; `usersCapped` when there were more). */
  users: number;
  usersCapped: boolean;
  ipBlocks: number;
  lastFailure: string;
}

export interface ListedEvent {
  ts: string;
  user: string | null;
  ip: string;
  app: string | null;
  reason: string | null;
}

export interface WeakPasswordUse {
  user: string;
  count: number;
  last: string;
  reasons: string[];
}

export interface AuditReport {
  version: 1;
  window: { since: string; until: string };
  /** How source addresses are grouped into networks. */
  grouping: { ipv4Prefix: 24; ipv6Prefix: number };
  input: { lines: number; inWindow: number; malformed: number; tooLong: number; unknownEvents: number };
  /** Some table outgrew `maxKeys`: counts of the least active names are incomplete. */
  approximate: boolean;
  totals: Record<AuditEventName, number>;
  possibleCompromise: CompromiseSuspect[];
  attackedAccounts: { count: number; top: AttackedAccount[] };
  attackSources: { count: number; top: AttackSource[] };
  newNetworkSignIns: { count: number; recent: ListedEvent[] };
  weakPasswords: { count: number; accounts: WeakPasswordUse[] };
  lockouts: { count: number; accounts: number; recent: ListedEvent[] };
  ipBlocks: { count: number; recent: ListedEvent[] };
  /** Passwords marked sprayed (`password_sprayed`), and sign-ins refused before any hash for using one. */
  sprayedPasswords: { marked: number; refused: number; recent: ListedEvent[] };
  /** Attack posture episodes that started in the window (`attack_started`), and how many ended. */
  attackPosture: { episodes: number; ended: number; recent: ListedEvent[] };
}

const MAX_LINE = 64 * 1024;
const SET_CAP = 32;
/** `login_failed` reasons that prove the account exists. */
const KNOWN_ACCOUNT_REASONS = new Set(['wrong password', 'user disabled', 'password below policy (on_weak: deny)', 'wrong current password on password change']);
const EVENT_NAMES = new Set<string>(AUDIT_EVENTS);

interface UserRec {
  failures: number;
  throttled: number;
  sources: Set<string>;
  exists: boolean;
  unknown: boolean;
  first: string;
  last: string;
}

interface SourceRec {
  failures: number;
  users: Set<string>;
  usersCapped: boolean;
  ipBlocks: number;
  last: string;
}

/** A map that keeps at most `max` keys, forgetting the lightest half when full. */
class BoundedTable<V> {
  readonly map = new Map<string, V>();
  pruned = false;
  constructor(
    private readonly max: number,
    private readonly weight: (v: V) => number,
  ) {}
  get(k: string): V | undefined {
    return this.map.get(k);
  }
  getOrAdd(k: string, make: () => V): V {
    let v = this.map.get(k);
    if (v === undefined) {
      if (this.map.size >= this.max) this.prune();
      v = make();
      this.map.set(k, v);
    }
    return v;
  }
  private prune(): void {
    this.pruned = true;
    const keep = [...this.map].sort((a, b) => this.weight(b[1]) - this.weight(a[1])).slice(0, Math.floor(this.max / 2));
    this.map.clear();
    for (const [k, v] of keep) this.map.set(k, v);
  }
}

/** Keeps the last `n` items. */
class Recent<T> {
  private readonly items: T[] = [];
  count = 0;
  constructor(private readonly n: number) {}
  push(x: T, n = 1): void {
    this.count += n;
    this.items.push(x);
    if (this.items.length > this.n) this.items.shift();
  }
  newestFirst(): T[] {
    return [...this.items].reverse();
  }
}

function addCapped(s: Set<string>, v: string): boolean {
  if (s.has(v)) return true;
  if (s.size >= SET_CAP) return false;
  s.add(v);
  return true;
}

interface Parsed {
  ts: string;
  t: number;
  event: string;
  ip: string;
  user: string | null;
  app: string | null;
  reason: string | null;
  /** How many events the line stands for (`count`, written for a burst of identical refusals). */
  n: number;
}

/** Accumulates events in file order; `finish` builds the report. Pure: no I/O, no clock. */
export class ReportBuilder {
  private readonly top: number;
  private readonly v6: number;
  private readonly sinceIso: string;
  private lines = 0;
  private inWindow = 0;
  private malformed = 0;
  private tooLong = 0;
  private unknownEvents = 0;
  private readonly totals = Object.fromEntries(AUDIT_EVENTS.map((e) => [e, 0])) as Record<AuditEventName, number>;
  private readonly users: BoundedTable<UserRec>;
  private readonly sources: BoundedTable<SourceRec>;
  private readonly weak: BoundedTable<{ count: number; last: string; reasons: Set<string> }>;
  private readonly suspects = new Map<string, CompromiseSuspect>();
  private readonly lockedUsers: BoundedTable<true>;
  private readonly newNetworks: Recent<ListedEvent>;
  private readonly lockouts: Recent<ListedEvent>;
  private readonly blocks: Recent<ListedEvent>;
  private readonly sprayed: Recent<ListedEvent>;
  private sprayedRefused = 0;
  private readonly attacks: Recent<ListedEvent>;
  private attacksEnded = 0;

  constructor(private readonly opts: ReportOptions) {
    const maxKeys = Math.max(16, opts.maxKeys ?? 50_000);
    const listed = Math.max(1, opts.maxListed ?? 50);
    this.top = Math.max(1, opts.top ?? 10);
    this.v6 = opts.ipv6Prefix ?? 64;
    this.sinceIso = new Date(opts.since).toISOString();
    // names proven to exist outweigh any number of guesses at names that do not
    this.users = new BoundedTable(maxKeys, (u) => u.failures + (u.exists ? 1e12 : 0));
    this.sources = new BoundedTable(maxKeys, (s) => s.failures + s.ipBlocks);
    this.weak = new BoundedTable(maxKeys, (w) => w.count);
    this.lockedUsers = new BoundedTable(maxKeys, () => 1);
    this.newNetworks = new Recent(listed);
    this.lockouts = new Recent(listed);
    this.blocks = new Recent(listed);
    this.sprayed = new Recent(listed);
    this.attacks = new Recent(listed);
  }

  /** One line of the audit file (without its newline). */
  addLine(line: string): void {
    this.lines++;
    if (line.length === 0) return;
    // Lines are written `{"ts":"<24-char ISO time>",...`: most lines outside the window are
    // recognised without parsing them.
    if (line.startsWith('{"ts":"') && line.charCodeAt(31) === 34 && line.slice(7, 31) < this.sinceIso) return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      this.malformed++;
      return;
    }
    this.addEvent(v);
  }

  /** Counts a line that was too long to read (it is skipped). */
  skipTooLong(): void {
    this.lines++;
    this.tooLong++;
  }

  /** One parsed audit object. Anything without the audit shape counts as malformed. */
  addEvent(v: unknown): void {
    const e = parse(v);
    if (!e) {
      this.malformed++;
      return;
    }
    if (e.t < this.opts.since || e.t >= this.opts.until) return;
    this.inWindow += e.n;
    if (!EVENT_NAMES.has(e.event)) {
      this.unknownEvents++;
      return;
    }
    this.totals[e.event as AuditEventName] += e.n;
    const source = e.ip === '-' ? null : sourceNetwork(e.ip, this.v6);
    switch (e.event as AuditEventName) {
      case 'login_failed':
        this.failure(e, source, true);
        if (e.reason?.startsWith('sprayed password')) this.sprayedRefused++;
        break;
      case 'password_sprayed':
        this.sprayed.push(listed(e));
        break;
      case 'attack_started':
        this.attacks.push(listed(e));
        break;
      case 'attack_ended':
        this.attacksEnded++;
        break;
      case 'mfa_failed':
        this.failure(e, source, false);
        if (e.user) {
          const s = this.suspects.get(e.user);
          if (s) s.mfaFailedAfter += e.n;
        }
        break;
      case 'mfa_succeeded':
        if (e.user) {
          const s = this.suspects.get(e.user);
          if (s) s.mfaSucceededAfter++;
        }
        break;
      case 'login_succeeded':
        if (e.user) this.success(e, source);
        break;
      case 'new_network_login':
        this.newNetworks.push(listed(e));
        if (e.user) this.promoteTypo(e.user);
        break;
      case 'weak_password':
        if (e.user) {
          const w = this.weak.getOrAdd(e.user, () => ({ count: 0, last: e.ts, reasons: new Set() }));
          w.count++;
          w.last = e.ts;
          for (const r of (e.reason ?? '').split(',').filter(Boolean)) addCapped(w.reasons, r);
        }
        break;
      case 'locked_out':
        this.lockouts.push(listed(e));
        if (e.user) this.lockedUsers.getOrAdd(e.user, () => true);
        break;
      case 'ip_blocked':
        this.blocks.push(listed(e), e.n);
        if (source) this.sourceRec(source, e.ts).ipBlocks += e.n;
        break;
      default:
        break;
    }
  }

  private sourceRec(network: string, ts: string): SourceRec {
    return this.sources.getOrAdd(network, () => ({ failures: 0, users: new Set(), usersCapped: false, ipBlocks: 0, last: ts }));
  }

  private failure(e: Parsed, source: string | null, password: boolean): void {
    if (source) {
      const s = this.sourceRec(source, e.ts);
      s.failures += e.n;
      s.last = e.ts;
      if (e.user && !addCapped(s.users, e.user)) s.usersCapped = true;
    }
    if (!password || !e.user) return;
    const u = this.users.getOrAdd(e.user, () => ({ failures: 0, throttled: 0, sources: new Set(), exists: false, unknown: false, first: e.ts, last: e.ts }));
    u.failures += e.n;
    u.last = e.ts;
    if (e.reason?.startsWith('throttled')) u.throttled += e.n;
    else if (e.reason === 'unknown user') u.unknown = true;
    else if (e.reason !== null && KNOWN_ACCOUNT_REASONS.has(e.reason)) u.exists = true;
    if (source) addCapped(u.sources, source);
  }

  /** Typing mistakes set aside (see success), until the success turns out to be from a new network. */
  private readonly typos = new Map<string, { failures: number; sources: number; first: string; last: string; at: string; ip: string }>();

  private promoteTypo(user: string): void {
    const t = this.typos.get(user);
    if (!t || this.suspects.has(user)) return;
    this.typos.delete(user);
    this.suspects.set(user, {
      user,
      failuresBefore: t.failures,
      failureSources: t.sources,
      firstFailure: t.first,
      lastFailure: t.last,
      succeededAt: t.at,
      succeededFrom: t.ip,
      fromFailingSource: true,
      laterSuccesses: 0,
      mfaSucceededAfter: 0,
      mfaFailedAfter: 0,
    });
  }

  private success(e: Parsed, source: string | null): void {
    const user = e.user!;
    const u = this.users.get(user);
    if (u) u.exists = true;
    const s = this.suspects.get(user);
    if (s) {
      s.laterSuccesses++;
      return;
    }
    if (!u || u.failures === 0) return;
    // a typo or two, then the right password from the same network within minutes: the user, not
    // an attacker (flagging it would teach admins to ignore the list)
    const sameSource = source !== null && u.sources.has(source) && u.sources.size === 1;
    if (sameSource && u.failures <= TYPO_FAILURES && e.t - Date.parse(u.last) <= TYPO_WINDOW_MS) {
      // unless that network turns out to be new to the account (new_network_login follows)
      if (this.typos.size < MAX_TYPOS) this.typos.set(user, { failures: u.failures, sources: u.sources.size, first: u.first, last: u.last, at: e.ts, ip: e.ip });
      return;
    }
    this.suspects.set(user, {
      user,
      failuresBefore: u.failures,
      failureSources: u.sources.size,
      firstFailure: u.first,
      lastFailure: u.last,
      succeededAt: e.ts,
      succeededFrom: e.ip,
      fromFailingSource: source !== null && u.sources.has(source),
      laterSuccesses: 0,
      mfaSucceededAfter: 0,
      mfaFailedAfter: 0,
    });
  }

  finish(): AuditReport {
    const byCount = <T>(key: (x: T) => number, name: (x: T) => string) => (a: T, b: T) => key(b) - key(a) || (name(a) < name(b) ? -1 : name(a) > name(b) ? 1 : 0);
    const accounts = [...this.users.map].map(
      ([user, u]): AttackedAccount => ({ user, failures: u.failures, throttled: u.throttled, sources: u.sources.size, exists: u.exists || !u.unknown, lastFailure: u.last }),
    );
    const sources = [...this.sources.map]
      .filter(([, s]) => s.failures > 0 || s.ipBlocks > 0)
      .map(([network, s]): AttackSource => ({ network, failures: s.failures, users: s.users.size, usersCapped: s.usersCapped, ipBlocks: s.ipBlocks, lastFailure: s.last }));
    return {
      version: 1,
      window: { since: new Date(this.opts.since).toISOString(), until: new Date(this.opts.until).toISOString() },
      grouping: { ipv4Prefix: 24, ipv6Prefix: this.v6 },
      input: { lines: this.lines, inWindow: this.inWindow, malformed: this.malformed, tooLong: this.tooLong, unknownEvents: this.unknownEvents },
      approximate: this.users.pruned || this.sources.pruned || this.weak.pruned || this.lockedUsers.pruned,
      totals: { ...this.totals },
      possibleCompromise: [...this.suspects.values()].sort(byCount((s) => s.failuresBefore, (s) => s.user)),
      attackedAccounts: { count: accounts.length, top: accounts.sort(byCount((a) => a.failures, (a) => a.user)).slice(0, this.top) },
      attackSources: { count: sources.length, top: sources.sort(byCount((s) => s.failures + s.ipBlocks, (s) => s.network)).slice(0, this.top) },
      newNetworkSignIns: { count: this.newNetworks.count, recent: this.newNetworks.newestFirst() },
      weakPasswords: {
        count: this.weak.map.size,
        accounts: [...this.weak.map]
          .map(([user, w]) => ({ user, count: w.count, last: w.last, reasons: [...w.reasons].sort() }))
          .sort(byCount((w) => w.count, (w) => w.user)),
      },
      lockouts: { count: this.lockouts.count, accounts: this.lockedUsers.map.size, recent: this.lockouts.newestFirst() },
      ipBlocks: { count: this.blocks.count, recent: this.blocks.newestFirst() },
      sprayedPasswords: { marked: this.sprayed.count, refused: this.sprayedRefused, recent: this.sprayed.newestFirst() },
      attackPosture: { episodes: this.attacks.count, ended: this.attacksEnded, recent: this.attacks.newestFirst() },
    };
  }
}

function parse(v: unknown): Parsed | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  if (typeof o.ts !== 'string' || typeof o.event !== 'string' || typeof o.ip !== 'string') return null;
  const t = Date.parse(o.ts);
  if (!Number.isFinite(t)) return null;
  const opt = (x: unknown) => (typeof x === 'string' ? x : null);
  const n = typeof o.count === 'number' && Number.isSafeInteger(o.count) && o.count > 0 ? o.count : 1;
  return { ts: new Date(t).toISOString(), t, event: o.event, ip: o.ip, user: opt(o.user), app: opt(o.app), reason: opt(o.reason), n };
}

function listed(e: Parsed): ListedEvent {
  return { ts: e.ts, user: e.user, ip: e.ip, app: e.app, reason: e.reason };
}

/** `203.0.113.0/24` for IPv4, `2001:db8::/64` (the given prefix) for IPv6; null for a non-address. */
export function sourceNetwork(ip: string, ipv6Prefix = 64): string | null {
  return parseIp(ip) ? networkKey(ip, ipv6Prefix) : null;
}

/** Feed a stream of JSON lines to a builder, a line at a time, never holding more than 64 KiB of one line. */
export async function feedLines(stream: Readable, b: ReportBuilder): Promise<void> {
  let partial = '';
  let skipping = false;
  const decoder = new StringDecoder('utf8'); // a character split between two chunks stays whole
  for await (const raw of stream as AsyncIterable<Buffer | string>) {
    const chunk = typeof raw === 'string' ? raw : decoder.write(raw);
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf('\n', start);
      const piece = nl < 0 ? chunk.slice(start) : chunk.slice(start, nl);
      if (!skipping) {
        if (partial.length + piece.length > MAX_LINE) {
          skipping = true;
          partial = '';
        } else partial += piece;
      }
      if (nl < 0) break;
      if (skipping) b.skipTooLong();
      else b.addLine(partial.endsWith('\r') ? partial.slice(0, -1) : partial);
      partial = '';
      skipping = false;
      start = nl + 1;
    }
  }
  partial += decoder.end();
  if (skipping) b.skipTooLong();
  else if (partial.length > 0) b.addLine(partial); // a last line still being written may be cut: then it is malformed
}

/** Build the report over an audit file. */
export async function reportFromFile(file: string, opts: ReportOptions): Promise<AuditReport> {
  const b = new ReportBuilder(opts);
  await feedLines(createReadStream(file, { highWaterMark: 64 * 1024 }), b);
  return b.finish();
}

// ---------------------------------------------------------------------------------------------
// Text

/** The report for a terminal: the possible compromises first, then the tables. */
export function formatReportText(r: AuditReport, source?: string): string {
  const out: string[] = [];
  const t = (iso: string) => iso.replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
  const n = (x: number) => x.toLocaleString('en-US');
  const s = safe;
  out.push(`portcullis audit report: ${t(r.window.since)} to ${t(r.window.until)}${source ? ` (${s(source)})` : ''}`);
  const skipped = r.input.malformed + r.input.tooLong;
  out.push(`${n(r.input.inWindow)} events in the window${skipped ? `; ${n(skipped)} unreadable lines skipped` : ''}${r.approximate ? '; counts are approximate (more distinct names than the report tracks)' : ''}`);
  out.push('');

  if (r.possibleCompromise.length > 0) {
    const k = r.possibleCompromise.length;
    out.push(`!!! POSSIBLE COMPROMISE: ${k} account${k === 1 ? '' : 's'} signed in after failed attempts in this window`);
    for (const c of r.possibleCompromise) {
      const from = c.fromFailingSource ? ', from a network that also failed' : '';
      const mfa = c.mfaSucceededAfter + c.mfaFailedAfter > 0 ? `; second factor afterwards: ${c.mfaSucceededAfter} passed, ${c.mfaFailedAfter} failed` : '';
      out.push(
        `!!!   ${s(c.user)}: signed in ${t(c.succeededAt)} from ${s(c.succeededFrom)}${from}, after ${n(c.failuresBefore)} failure${c.failuresBefore === 1 ? '' : 's'} ` +
          `from ${c.failureSources} network${c.failureSources === 1 ? '' : 's'} (${t(c.firstFailure)} to ${t(c.lastFailure)})${mfa}`,
      );
    }
    out.push('!!! If a sign-in was not the user: portcullis sessions revoke --user NAME, then reset the password.');
  } else out.push('No account signed in after failed attempts in this window.');
  out.push('');

  const T = r.totals;
  out.push(`Sign-ins: ${n(T.login_succeeded)} succeeded, ${n(T.login_failed)} failed; second factor: ${n(T.mfa_succeeded)} passed, ${n(T.mfa_failed)} failed, ${n(T.totp_replayed)} replayed codes`);
  out.push(`Refused by network: ${n(T.network_denied)}; by rule: ${n(T.access_denied)}; lockouts: ${n(r.lockouts.count)} (${plural(r.lockouts.accounts, 'account')}); IP blocks: ${n(r.ipBlocks.count)}`);
  out.push('');

  out.push(`Accounts attacked: ${n(r.attackedAccounts.count)}${r.attackedAccounts.count > r.attackedAccounts.top.length ? ` (top ${r.attackedAccounts.top.length})` : ''}`);
  if (r.attackedAccounts.top.length > 0) {
    out.push(
      ...table(
        ['user', 'failures', 'throttled', 'networks', 'last failure'],
        r.attackedAccounts.top.map((a) => [`${s(a.user)}${a.exists ? '' : ' (no such user)'}`, n(a.failures), n(a.throttled), String(a.sources), t(a.lastFailure)]),
      ),
    );
  }
  out.push('');
  out.push(`Sources of failures: ${plural(r.attackSources.count, 'network')} (IPv4 /24, IPv6 /${r.grouping.ipv6Prefix})${r.attackSources.count > r.attackSources.top.length ? `, top ${r.attackSources.top.length}` : ''}`);
  if (r.attackSources.top.length > 0) {
    out.push(
      ...table(
        ['network', 'failures', 'user names', 'IP blocks', 'last failure'],
        r.attackSources.top.map((x) => [x.network, n(x.failures), `${x.users}${x.usersCapped ? '+' : ''}`, n(x.ipBlocks), t(x.lastFailure)]),
      ),
    );
  }
  out.push('');
  out.push(`Sign-ins from new networks: ${n(r.newNetworkSignIns.count)}`);
  for (const e of r.newNetworkSignIns.recent) out.push(`  ${t(e.ts)}  ${s(e.user ?? '-')} from ${s(e.ip)}${e.reason ? ` (${s(e.reason)})` : ''}${e.app ? ` to ${s(e.app)}` : ''}`);
  out.push('');
  out.push(`Passwords below the policy in use: ${plural(r.weakPasswords.count, 'account')}`);
  for (const w of r.weakPasswords.accounts) out.push(`  ${s(w.user)}: ${n(w.count)} sign-in${w.count === 1 ? '' : 's'}, last ${t(w.last)}${w.reasons.length ? `; ${w.reasons.map(s).join(', ')}` : ''}`);
  out.push('');
  out.push(`Lockouts: ${n(r.lockouts.count)}`);
  for (const e of r.lockouts.recent) out.push(`  ${t(e.ts)}  ${s(e.user ?? '-')} (failures from ${s(e.ip)}${e.reason ? `, ${s(e.reason)}` : ''})`);
  out.push(`IP blocks: ${n(r.ipBlocks.count)}`);
  for (const e of r.ipBlocks.recent) out.push(`  ${t(e.ts)}  ${s(e.ip)}${e.user ? ` (last tried "${s(e.user)}")` : ''}`);
  out.push('');
  out.push(`Passwords marked as sprayed: ${n(r.sprayedPasswords.marked)}; sign-ins refused for using one: ${n(r.sprayedPasswords.refused)}`);
  for (const e of r.sprayedPasswords.recent) out.push(`  ${t(e.ts)}  last from ${s(e.ip)}${e.reason ? `: ${s(e.reason)}` : ''}`);
  out.push(`Attack posture episodes: ${n(r.attackPosture.episodes)} started, ${n(r.attackPosture.ended)} ended`);
  for (const e of r.attackPosture.recent) out.push(`  ${t(e.ts)}  ${e.reason ? s(e.reason) : 'started'}`);
  return `${out.join('\n')}\n`;
}

function plural(k: number, word: string): string {
  return `${k.toLocaleString('en-US')} ${word}${k === 1 ? '' : 's'}`;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => `  ${r.map((x, c) => (c === r.length - 1 ? x : x.padEnd(widths[c]!))).join('  ')}`;
  return [line(header), ...rows.map(line)];
}

/** Text from the audit file shown on a terminal: control characters escaped. */
function safe(x: string): string {
  // eslint-disable-next-line no-control-regex
  return x.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
