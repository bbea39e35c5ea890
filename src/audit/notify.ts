/**
 * Notifications (`notify:`): on `new_network_login`, `locked_out` and `weak_password` (those listed
 * in `notify.events`), a JSON POST to `notify.webhook` and/or an e-mail through `notify.smtp`.
 *
 * A notification never delays or fails a sign-in: `handle` only queues (it is called from an audit
 * listener, synchronously, in the middle of a login) and delivery runs later, off that tick.
 * Each channel of each event is one job:
 * - tried at once, then retried after 1 s, 5 s and 25 s (4 tries in all) on a network error, a
 *   timeout, a 5xx, 408 or 429; a 3xx or another 4xx is the receiver saying no, so it is final;
 * - at most 4 deliveries run at once; the webhook gets 5 s per try, SMTP 10 s;
 * - the queue holds at most 1000 jobs; past that the oldest is dropped and counted (an attack that
 *   locks out thousands of accounts must not grow memory without bound);
 * - the configuration is read at each try, so a fixed webhook URL after a reload is used by the
 *   retries, and a removed one stops them.
 *
 * The payload carries the audit event's own fields and nothing else (the audit event never holds a
 * password, code, secret, session id or cookie), plus a one-line summary in `text` so that chat
 * webhooks (Slack, Mattermost, Rocket.Chat) display it as is:
 *
 *   POST <webhook>  content-type: application/json  idempotency-key: <stable per event>
 *   {"text": "...", "event": {"ts","event","ip","user","app","outcome","reason"}, "gateway": "<host>"}
 *
 * E-mail over `smtp://` to anything but a loopback address requires STARTTLS (user names and
 * addresses are not sent in clear over a network); `smtps://` is TLS from the first byte.
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { createTransport } from 'nodemailer';
import type { Clock } from '../clock.js';
import type { NotifyConfig } from '../config/types.js';
import type { Runtime } from '../runtime.js';
import type { AuditEvent, AuditEventName } from './events.js';
import type { Logger } from './logger.js';

import { NOTIFY_EVENTS } from './events.js';

export { NOTIFY_EVENTS };

/** Events the account's owner is told about too (by e-mail, at the user's address), not only the admin. */
const OWNER_EVENTS: ReadonlySet<AuditEventName> = new Set<AuditEventName>(['password_refused_correct', 'totp_enrolled', 'totp_removed', 'new_network_login']);

export type SmtpSettings = NonNullable<NotifyConfig['smtp']>;

/** What the notifier needs from a mail transport (nodemailer's Transporter fits). */
export interface MailSender {
  sendMail(msg: { from: string; to: string[]; subject: string; text: string; headers: Record<string, string>; signal: AbortSignal }): Promise<unknown>;
  close(): void;
}

export interface NotifierDeps {
  /** The notify section in force (read at every try, so reloads apply). */
  config: () => NotifyConfig;
  logger: Logger;
  clock: Clock;
  /** Default: the global fetch. */
  fetch?: typeof fetch;
  /** Makes the mail transport for an SMTP setting. Default: nodemailer over `smtp.url`. */
  smtpTransport?: (smtp: SmtpSettings) => MailSender;
  /** Waits between tries; the default is a timer. Tests pass one that records the delay. */
  wait?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Delays before the retries (default 1 s, 5 s, 25 s). */
  retryDelaysMs?: readonly number[];
  /** Jobs kept waiting at most (default 1000). */
  maxQueue?: number;
  /** Deliveries at once (default 4). */
  concurrency?: number;
  /** Per-try limit for the webhook (default 5 s). */
  webhookTimeoutMs?: number;
  /** Per-try limit for an e-mail (default 10 s). */
  smtpTimeoutMs?: number;
  /** Names this gateway in notifications (default: the host name). */
  instance?: string;
  /** The e-mail address of a user, for events their owner is told about. */
  userEmail?: (user: string) => string | undefined;
}

export interface NotifierStats {
  /** Jobs waiting (ready or between tries) and being delivered. */
  queued: number;
  inFlight: number;
  delivered: number;
  /** Gave up: final refusal, or every try failed. */
  failed: number;
  /** Dropped because the queue was full, or abandoned at close. */
  dropped: number;
  /** Time (clock) and message of the last failure, for the admin. */
  lastFailure: { at: number; channel: Channel; message: string } | null;
}

