/**
 * Prometheus metrics for one gateway, in a registry of its own (never prom-client's global one,
 * so two gateways in one process, as in tests, do not mix their numbers).
 *
 * Counters follow the audit trail: every audit event feeds them, so a number on a dashboard and a
 * line in the audit log always agree. Gauges that describe state (sessions, connections, the hash
 * budget, lockdown, the store) are read when Prometheus scrapes. Every label takes its values
 * from a fixed set or from the config (app names): nothing a client sends can add a series.
 *
 *   portcullis_logins_total{factor, outcome}        factor: password | app_password | otp | recovery_code
 *                                                   outcome: success | failure | throttled | replayed
 *   portcullis_throttled_total{kind}                attempts refused by a throttle: ip | user | spray | ceiling | mfa
 *   portcullis_audit_events_total{event}            every audit event, by name
 *   portcullis_active_sessions                      sessions in the store (read at most every 15 s)
 *   portcullis_open_connections                     WebSockets open through the gateway
 *   portcullis_upstream_duration_seconds{app, status_class}   time to the app's response headers
 *   portcullis_hash_inflight, portcullis_hash_limit, portcullis_hash_rejected_total
 *   portcullis_lockdown                             1 while lockdown is on
 *   portcullis_store_up                             1 while the store answers
 *   portcullis_admin_auth_failures_total            admin requests without a valid token
 *   portcullis_build_info{version, node}            always 1
 *   portcullis_decisions_total{app, policy, outcome}  the gate's decisions, proxied and forward-auth:
 *                                                   app and policy from the config ('-': none),
 *                                                   outcome: allow | deny | login | step | lockdown | refused
 * and the process_* / nodejs_* defaults of prom-client.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { AuditEvent } from '../audit/events.js';
import type { Runtime } from '../runtime.js';
import { packageVersion } from '../cli/version.js';

const THROTTLE_KINDS = new Set(['ip', 'user', 'spray', 'ceiling']);
/** How long a session count is reused between scrapes (listing a large Redis store is not free). */
const SESSIONS_CACHE_MS = 15_000;

