/**
 * Who may use the admin listener: a request carrying the admin token, from a source that has not
 * just failed too often.
 *
 * The token is 256 random bits, so guessing it is hopeless; the per-source throttle is there for a
 * token an admin chose themselves, and to keep a scanner from turning the listener into a log
 * flood. A source (an IPv4 address, or an IPv6 /64) that fails `maxFailures` times within
 * `windowMs` is refused with 429 for `blockMs`, before its token is even compared. The block is
 * short and lifts by itself: someone who can reach the listener can delay the operator by that
 * much at most, never lock them out for good. The table of sources is bounded (LRU).
 */
import { LRUCache } from 'lru-cache';
import type { Clock } from '../clock.js';
import { sourceKey } from '../net/ip.js';
import { bearerToken, type AdminToken } from './token.js';

export interface AdminAuthLimits {
  maxFailures: number;
  windowMs: number;
  blockMs: number;
  /** Sources remembered at most. */
  maxSources: number;
}

export const DEFAULT_ADMIN_AUTH_LIMITS: AdminAuthLimits = Object.freeze({
  maxFailures: 10,
  windowMs: 60_000,
  blockMs: 60_000,
  maxSources: 10_000,
});

export type AdminAuthVerdict =
  | { ok: true }
  | { ok: false; code: 'PC_ADMIN_UNAUTHORIZED'; reason: 'missing' | 'wrong' }
  | { ok: false; code: 'PC_THROTTLED'; retryAfterSec: number };

interface SourceState {
  windowStart: number;
  failures: number;
  blockedUntil: number;
}

export class AdminAuth {
  private readonly sources: LRUCache<string, SourceState>;
  private readonly limits: AdminAuthLimits;

  constructor(
    private readonly token: AdminToken,
    private readonly clock: Clock,
    limits: Partial<AdminAuthLimits> = {},
    private readonly onFailure?: (source: string, blocked: boolean) => void,
  ) {
    this.limits = { ...DEFAULT_ADMIN_AUTH_LIMITS, ...limits };
    for (const [k, v] of Object.entries(this.limits)) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`admin auth limit ${k} must be a positive integer`);
    }
    this.sources = new LRUCache({ max: this.limits.maxSources });
  }

  /** Decide one request from `ip` carrying `authorization`. */
  async check(ip: string, authorization: string | undefined): Promise<AdminAuthVerdict> {
    const now = this.clock.now();
    const src = sourceKey(ip, 64);
    const s = this.sources.get(src);
    if (s && s.blockedUntil > now) {
      return { ok: false, code: 'PC_THROTTLED', retryAfterSec: Math.max(1, Math.ceil((s.blockedUntil - now) / 1000)) };
    }
    await this.token.refresh();
    const presented = bearerToken(authorization);
    if (this.token.matches(presented)) return { ok: true };

    const st = s && now - s.windowStart < this.limits.windowMs ? s : { windowStart: now, failures: 0, blockedUntil: 0 };
    st.failures++;
    const blocked = st.failures >= this.limits.maxFailures;
    if (blocked) {
      st.blockedUntil = now + this.limits.blockMs;
      st.failures = 0;
      st.windowStart = now;
    }
    this.sources.set(src, st);
    this.onFailure?.(src, blocked);
    return { ok: false, code: 'PC_ADMIN_UNAUTHORIZED', reason: presented === null ? 'missing' : 'wrong' };
  }
}