type Channel = 'webhook' | 'email';

interface Job {
  channel: Channel;
  event: AuditEvent;
  /** Stable across retries: receivers may de-duplicate on it. */
  key: string;
  tries: number;
  ready: boolean;
  cancelWait?: (() => void) | undefined;
}

/** A refusal by the receiver: retrying would not help. */
class FinalError extends Error {}

const DEFAULT_DELAYS = [1_000, 5_000, 25_000];

export class Notifier {
  private readonly pending: Job[] = [];
  private inFlight = 0;
  private delivered = 0;
  private failed = 0;
  private dropped = 0;
  private lastFailure: NotifierStats['lastFailure'] = null;
  private closed = false;
  private scheduled = false;
  private readonly stop = new AbortController();
  private readonly idle = new Set<() => void>();
  private mail: { url: string; sender: MailSender } | null = null;
  private readonly onClose: Array<() => void> = [];
  private readonly fetch: typeof fetch;
  private readonly delays: readonly number[];
  private readonly maxQueue: number;
  private readonly concurrency: number;
  private readonly instance: string;

  constructor(private readonly deps: NotifierDeps) {
    this.fetch = deps.fetch ?? globalThis.fetch;
    this.delays = deps.retryDelaysMs ?? DEFAULT_DELAYS;
    this.maxQueue = Math.max(1, deps.maxQueue ?? 1000);
    this.concurrency = Math.max(1, deps.concurrency ?? 4);
    this.instance = deps.instance ?? hostname();
  }

  /**
   * Queue notifications for `e` if it is one the config asks for. Returns at once and never
   * throws: it runs inside the audit trail, in the middle of a sign-in.
   */
  handle(e: AuditEvent): void {
    try {
      if (this.closed || !(NOTIFY_EVENTS as readonly string[]).includes(e.event)) return;
      const cfg = this.deps.config();
      if (!cfg.events.has(e.event)) return;
      const channels: Channel[] = [];
      if (cfg.webhook) channels.push('webhook');
      if (cfg.smtp && cfg.smtp.to.length > 0) channels.push('email');
      if (channels.length === 0) return;
      const key = eventKey(e);
      for (const channel of channels) this.enqueue({ channel, event: e, key, tries: 0, ready: true });
      this.schedule();
    } catch (err) {
      this.deps.logger.error({ err: (err as Error).message }, 'notification not queued');
    }
  }

  stats(): NotifierStats {
    return {
      queued: this.pending.length,
      inFlight: this.inFlight,
      delivered: this.delivered,
      failed: this.failed,
      dropped: this.dropped,
      lastFailure: this.lastFailure,
    };
  }

  /** Resolves once nothing is queued or being delivered (tests, and close). */
  whenIdle(): Promise<void> {
    if (this.pending.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.add(resolve));
  }

  /** Run `f` at close (attachNotifier unsubscribes from the audit trail this way). */
  onClosed(f: () => void): void {
    this.onClose.push(f);
  }

