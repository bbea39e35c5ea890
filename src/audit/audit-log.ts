import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { Clock } from '../clock.js';
import type { AuditEvent, AuditEventName, Outcome } from './events.js';
import type { Logger } from './logger.js';

export interface AuditInput {
  event: AuditEventName;
  ip: string;
  user?: string | null | undefined;
  app?: string | null | undefined;
  outcome: Outcome;
  reason?: string | null | undefined;
  /** The request that raised the event (already well-formed: see http/request-id.ts). */
  request_id?: string | null | undefined;
}

export type AuditListener = (e: AuditEvent) => void;

/** A line of the audit file: one event, or with `count` that many identical refusals (see `AuditLog`). */
export type AuditLine = AuditEvent & { count?: number };

/**
 * Refusals decided without looking at a credential or an account's state: a throttled or busy
 * sign-in, a network or rule refusal, an IP block. An attacker can make any number of them for
 * almost nothing, so the same one from one source is written once a minute with a count.
 * Everything else (failed passwords and codes, lockouts, replays, successes) is written as it comes.
 */
export const AGGREGATED_EVENTS: ReadonlySet<string> = new Set(['login_failed', 'mfa_failed', 'network_denied', 'access_denied', 'ip_blocked', 'csrf_refused']);

export function aggregatable(e: AuditEvent): boolean {
  return e.outcome === 'denied' && AGGREGATED_EVENTS.has(e.event);
}

export const AGGREGATE_WINDOW_MS = 60_000;
/** Distinct (source, refusal) pairs held per minute; past it the oldest is written out early. */
export const DEFAULT_MAX_AGGREGATES = 10_000;

interface Pending {
  e: AuditEvent;
  /** Occurrences after the first (which was written at once). */
  n: number;
  lastTs: string;
  /** The user name shared by all the occurrences; null once they differ. */
  user: string | null | undefined;
}

const MAX_FIELD = 256;

/** Strip control characters and bound length, so a crafted user name cannot forge log lines. */
function clean(s: string): string {
  // eslint-disable-next-line no-control-regex
  const t = s.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, '?');
  return t.length > MAX_FIELD ? `${t.slice(0, MAX_FIELD)}…` : t;
}

/**
 * The audit trail: one JSON object a line, appended to `audit.file`, and fanned out to listeners
 * (notifications, metrics, the console). Keeps a bounded ring of recent events in memory.
 *
 * Volume under attack: identical refusals (`aggregatable`: same event, source address, outcome,
 * reason and app) within one clock minute are one line in the file. The first is written at
 * once, as any event; the others are counted and written as one line with `count` (how many
 * more) and the time of the last, when the minute is over (checked on the next event and every
 * few seconds), when the table of pending counts is full (the oldest goes out early: memory stays
 * bounded whoever rotates addresses), and on close. The user name is kept when every occurrence
 * had the same one. Nothing is dropped: the counts in the file add up to every refusal.
 * Listeners and the in-memory ring still receive every event one by one.
 */
