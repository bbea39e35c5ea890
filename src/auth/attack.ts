/**
 * The attack posture (SPEC `attack`): the proportionate version of 2017's weekend shutdown.
 *
 * Failed sign-ins (every password checked and found wrong, or right and refused) are counted
 * across the gateway in the shared rate store: one counter per minute, one per hour for the
 * baseline. So several instances count together. A periodic tick (every few seconds, on an
 * unref'd timer in production; tests call `tick()` with a ManualClock) compares the count of
 * the current and of the previous minute with the threshold: `attack.threshold`, or
 * `attack.factor` x the per-minute baseline of the last 24 whole hours (at least 1 a minute, so
 * a quiet gateway's first failures are not an attack; frozen for the length of an episode, so
 * a long attack does not raise its own bar and end itself).
 *
 * A minute whose count exceeds the threshold keeps the posture on until `cooldown` after that
 * minute ended. While it is on, `firstFactor` asks for a second factor from networks unfamiliar
 * to the account (and refuses, like a wrong password, accounts that have none and cannot enrol
 * one there); familiar networks and users with a second factor are unaffected.
 *
 * Shared state, in the rate store (blocks carry a reason and an end time; claims are first-wins):
 *   atk:episode  the current or last episode {id, since, threshold, open, endedAt?, by?}
 *   atk:hot      until when the posture lasts if the rate stays low (last high minute + cooldown)
 *   atk:quiet    after `attack off`: no new episode before it lapses (one cooldown)
 * An episode is opened by the one instance that wins the claim `atk:start:<previous episode id>`
 * and closed by the one that wins `atk:end:<episode id>`: `attack_started` and `attack_ended`
 * are written once per episode however many instances see it.
 */
import type { AuditLog } from '../audit/audit-log.js';
import type { Logger } from '../audit/logger.js';
import type { Clock } from '../clock.js';
import { formatDuration } from '../config/duration.js';
import type { AttackConfig } from '../config/types.js';
import type { RateStore } from '../store/ports.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
/** How often the posture is evaluated in production. */
export const ATTACK_TICK_MS = 5_000;
/** The baseline is taken as at least this many failures a minute. */
export const MIN_BASELINE_PER_MINUTE = 1;
/** A start claim not followed by an episode (a crashed instance) lapses after this. */
const START_CLAIM_MS = MIN;

/** Failures one source network adds to the gateway-wide rate per minute, at most. */
export const PER_SOURCE_PER_MINUTE = 2;

const K = {
  minute: (m: number) => `atk:m:${m}`,
  sourceMinute: (m: number, source: string) => `atk:s:${m}:${source}`,
  hour: (h: number) => `atk:h:${h}`,
  episode: 'atk:episode',
  hot: 'atk:hot',
  quiet: 'atk:quiet',
  start: (after: string) => `atk:start:${after}`,
  end: (id: string) => `atk:end:${id}`,
};

interface Episode {
  id: string;
  since: number;
  /** Failures a minute above which the rate counts as high during this episode. */
  threshold: number;
  open: boolean;
  endedAt?: number;
  /** Who ended it, when an admin did. */
  by?: string;
}

export interface AttackStatus {
  configured: boolean;
  mode: 'threshold' | 'factor' | null;
  active: boolean;
  /** Start of the current episode. */
  since: number | null;
  /** When the current episode ends if the rate stays at or below the threshold. */
  endsAt: number | null;
  /** Failed sign-ins counted in the current and the previous minute (every instance). */
  failuresThisMinute: number;
  failuresLastMinute: number;
  /** The threshold in force (failures a minute). */
  threshold: number | null;
  /** Factor mode: the per-minute baseline of the last 24 whole hours. */
  baselinePerMinute: number | null;
  cooldownMs: number | null;
  /** After `attack off`: no new episode starts before this. */
  quietUntil: number | null;
  /** The last episode that ended. */
  last: { since: number; endedAt: number; by: string | null } | null;
}

export interface AttackPostureDeps {
  rates: RateStore;
  clock: Clock;
  /** The `attack` section in force (read at every use, so reloads apply); null: no posture. */
  config: () => AttackConfig | null;
  audit: AuditLog;
  logger?: Logger;
}

interface Snapshot {
  ep: Episode | null;
  epUntil: number;
  hot: number | null;
  quiet: number | null;
  cur: number;
  prev: number;
  threshold: number;
  baseline: number | null;
}