  /**
   * Stop taking events. Jobs ready now get one last try, all of them within one webhook time
   * limit (5 s); jobs waiting for a retry, and any left when that time is up, are abandoned and
   * counted as dropped, with a log line.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const f of this.onClose.splice(0)) f();
    const abandoned = this.pending.filter((j) => !j.ready);
    for (const j of abandoned) {
      j.cancelWait?.();
      this.pending.splice(this.pending.indexOf(j), 1);
    }
    this.dropped += abandoned.length;
    if (abandoned.length > 0) this.deps.logger.warn({ abandoned: abandoned.length }, 'notifications waiting for a retry were abandoned at shutdown');
    this.pump();
    this.settle();
    // the last tries get one per-try limit in all; then whatever is left is cut off
    const grace = setTimeout(() => {
      const left = this.pending.splice(0);
      this.dropped += left.length;
      if (left.length > 0) this.deps.logger.warn({ abandoned: left.length }, 'notifications not sent before shutdown');
      this.stop.abort();
      this.settle();
    }, this.deps.webhookTimeoutMs ?? 5_000);
    grace.unref();
    await this.whenIdle();
    clearTimeout(grace);
    this.stop.abort();
    this.mail?.sender.close();
    this.mail = null;
  }

  private enqueue(job: Job): void {
    this.pending.push(job);
    while (this.pending.length > this.maxQueue) {
      const old = this.pending.shift()!;
      old.cancelWait?.();
      this.dropped++;
      // one line at 1, 10, 100, 1000... drops: visible without flooding the log
      if (Number.isInteger(Math.log10(this.dropped))) {
        this.deps.logger.warn({ dropped: this.dropped, max: this.maxQueue }, 'notification queue full; dropping the oldest');
      }
    }
  }

  /** Deliveries start on a later turn of the event loop, never inside the caller's. */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.concurrency) {
      const i = this.pending.findIndex((j) => j.ready);
      if (i < 0) break;
      const job = this.pending.splice(i, 1)[0]!;
      this.inFlight++;
      void this.run(job).finally(() => {
        this.inFlight--;
        this.pump();
        this.settle();
      });
    }
  }

  private settle(): void {
    if (this.pending.length > 0 || this.inFlight > 0) return;
    for (const f of [...this.idle]) f();
    this.idle.clear();
  }

  private async run(job: Job): Promise<void> {
    job.tries++;
    try {
      if (job.channel === 'webhook') await this.postWebhook(job);
      else await this.sendMail(job);
      this.delivered++;
      return;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const final = err instanceof FinalError;
      const more = !final && !this.closed && job.tries <= this.delays.length;
      const log = { channel: job.channel, event: job.event.event, tries: job.tries, err: message };
      if (!more) {
        this.failed++;
        this.lastFailure = { at: this.deps.clock.now(), channel: job.channel, message };
        this.deps.logger.error(log, final ? 'notification refused by the receiver' : 'notification not delivered; giving up');
        return;
      }
      this.deps.logger.warn({ ...log, retryInMs: this.delays[job.tries - 1] }, 'notification failed; will retry');
      this.retryLater(job, this.delays[job.tries - 1]!);
    }
  }

  private retryLater(job: Job, ms: number): void {
    const ac = new AbortController();
    job.ready = false;
    job.cancelWait = () => ac.abort();
    this.enqueue(job);
    const wait = this.deps.wait ?? timerWait;
    wait(ms, ac.signal).then(
      () => {
        job.cancelWait = undefined;
        if (ac.signal.aborted || !this.pending.includes(job)) return;
        job.ready = true;
        this.pump();
      },
      () => undefined, // cancelled: dropped or closing
    );
  }

  private async postWebhook(job: Job): Promise<void> {
    const url = this.deps.config().webhook;
    if (!url) throw new FinalError('the webhook is no longer configured');
    const body = JSON.stringify({ text: summary(job.event, this.instance), event: eventFields(job.event), gateway: this.instance });
    const { signal, done } = deadline(this.deps.webhookTimeoutMs ?? 5_000, this.stop.signal);
    try {
      let res: Response;
      try {
        res = await this.fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'portcullis-notify/1', 'idempotency-key': job.key },
          body,
          redirect: 'manual',
          signal,
        });
      } catch (e) {
        throw new Error(signal.aborted ? 'the webhook did not answer in time' : `the webhook is not reachable: ${describeFetchError(e)}`);
      }
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return;
      if (res.status >= 500 || res.status === 408 || res.status === 429) throw new Error(`the webhook answered ${res.status}`);
      if (res.status >= 300 && res.status < 400) throw new FinalError(`the webhook answered ${res.status} (a redirect); configure the final URL`);
      throw new FinalError(`the webhook answered ${res.status}`);
    } finally {
      done();
    }
  }

  private async sendMail(job: Job): Promise<void> {
    const smtp = this.deps.config().smtp;
    if (!smtp || smtp.to.length === 0) throw new FinalError('e-mail notifications are no longer configured');
    if (!this.mail || this.mail.url !== smtp.url) {
      this.mail?.sender.close();
      this.mail = { url: smtp.url, sender: (this.deps.smtpTransport ?? nodemailerTransport)(smtp) };
    }
    const { signal, done } = deadline(this.deps.smtpTimeoutMs ?? 10_000, this.stop.signal);
    try {
      await this.mail.sender.sendMail({
        from: smtp.from,
        to: recipients(smtp.to, job.event, this.deps.userEmail),
        subject: `[portcullis] ${summary(job.event, this.instance)}`,
        text: mailBody(job.event, this.instance),
        headers: { 'X-Portcullis-Event': job.event.event, 'X-Portcullis-Key': job.key },
        signal,
      });
    } catch (e) {
      const code = (e as { responseCode?: unknown }).responseCode;
      // a permanent SMTP refusal (5xx: unknown recipient, relaying denied) will not change on retry
      if (typeof code === 'number' && code >= 500 && code < 600) throw new FinalError(`the mail server refused the message (${code})`);
      throw new Error(signal.aborted ? 'the mail server did not answer in time' : `sending the e-mail failed: ${(e as Error).message}`);
    } finally {
      done();
    }
  }
}

