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
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
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
  private readonly upstream: Histogram<'app' | 'status_class'>;
  private readonly adminFailures: Counter;
  private readonly decisions: Counter<'app' | 'policy' | 'outcome'>;
  /** Counter children by label values, so the per-request path does no label hashing. */
  private readonly decisionChildren = new Map<string, { inc(): void }>();
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
    this.upstream = new Histogram({
      name: 'portcullis_upstream_duration_seconds',
      help: 'Time from forwarding a request to the app until its response headers, by app and status class',
      labelNames: ['app', 'status_class'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.decisions = new Counter({
      name: 'portcullis_decisions_total',
      help: "The gate's decisions (proxied requests and forward-auth subrequests) by app, policy and outcome",
      labelNames: ['app', 'policy', 'outcome'],
      registers,
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
  /** Histogram children by app and status class, so the per-request path does no label hashing. */
  private readonly upstreamChildren = new Map<string, { observe(v: number): void }>();

  readonly observeUpstream = (app: string, status: number, seconds: number): void => {
    if (!Number.isFinite(seconds) || seconds < 0) return;
    const cls = statusClass(status);
    const key = `${app}\u0000${cls}`;
    let child = this.upstreamChildren.get(key);
    if (!child) {
      // app names come from the config and status classes from a fixed set: bounded
      child = this.upstream.labels({ app, status_class: cls });
      this.upstreamChildren.set(key, child);
    }
    child.observe(seconds);
  };

  /**
   * For `createGatewayServer(rt, { decision })`: one decision of the gate. The labels are bounded
   * by the caller (app and policy names from the config, the outcome from a fixed set); the
   * children kept here are at most apps x policies x outcomes.
   */
  readonly countDecision = (app: string, policy: string, outcome: string): void => {
    const key = `${app}\u0000${policy}\u0000${outcome}`;
    let child = this.decisionChildren.get(key);
    if (!child) {
      child = this.decisions.labels({ app, policy, outcome });
      this.decisionChildren.set(key, child);
    }
    child.inc();
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
        this.logins.inc({ factor: reason === 'recovery code' ? 'recovery_code' : 'otp', outcome: 'success' });
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