export class AttackPosture {
  private readonly rates: RateStore;
  private readonly clock: Clock;
  private readonly config: () => AttackConfig | null;
  private readonly audit: AuditLog;
  private readonly logger: Logger | undefined;
  /** This instance's view, refreshed at every tick: the start of the open episode, or null. */
  private activeSince: number | null = null;
  private baselineCache: { hour: number; perMinute: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<unknown> | null = null;

  constructor(deps: AttackPostureDeps) {
    this.rates = deps.rates;
    this.clock = deps.clock;
    this.config = deps.config;
    this.audit = deps.audit;
    this.logger = deps.logger;
  }

  /** Whether the posture is on (as of this instance's last tick). Read on every sign-in: no I/O. */
  get active(): boolean {
    return this.activeSince !== null && this.config() !== null;
  }

  /**
   * One failed sign-in from `source` (its network: see net/ip.ts networkKey), counted for the
   * whole gateway. Each source counts at most PER_SOURCE_PER_MINUTE times a minute, so no single
   * network can switch the posture on (or hold it on) by itself: the posture answers an attack
   * spread over many networks, which the per-source limits cannot see. A no-op without an
   * `attack` section.
   */
  async recordFailure(source: string): Promise<void> {
    if (!this.config()) return;
    const now = this.clock.now();
    const m = Math.floor(now / MIN);
    if ((await this.rates.hit(K.sourceMinute(m, source), 2 * MIN, now)) > PER_SOURCE_PER_MINUTE) return;
    await Promise.all([this.rates.hit(K.minute(m), 3 * MIN, now), this.rates.hit(K.hour(Math.floor(now / HOUR)), 25 * HOUR, now)]);
  }

  /** Evaluate now: start or end an episode as the rates say. Returns the status after it. */
  async tick(): Promise<AttackStatus> {
    const cfg = this.config();
    const now = this.clock.now();
    if (!cfg) {
      // the section was removed while an episode was on: end it
      if (this.activeSince !== null) {
        const ep = await this.readEpisode(now);
        if (ep.ep?.open) await this.close(ep.ep, ep.until, now, 'the attack section was removed from the configuration', null, '-');
      }
      this.activeSince = null;
      return inactive();
    }
    const s = await this.snapshot(cfg, now);
    const m = Math.floor(now / MIN);
    // the end of the last minute whose count exceeded the threshold
    const highEnd = s.cur > s.threshold ? (m + 1) * MIN : s.prev > s.threshold ? m * MIN : null;
    if (s.ep?.open) {
      let hot = s.hot;
      if (highEnd !== null && highEnd + cfg.cooldownMs > (hot ?? 0)) {
        hot = highEnd + cfg.cooldownMs;
        await this.rates.block(K.hot, hot, 'attack');
      }
      if (hot === null || hot <= now) {
        await this.close(s.ep, s.epUntil, now, `failed sign-ins at or below ${fmt(s.threshold)} a minute for ${formatDuration(cfg.cooldownMs)}`, null, '-');
        return this.statusFrom(cfg, { ...s, ep: { ...s.ep, open: false, endedAt: now }, hot: null }, now);
      }
      this.activeSince = s.ep.since;
      return this.statusFrom(cfg, { ...s, hot }, now);
    }
    this.activeSince = null;
    if (highEnd !== null && s.quiet === null && highEnd + cfg.cooldownMs > now) {
      const ep = await this.open(cfg, s, now, highEnd);
      if (ep) return this.statusFrom(cfg, { ...s, ep, hot: highEnd + cfg.cooldownMs }, now);
    }
    return this.statusFrom(cfg, s, now);
  }

  /** The status as the shared store has it now (nothing changes). */
  async status(): Promise<AttackStatus> {
    const cfg = this.config();
    if (!cfg) return inactive();
    const now = this.clock.now();
    return this.statusFrom(cfg, await this.snapshot(cfg, now), now);
  }

  /**
   * End the current episode (`portcullis attack off`). No new one starts for one cooldown; after
   * that, one starts again if the rate is still high. `changed` is false when none was on.
   */
  async off(by: string, ip = '-'): Promise<{ changed: boolean; status: AttackStatus }> {
    const cfg = this.config();
    if (!cfg) return { changed: false, status: inactive() };
    const now = this.clock.now();
    const s = await this.snapshot(cfg, now);
    if (!s.ep?.open) return { changed: false, status: this.statusFrom(cfg, s, now) };
    await this.rates.block(K.quiet, now + cfg.cooldownMs, `off by ${by}`);
    await this.rates.unblock(K.hot);
    const changed = await this.close(s.ep, s.epUntil, now, `ended by ${by}`, by, ip);
    return { changed, status: await this.status() };
  }

  /** Evaluate every `intervalMs` on an unref'd timer (one evaluation at a time). */
  startTicking(intervalMs = ATTACK_TICK_MS): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (this.ticking) return;
      this.ticking = this.tick()
        .catch((err: unknown) => this.logger?.warn({ err: (err as Error).message }, 'attack posture: evaluation failed; trying again at the next tick'))
        .finally(() => {
          this.ticking = null;
        });
    }, intervalMs);
    this.timer.unref();
  }

  async stopTicking(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.ticking;
  }

  private async open(cfg: AttackConfig, s: Snapshot, now: number, highEnd: number): Promise<Episode | null> {
    // one instance opens it: the claim is keyed on the episode before, which every instance reads alike
    if (!(await this.rates.claim(K.start(s.ep?.id ?? 'none'), START_CLAIM_MS, now))) return null;
    const ep: Episode = { id: String(now), since: now, threshold: s.threshold, open: true };
    await this.rates.block(K.hot, highEnd + cfg.cooldownMs, 'attack');
    await this.writeEpisode(ep, s.epUntil, now);
    this.activeSince = now;
    const rate = Math.max(s.cur, s.prev);
    const why = cfg.factor !== null ? `${cfg.factor} x the baseline of ${fmt(s.baseline ?? 0)} a minute` : 'attack.threshold';
    this.audit.record({
      event: 'attack_started',
      ip: '-',
      outcome: 'info',
      reason: `${rate} failed sign-ins in a minute, above ${fmt(s.threshold)} (${why}): sign-ins from networks unfamiliar to the account need a second factor`,
    });
    this.logger?.warn({ rate, threshold: s.threshold }, 'attack posture on');
    return ep;
  }

  /** Close `ep` once (whoever wins the claim writes the event). */
  private async close(ep: Episode, epUntil: number, now: number, reason: string, by: string | null, ip: string): Promise<boolean> {
    this.activeSince = null;
    if (!(await this.rates.claim(K.end(ep.id), DAY, now))) return false;
    await this.writeEpisode({ ...ep, open: false, endedAt: now, ...(by ? { by } : {}) }, epUntil, now);
    this.audit.record({ event: 'attack_ended', ip, outcome: 'info', reason: `${reason}; began ${new Date(ep.since).toISOString()}` });
    this.logger?.warn({ by }, 'attack posture off');
    return true;
  }

  private async readEpisode(now: number): Promise<{ ep: Episode | null; until: number }> {
    const b = await this.rates.blockedUntil(K.episode, now);
    if (!b) return { ep: null, until: 0 };
    try {
      const ep = JSON.parse(b.reason) as Episode;
      if (typeof ep.id !== 'string' || typeof ep.since !== 'number' || typeof ep.threshold !== 'number' || typeof ep.open !== 'boolean') return { ep: null, until: b.until };
      return { ep, until: b.until };
    } catch {
      return { ep: null, until: b.until };
    }
  }

  /** Blocks never shorten, so each write of the record outlasts the one before. */
  private async writeEpisode(ep: Episode, prevUntil: number, now: number): Promise<void> {
    const until = Math.max(now + (ep.open ? 365 * DAY : 30 * DAY), prevUntil + 1);
    await this.rates.block(K.episode, until, JSON.stringify(ep));
  }

  private async snapshot(cfg: AttackConfig, now: number): Promise<Snapshot> {
    const m = Math.floor(now / MIN);
    const [ep, hot, quiet, cur, prev] = await Promise.all([
      this.readEpisode(now),
      this.rates.blockedUntil(K.hot, now),
      this.rates.blockedUntil(K.quiet, now),
      this.rates.count(K.minute(m), now),
      this.rates.count(K.minute(m - 1), now),
    ]);
    let threshold: number;
    let baseline: number | null = null;
    if (cfg.threshold !== null) threshold = cfg.threshold;
    else {
      baseline = await this.baselinePerMinute(now);
      threshold = ep.ep?.open ? ep.ep.threshold : (cfg.factor ?? 1) * Math.max(MIN_BASELINE_PER_MINUTE, baseline);
    }
    return { ep: ep.ep, epUntil: ep.until, hot: hot?.until ?? null, quiet: quiet?.until ?? null, cur, prev, threshold, baseline };
  }

  /** Failures a minute over the last 24 whole hours (missing hours count as none). */
  private async baselinePerMinute(now: number): Promise<number> {
    const h = Math.floor(now / HOUR);
    if (this.baselineCache?.hour === h) return this.baselineCache.perMinute;
    const counts = await Promise.all(Array.from({ length: 24 }, (_, i) => this.rates.count(K.hour(h - 24 + i), now)));
    const perMinute = counts.reduce((a, b) => a + b, 0) / (24 * 60);
    this.baselineCache = { hour: h, perMinute };
    return perMinute;
  }

  private statusFrom(cfg: AttackConfig, s: Snapshot, now: number): AttackStatus {
    const open = s.ep?.open === true;
    return {
      configured: true,
      mode: cfg.threshold !== null ? 'threshold' : 'factor',
      active: open,
      since: open ? s.ep!.since : null,
      endsAt: open ? s.hot : null,
      failuresThisMinute: s.cur,
      failuresLastMinute: s.prev,
      threshold: s.threshold,
      baselinePerMinute: s.baseline,
      cooldownMs: cfg.cooldownMs,
      quietUntil: s.quiet !== null && s.quiet > now ? s.quiet : null,
      last: s.ep && !open && s.ep.endedAt !== undefined ? { since: s.ep.since, endedAt: s.ep.endedAt, by: s.ep.by ?? null } : null,
    };
  }
}

function inactive(): AttackStatus {
  return {
    configured: false,
    mode: null,
    active: false,
    since: null,
    endsAt: null,
    failuresThisMinute: 0,
    failuresLastMinute: 0,
    threshold: null,
    baselinePerMinute: null,
    cooldownMs: null,
    quietUntil: null,
    last: null,
  };
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}