/**
 * Wire a notifier to the audit trail: every recorded event is offered to it. The caller closes it
 * at shutdown (`await notifier.close()`), which also unsubscribes it.
 */
export function attachNotifier(rt: Pick<Runtime, 'audit' | 'clock' | 'config' | 'logger'>, opts: Partial<Omit<NotifierDeps, 'config' | 'logger' | 'clock'>> = {}): Notifier {
  const notifier = new Notifier({
    userEmail: (u) => {
      const r = rt as Partial<Pick<Runtime, 'users' | 'directory'>>;
      return r.users?.get(u)?.email ?? r.directory?.cached(u)?.email ?? undefined;
    },
    ...opts,
    config: () => rt.config.notify,
    logger: rt.logger,
    clock: rt.clock,
  });
  const off = rt.audit.on((e) => notifier.handle(e));
  notifier.onClosed(off);
  return notifier;
}

// ---------------------------------------------------------------------------------------------

function recipients(admins: readonly string[], e: AuditEvent, userEmail: NotifierDeps['userEmail']): string[] {
  const to = [...admins];
  if (e.user && OWNER_EVENTS.has(e.event)) {
    const own = userEmail?.(e.user);
    if (own && /^[^\s@,;<>"]+@[^\s@,;<>"]+$/.test(own) && !to.includes(own)) to.push(own);
  }
  return to;
}

function nodemailerTransport(smtp: SmtpSettings): MailSender {
  const u = new URL(smtp.url);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const loopback = host === 'localhost' || /^127\./.test(host) || host === '::1';
  const t = createTransport({
    url: smtp.url,
    requireTLS: u.protocol === 'smtp:' && !loopback,
    connectionTimeout: 5_000,
    greetingTimeout: 5_000,
    socketTimeout: 10_000,
  });
  return {
    sendMail: (m) => t.sendMail({ ...m, disableFileAccess: true, disableUrlAccess: true }),
    close: () => t.close(),
  };
}