export class AuditLog {
  private stream: WriteStream | null = null;
  /** The file written now (null: none). */
  private file: string | null = null;
  private readonly listeners: AuditListener[] = [];
  private readonly ring: AuditEvent[] = [];
  private ringStart = 0;
  private pending = new Map<string, Pending>();
  private pendingMinute = -1;
  private readonly maxAggregates: number;
  private flushTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly opts: {
      file: string | null;
      clock: Clock;
      logger?: Logger;
      ringSize?: number;
      /** Pending aggregates held at most (default 10,000). */
      maxAggregates?: number;
      /** How often a finished minute's aggregates are looked for (default 5 s; the clock decides). */
      flushEveryMs?: number;
    },
  ) {
    this.maxAggregates = Math.max(1, opts.maxAggregates ?? DEFAULT_MAX_AGGREGATES);
    if (opts.file) this.open(opts.file);
  }

  private open(file: string): void {
    mkdirSync(dirname(file), { recursive: true });
    const stream = createWriteStream(file, { flags: 'a', mode: 0o600 });
    stream.on('error', (err) => this.opts.logger?.error({ err: err.message }, 'audit log write failed'));
    this.stream = stream;
    this.file = file;
    if (!this.flushTimer) {
      this.flushTimer = setInterval(() => this.flushDue(), this.opts.flushEveryMs ?? 5_000);
      this.flushTimer.unref();
    }
  }

  /**
   * Close the file and open it again by name (after logrotate moved it away), or switch to
   * another file, or stop or start writing one (`audit.file` changed by a reload). Pending
   * aggregates are written to the old file first; nothing recorded meanwhile is lost.
   */
  async reopen(file: string | null = this.file): Promise<void> {
    this.flushAll();
    const old = this.stream;
    this.stream = null;
    this.file = null;
    if (file) this.open(file);
    else if (this.flushTimer) {
      clearInterval(this.flushTimer);
      this.flushTimer = null;
    }
    if (old) await new Promise<void>((resolve) => old.end(resolve));
  }

  record(input: AuditInput): AuditEvent {
    const e: AuditEvent = {
      ts: new Date(this.opts.clock.now()).toISOString(),
      event: input.event,
      ip: clean(input.ip),
      ...(input.user ? { user: clean(input.user) } : {}),
      ...(input.app ? { app: clean(input.app) } : {}),
      outcome: input.outcome,
      ...(input.reason ? { reason: clean(input.reason) } : {}),
      ...(input.request_id ? { request_id: clean(input.request_id) } : {}),
    };
    if (this.stream) this.write(e);
    this.remember(e);
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.opts.logger?.error({ err: (err as Error).message }, 'audit listener failed');
      }
    }
    return e;
  }

  on(listener: AuditListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Most recent events, newest last. */
  recent(n = 100): AuditEvent[] {
    const size = this.opts.ringSize ?? 1000;
    const all = this.ring.length < size ? this.ring.slice() : [...this.ring.slice(this.ringStart), ...this.ring.slice(0, this.ringStart)];
    return all.slice(-n);
  }

  private remember(e: AuditEvent): void {
    const size = this.opts.ringSize ?? 1000;
    if (this.ring.length < size) this.ring.push(e);
    else {
      this.ring[this.ringStart] = e;
      this.ringStart = (this.ringStart + 1) % size;
    }
  }

  /** Refusals held for aggregation now (at most `maxAggregates`). */
  get pendingAggregates(): number {
    return this.pending.size;
  }

  /** Write out the aggregates of every minute that is over by the clock. */
  flushDue(): void {
    if (this.pending.size > 0 && Math.floor(this.opts.clock.now() / AGGREGATE_WINDOW_MS) !== this.pendingMinute) this.flushAll();
  }

  /** Write out every pending aggregate now. */
  flushAll(): void {
    const all = this.pending;
    this.pending = new Map();
    for (const p of all.values()) this.writeAggregate(p);
  }

  private write(e: AuditEvent): void {
    this.flushDue();
    if (!aggregatable(e)) {
      this.line(e);
      return;
    }
    const minute = Math.floor(this.opts.clock.now() / AGGREGATE_WINDOW_MS);
    if (minute !== this.pendingMinute) {
      this.flushAll();
      this.pendingMinute = minute;
    }
    const key = JSON.stringify([e.event, e.ip, e.outcome, e.reason ?? null, e.app ?? null]);
    const p = this.pending.get(key);
    if (p) {
      p.n++;
      p.lastTs = e.ts;
      if (p.user !== e.user) p.user = null;
      return;
    }
    // the first of its kind this minute: written at once
    this.line(e);
    if (this.pending.size >= this.maxAggregates) {
      const oldest = this.pending.keys().next().value as string;
      const o = this.pending.get(oldest)!;
      this.pending.delete(oldest);
      this.writeAggregate(o);
    }
    this.pending.set(key, { e, n: 0, lastTs: e.ts, user: e.user });
  }

  /** The aggregate's line: the fields it shares, the time of the last occurrence, and `count`. */
  private writeAggregate(p: Pending): void {
    if (p.n === 0) return;
    const e = p.e;
    this.line({
      ts: p.lastTs,
      event: e.event,
      ip: e.ip,
      ...(p.user ? { user: p.user } : {}),
      ...(e.app ? { app: e.app } : {}),
      outcome: e.outcome,
      ...(e.reason ? { reason: e.reason } : {}),
      count: p.n,
    });
  }

  private line(l: AuditLine): void {
    this.stream?.write(`${JSON.stringify(l)}\n`);
  }

  async close(): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer);
    this.flushTimer = null;
    this.flushAll();
    const s = this.stream;
    this.stream = null;
    if (s) await new Promise<void>((resolve) => s.end(resolve));
  }
}
