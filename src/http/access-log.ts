/**
 * The access log (`access_log: { file }`, off by default): one JSON line per request, proxied,
 * forward-auth subrequest or portal. Lines are joined in memory and written every 50 ms or 64 KiB
 * (one write for many requests: each is a trip to libuv's thread pool); while the disk does not keep up, at most
 * MAX_BACKLOG bytes wait and further lines are dropped and counted (memory stays bounded). The
 * file is opened by name again on SIGHUP and reload (logrotate), as the audit log is.
 *
 * Fields: time, request_id, client_ip, host, method, path (never the query string: it may carry
 * secrets), mode (proxy | auth-request | forward-auth | portal), app, decision (see outcomeOf),
 * policy, rule (the 0-based index of the app's rule that decided), status, duration_ms,
 * upstream_ms (proxied requests only).
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { Clock } from '../clock.js';
import type { Logger } from '../audit/logger.js';
import type { GateResult } from '../access/types.js';

/** Bytes waiting for the disk beyond which lines are dropped (and counted). */
const MAX_BACKLOG = 8 * 2 ** 20;
/** Lines are written at most FLUSH_MS after they are made, or as soon as FLUSH_BYTES wait. */
const FLUSH_MS = 50;
const FLUSH_BYTES = 64 * 1024;
/** A path longer than this is cut (with `…`). */
const MAX_PATH = 2048;

export type AccessMode = 'proxy' | 'auth-request' | 'forward-auth' | 'portal';

export interface AccessEntry {
  requestId: string;
  ip: string;
  host: string;
  method: string;
  /** Raw request-target: the query string is cut off here, never written. */
  target: string;
  mode: AccessMode;
  app: string | null;
  decision: string | null;
  policy: string | null;
  rule: number | null;
  status: number;
  /** performance.now() when the request arrived. */
  started: number;
  upstreamMs: number | null;
}

/**
 * What the gate decided, as bounded labels (metrics) and log fields: app and policy names come
 * from the config, the outcome from a fixed set: allow, deny, login (must sign in), step (second
 * factor, enrolment or password change pending), lockdown, refused (unknown host, unsafe path,
 * refused method, throttled app password and the like).
 */
export function outcomeOf(r: GateResult): { app: string | null; policy: string | null; outcome: string; rule: number | null } {
  const app = r.app ? r.app.name : null;
  const d = r.decision;
  const policy = d ? d.policy : null;
  const rule = d?.rule ? d.rule.index : null;
  switch (r.kind) {
    case 'proxy':
      return { app, policy, outcome: 'allow', rule };
    case 'signin':
      return { app, policy, outcome: 'login', rule };
    case 'step':
      return { app, policy, outcome: 'step', rule };
    case 'error':
      if (r.code === 'PC_ACCESS_DENIED' || r.code === 'PC_NETWORK_DENIED') return { app, policy, outcome: 'deny', rule };
      if (r.code === 'PC_LOCKDOWN') return { app, policy, outcome: 'lockdown', rule };
      return { app, policy, outcome: 'refused', rule };
  }
}

/** A decision's outcome, counted (metrics: `-` for no app or policy) when `count` is given. */
export function countOutcome(r: GateResult, count: ((app: string, policy: string, outcome: string) => void) | undefined): ReturnType<typeof outcomeOf> {
  const o = outcomeOf(r);
  count?.(o.app ?? '-', o.policy ?? '-', o.outcome);
  return o;
}

export function pathOnly(target: string): string {
  const q = target.indexOf('?');
  const p = q < 0 ? target : target.slice(0, q);
  return p.length > MAX_PATH ? `${p.slice(0, MAX_PATH)}…` : p;
}

export class AccessLog {
  private stream: WriteStream | null = null;
  private file: string | null = null;
  private buf = '';
  private scheduled = false;
  private timer: NodeJS.Timeout | null = null;
  private dropped = 0;

  constructor(
    file: string | null,
    private readonly opts: { clock: Clock; logger?: Logger },
  ) {
    if (file) this.open(file);
  }

  /** Whether lines are written (callers skip all work when not). */
  get on(): boolean {
    return this.stream !== null;
  }

  private open(file: string): void {
    mkdirSync(dirname(file), { recursive: true });
    const stream = createWriteStream(file, { flags: 'a', mode: 0o600 });
    stream.on('error', (err) => this.opts.logger?.error({ err: err.message, file }, 'access log write failed'));
    this.stream = stream;
    this.file = file;
  }

  write(e: AccessEntry): void {
    if (!this.stream) return;
    const line = JSON.stringify({
      time: new Date(this.opts.clock.now()).toISOString(),
      request_id: e.requestId,
      client_ip: e.ip,
      host: e.host,
      method: e.method,
      path: pathOnly(e.target),
      mode: e.mode,
      app: e.app,
      decision: e.decision,
      policy: e.policy,
      rule: e.rule,
      status: e.status,
      duration_ms: round(performance.now() - e.started),
      upstream_ms: e.upstreamMs === null ? null : round(e.upstreamMs),
    });
    if (this.stream.writableLength + this.buf.length > MAX_BACKLOG) {
      this.dropped++;
      return;
    }
    this.buf += `${line}\n`;
    if (this.buf.length >= FLUSH_BYTES) this.flush();
    else if (!this.scheduled) {
      // each write is a trip to libuv's thread pool: batch a few milliseconds' worth of lines
      this.scheduled = true;
      this.timer = setTimeout(() => this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  private flush(): void {
    this.scheduled = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.dropped > 0) {
      this.opts.logger?.warn({ dropped: this.dropped, file: this.file }, 'access log lines dropped: the disk did not keep up');
      this.dropped = 0;
    }
    if (!this.stream || this.buf === '') return;
    const b = this.buf;
    this.buf = '';
    this.stream.write(b);
  }

  /** Open the file by name again (logrotate), switch to another, or stop or start writing. */
  async reopen(file: string | null = this.file): Promise<void> {
    this.flush();
    const old = this.stream;
    this.stream = null;
    this.file = null;
    if (file) this.open(file);
    if (old) await new Promise<void>((resolve) => old.end(resolve));
  }

  async close(): Promise<void> {
    await this.reopen(null);
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