function timerWait(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    t.unref(); // a pending retry does not keep the process alive
    const onAbort = () => {
      clearTimeout(t);
      reject(new Error('cancelled'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** A signal that aborts after `ms` or with `parent`; `done` releases the timer. */
function deadline(ms: number, parent: AbortSignal): { signal: AbortSignal; done: () => void } {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), ms);
  t.unref();
  const onParent = () => ac.abort();
  parent.addEventListener('abort', onParent, { once: true });
  return {
    signal: ac.signal,
    done: () => {
      clearTimeout(t);
      parent.removeEventListener('abort', onParent);
    },
  };
}

function describeFetchError(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (e as Error).message;
}

/** The audit event's fields, picked one by one: nothing else can ride along. */
function eventFields(e: AuditEvent): AuditEvent {
  return {
    ts: e.ts,
    event: e.event,
    ip: e.ip,
    ...(e.user !== undefined ? { user: e.user } : {}),
    ...(e.app !== undefined ? { app: e.app } : {}),
    outcome: e.outcome,
    ...(e.reason !== undefined ? { reason: e.reason } : {}),
  };
}

function eventKey(e: AuditEvent): string {
  return createHash('sha256').update(JSON.stringify(eventFields(e))).digest('base64url').slice(0, 32);
}

/** One line: the subject of the e-mail and the `text` of the webhook. */
export function summary(e: AuditEvent, instance: string): string {
  const who = e.user ? `"${e.user}"` : 'an unknown user';
  const on = e.app ? ` on ${e.app}` : '';
  switch (e.event) {
    case 'new_network_login':
      return `${who} signed in from a new network: ${e.ip}${e.reason ? ` (${e.reason})` : ''}${on} [${instance}]`;
    case 'locked_out':
      return `${who} is locked out after repeated failed sign-ins from ${e.ip}${on} [${instance}]`;
    case 'weak_password':
      return `${who} signed in with a password below the policy${e.reason ? ` (${e.reason})` : ''} from ${e.ip}${on} [${instance}]`;
    case 'totp_enrolled':
      return `${who} set up an authenticator from ${e.ip}${on} [${instance}]`;
    case 'totp_removed':
      return `${who} removed their authenticator from ${e.ip}${on} [${instance}]`;
    case 'password_refused_correct':
      if (e.reason?.startsWith('attack posture')) return `the correct password of ${who} was refused from ${e.ip}, a network not used before, while the gateway is under attack${on} [${instance}]`;
      return `the correct password of ${who} was used from ${e.ip} and refused${e.reason ? ` (${e.reason})` : ''}${on}: change it [${instance}]`;
    case 'password_sprayed':
      return `a password is being sprayed: ${e.reason ?? 'tried on many accounts'} (last from ${e.ip})${on} [${instance}]`;
    case 'attack_started':
      return `attack posture ON: ${e.reason ?? 'failed sign-ins above the threshold'} [${instance}]`;
    case 'attack_ended':
      return `attack posture off: ${e.reason ?? 'the rate of failed sign-ins fell'} [${instance}]`;
    default:
      return `${e.event} ${who} from ${e.ip}${on} [${instance}]`;
  }
}

function mailBody(e: AuditEvent, instance: string): string {
  const advice: Partial<Record<AuditEventName, string>> = {
    new_network_login: 'If this sign-in was not expected, revoke the sessions (portcullis sessions revoke --user NAME) and reset the password.',
    locked_out: 'The account is locked for a while; if the failures were not the user, someone is guessing its password.',
    weak_password: 'The password in use does not meet the password policy; ask the user to change it.',
    totp_enrolled: 'If you did not set up a new authenticator, tell your administrator at once: someone else may hold your password.',
    totp_removed: 'If you did not remove your authenticator, tell your administrator at once: someone else may hold your password.',
    password_sprayed:
      'One password has been tried against many accounts: a password spraying attack. It is now refused from networks the accounts have not used before; users whose own password it is are sent to change it. Run `portcullis report` to see the accounts and sources.',
    attack_started:
      'Failed sign-ins across the gateway are far above normal. Until the rate falls, sign-ins from networks unfamiliar to the account need a second factor. `portcullis attack status` shows it; `portcullis attack off` ends it.',
    password_refused_correct:
      'Someone used the correct password from a network where it cannot open the account. The account stayed closed, but the password is known to them: change it now, and anywhere else it is used.',
  };
  const rows: Array<[string, string | undefined]> = [
    ['Event', e.event],
    ['Time', e.ts],
    ['User', e.user],
    ['Address', e.ip],
    ['App', e.app],
    ['Outcome', e.outcome],
    ['Detail', e.reason],
    ['Gateway', instance],
  ];
  if (e.event === 'password_refused_correct' && e.reason?.startsWith('attack posture')) {
    advice.password_refused_correct =
      'The gateway is under a password attack, and while it lasts a sign-in from a network you have not used before needs a second factor. If it was you, sign in from a network you usually use (the office, home) or set up an authenticator there. If it was not you, someone knows your password: change it now.';
  }
  const table = rows
    .filter((r): r is [string, string] => r[1] !== undefined)
    .map(([k, v]) => `${`${k}:`.padEnd(9)} ${v}`)
    .join('\n');
  return `${summary(e, instance)}\n\n${table}\n\n${advice[e.event] ?? ''}\n`;
}