export interface MetricsOptions {
  /** Include prom-client's process and Node.js metrics (default true). */
  processMetrics?: boolean;
}

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly logins: Counter<'factor' | 'outcome'>;
  private readonly throttled: Counter<'kind'>;
  private readonly events: Counter<'event'>;
  private readonly upstream: LocalHistogram;
  private readonly adminFailures: Counter;
  /** Decisions counted since start, by label values (see countDecision). */
  private readonly decisionCounts: Array<{ labels: { app: string; policy: string; outcome: string }; n: number; added: number }> = [];
  private readonly decisionIndex = new Map<string, Map<string, Map<string, { labels: { app: string; policy: string; outcome: string }; n: number; added: number }>>>();
  private readonly unsubscribe: () => void;
  private sessionsCache: { at: number; n: number } | null = null;

  constructor(
    private readonly rt: Runtime,
    opts: MetricsOptions = {},
  ) {
    const registers = [this.registry];
    this.logins = new Counter({
      name: 'portcullis_logins_total',
      help: 'Sign-in attempts by factor and outcome',
      labelNames: ['factor', 'outcome'],
      registers,
    });
    this.throttled = new Counter({
      name: 'portcullis_throttled_total',
      help: 'Sign-in attempts refused by a throttle, by kind of block',
      labelNames: ['kind'],
      registers,
    });
    this.events = new Counter({
      name: 'portcullis_audit_events_total',
      help: 'Audit events recorded, by event name',
      labelNames: ['event'],
      registers,
    });
    // counted in plain arrays per request; prom-client only formats them when scraped
    this.upstream = new LocalHistogram(
      'portcullis_upstream_duration_seconds',
      'Time from forwarding a request to the app until the end of its response, by app and status class',
      [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    );
    this.registry.registerMetric(this.upstream as never);
    const decisionCounts = this.decisionCounts;
    new Counter({
      name: 'portcullis_decisions_total',
      help: "The gate's decisions (proxied requests and forward-auth subrequests) by app, policy and outcome",
      labelNames: ['app', 'policy', 'outcome'],
      registers,
      // counted per request in a plain Map (no label hashing on the hot path), added here when scraped
      collect() {
        for (const c of decisionCounts) {
          if (c.n > c.added) {
            this.inc(c.labels, c.n - c.added);
            c.added = c.n;
          }
        }
      },
    });
    new Gauge({
      name: 'portcullis_build_info',
      help: 'The running version of portcullis and of Node.js (always 1)',
      labelNames: ['version', 'node'],
      registers,
    }).set({ version: packageVersion(), node: process.version }, 1);
    this.adminFailures = new Counter({
      name: 'portcullis_admin_auth_failures_total',
      help: 'Admin listener requests refused for a missing or wrong token',
      registers,
    });

    const self = this;
    new Gauge({
      name: 'portcullis_active_sessions',
      help: 'Sessions held in the store (signed in, or part-way through a second factor)',
      registers,
      async collect() {
        const n = await self.sessionCount();
        if (n !== null) this.set(n);
      },
    });
    new Gauge({
      name: 'portcullis_open_connections',
      help: 'WebSocket connections open through the gateway',
      registers,
      collect() {
        this.set(rt.live.size);
      },
    });
    new Gauge({
      name: 'portcullis_hash_inflight',
      help: 'Password verifications running now',
      registers,
      collect() {
        this.set(rt.hashBudget.inFlight);
      },
    });
    new Gauge({
      name: 'portcullis_hash_limit',
      help: 'Password verifications allowed at once (login_limits max concurrent hashes)',
      registers,
      collect() {
        this.set(rt.hashBudget.max);
      },
    });
    let rejectedSeen = 0;
    new Counter({
      name: 'portcullis_hash_rejected_total',
      help: 'Password verifications refused with 503 because the hash budget was spent',
      registers,
      collect() {
        const now = rt.hashBudget.rejected;
        if (now > rejectedSeen) this.inc(now - rejectedSeen);
        rejectedSeen = now;
      },
    });
    new Gauge({
      name: 'portcullis_lockdown',
      help: '1 while lockdown is on',
      registers,
      collect() {
        this.set(rt.lockdown.on ? 1 : 0);
      },
    });
    new Gauge({
      name: 'portcullis_store_up',
      help: '1 while the session and state store answers',
      registers,
      collect() {
        this.set(rt.stores.healthy() ? 1 : 0);
      },
    });
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });

    this.unsubscribe = rt.audit.on((e) => this.onAudit(e));
  }

  /** For `createGatewayServer(rt, { observe })`: one proxied request's upstream time. */
  readonly observeUpstream = (app: string, status: number, seconds: number): void => {
    if (!Number.isFinite(seconds) || seconds < 0) return;
    // app names come from the config and status classes from a fixed set: bounded
    this.upstream.observe(app, statusClass(status), seconds);
  };

  /**
   * For `createGatewayServer(rt, { decision })`: one decision of the gate. The labels are bounded
   * by the caller (app and policy names from the config, the outcome from a fixed set); the
   * children kept here are at most apps x policies x outcomes.
   */
  readonly countDecision = (app: string, policy: string, outcome: string): void => {
    // nested maps: no key string is built per request
    let byPolicy = this.decisionIndex.get(app);
    if (!byPolicy) this.decisionIndex.set(app, (byPolicy = new Map()));
    let byOutcome = byPolicy.get(policy);
    if (!byOutcome) byPolicy.set(policy, (byOutcome = new Map()));
    const c = byOutcome.get(outcome);
    if (c) c.n++;
    else {
      const fresh = { labels: { app, policy, outcome }, n: 1, added: 0 };
      byOutcome.set(outcome, fresh);
      this.decisionCounts.push(fresh);
    }
  };

  adminAuthFailed(): void {
    this.adminFailures.inc();
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Stop following the audit log. */
  close(): void {
    this.unsubscribe();
  }

  private onAudit(e: AuditEvent): void {
    this.events.inc({ event: e.event });
    const reason = e.reason ?? '';
    switch (e.event) {
      case 'login_succeeded':
        this.logins.inc({ factor: 'password', outcome: 'success' });
        break;
      case 'login_failed': {
        const factor = reason === 'app password' ? 'app_password' : 'password';
        const m = /^throttled \((\w+)\)$/.exec(reason);
        if (m) {
          this.logins.inc({ factor, outcome: 'throttled' });
          this.throttled.inc({ kind: THROTTLE_KINDS.has(m[1]!) ? m[1]! : 'other' });
        } else this.logins.inc({ factor, outcome: 'failure' });
        break;
      }
      case 'mfa_succeeded':
        this.logins.inc({ factor: reason === 'recovery code' ? 'recovery_code' : reason === 'passkey' ? 'passkey' : 'otp', outcome: 'success' });
        break;
      case 'passkey_failed':
        // registration refusals are not sign-in attempts
        if (reason === 'throttled') {
          this.logins.inc({ factor: 'passkey', outcome: 'throttled' });
          this.throttled.inc({ kind: 'mfa' });
        } else if (!reason.startsWith('registration')) this.logins.inc({ factor: 'passkey', outcome: 'failure' });
        break;
      case 'mfa_failed':
        if (reason === 'throttled') {
          this.logins.inc({ factor: 'otp', outcome: 'throttled' });
          this.throttled.inc({ kind: 'mfa' });
        } else this.logins.inc({ factor: 'otp', outcome: 'failure' });
        break;
      case 'totp_replayed':
        this.logins.inc({ factor: 'otp', outcome: 'replayed' });
        break;
      default:
        break;
    }
  }

  private async sessionCount(): Promise<number | null> {
    const now = this.rt.clock.now();
    const c = this.sessionsCache;
    if (c && now - c.at < SESSIONS_CACHE_MS && now >= c.at) return c.n;
    try {
      const n = (await this.rt.stores.sessions.list()).length;
      this.sessionsCache = { at: now, n };
      return n;
    } catch {
      return c?.n ?? null; // the store is down: portcullis_store_up says so
    }
  }
}

export function statusClass(status: number): string {
  if (!Number.isInteger(status) || status < 100 || status > 599) return 'error';
  return `${Math.floor(status / 100)}xx`;
}

/**
 * A histogram by app and status class whose per-request cost is a Map lookup and two additions:
 * prom-client's own validates and hashes the labels on every observation. Registered in the
 * registry as a metric of its own (prom-client formats what `get` returns when scraped).
 */
class LocalHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, { app: string; cls: string; buckets: number[]; sum: number; count: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
  ) {}

  observe(app: string, cls: string, v: number): void {
    const key = `${app}\u0000${cls}`;
    let s = this.series.get(key);
    if (!s) {
      s = { app, cls, buckets: new Array<number>(this.bounds.length).fill(0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        s.buckets[i]!++;
        break;
      }
    }
    s.sum += v;
    s.count++;
  }

  reset(): void {
    this.series.clear();
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> } {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const s of this.series.values()) {
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += s.buckets[i]!;
        values.push({ labels: { le, app: s.app, status_class: s.cls }, value: acc, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', app: s.app, status_class: s.cls }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { app: s.app, status_class: s.cls }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { app: s.app, status_class: s.cls }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
