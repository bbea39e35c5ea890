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
}

export type AuditListener = (e: AuditEvent) => void;

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
 */
export class AuditLog {
  private stream: WriteStream | null = null;
  private readonly listeners: AuditListener[] = [];
  private readonly ring: AuditEvent[] = [];
  private ringStart = 0;

  constructor(
    private readonly opts: { file: string | null; clock: Clock; logger?: Logger; ringSize?: number },
  ) {
    if (opts.file) {
      mkdirSync(dirname(opts.file), { recursive: true });
      this.stream = createWriteStream(opts.file, { flags: 'a', mode: 0o600 });
      this.stream.on('error', (err) => opts.logger?.error({ err: err.message }, 'audit log write failed'));
    }
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
    };
    this.stream?.write(`${JSON.stringify(e)}\n`);
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

  async close(): Promise<void> {
    const s = this.stream;
    this.stream = null;
    if (s) await new Promise<void>((resolve) => s.end(resolve));
  }
}
