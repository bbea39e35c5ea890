/**
 * Admin console sessions: what a browser holds after signing in to the console with the admin
 * token, so the token itself is typed once and never stored in the browser.
 *
 * - The id is 256 random bits (base64url) and lives only in the cookie; the table is keyed by its
 *   SHA-256, so a memory dump or a debugging print of the table yields nothing to present.
 * - Each session has its own CSRF token (256 bits), sent back in every form.
 * - A session ends after 30 minutes without a request, 8 hours after sign-in, at sign-out, or
 *   when the admin token it was opened with stops being the token (rotation: see `routes.ts`).
 * - The table is bounded (LRU): only holders of the admin token can add to it, and the oldest
 *   sessions go first if it is ever full.
 *
 * Memory only, per process, on purpose: the console is a tool for the operator of this gateway
 * instance, and a restart signs the operator out rather than leaving a session in a store.
 * Time and randomness are injected. No fastify here.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Clock, Random } from '../../clock.js';

const ID_BYTES = 32;
const CSRF_BYTES = 32;
const ID_RE = /^[A-Za-z0-9_-]{43}$/;

export const CONSOLE_IDLE_MS = 30 * 60_000;
export const CONSOLE_ABSOLUTE_MS = 8 * 60 * 60_000;
export const CONSOLE_MAX_SESSIONS = 1000;

/** A one-shot message shown on the next dashboard view (after a POST, redirect, GET). */
export interface Flash {
  ok: boolean;
  title: string;
  lines: string[];
}

export interface ConsoleSession {
  /** SHA-256 of the id, base64url. */
  readonly idHash: string;
  /** Per-session CSRF token (base64url). */
  readonly csrf: string;
  readonly createdAt: number;
  lastSeenAt: number;
  /** Address that signed in, for the log. */
  readonly ip: string;
  /**
   * The admin token this session was opened with, held in memory only so the session can end
   * when the token is rotated. Never logged, never sent anywhere.
   */
  readonly token: string;
  flash: Flash | null;
}

export interface ConsoleSessionOptions {
  clock: Clock;
  random: Random;
  idleMs?: number;
  absoluteMs?: number;
  max?: number;
}

/** Cookie name: `__Host-` prefixed (Secure, Path=/, no Domain) when the console is reached over https. */
export function consoleCookieName(secure: boolean): string {
  return secure ? '__Host-portcullis-admin' : 'portcullis_admin';
}

function hashId(id: string): string {
  return createHash('sha256').update(id, 'utf8').digest('base64url');
}

export { sameSecret } from '../../util/constant-time.js';

export class ConsoleSessions {
  private readonly table: LRUCache<string, ConsoleSession>;
  readonly idleMs: number;
  readonly absoluteMs: number;
  private readonly clock: Clock;
  private readonly random: Random;

  constructor(opts: ConsoleSessionOptions) {
    this.clock = opts.clock;
    this.random = opts.random;
    this.idleMs = opts.idleMs ?? CONSOLE_IDLE_MS;
    this.absoluteMs = opts.absoluteMs ?? CONSOLE_ABSOLUTE_MS;
    const max = opts.max ?? CONSOLE_MAX_SESSIONS;
    for (const [k, v] of Object.entries({ idleMs: this.idleMs, absoluteMs: this.absoluteMs, max })) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`console session ${k} must be a positive integer`);
    }
    this.table = new LRUCache({ max });
  }

  /** A new session; the returned `id` goes into the cookie and is not kept. */
  create(ip: string, token: string): { id: string; session: ConsoleSession } {
    const id = this.randomToken(ID_BYTES);
    const now = this.clock.now();
    const session: ConsoleSession = {
      idHash: hashId(id),
      csrf: this.randomToken(CSRF_BYTES),
      createdAt: now,
      lastSeenAt: now,
      ip,
      token,
      flash: null,
    };
    this.table.set(session.idHash, session);
    return { id, session };
  }

  /**
   * The live session for a cookie value, or null (absent, malformed, unknown, idle or too old;
   * an expired one is dropped). A hit counts as activity.
   */
  lookup(id: string | undefined): ConsoleSession | null {
    if (typeof id !== 'string' || !ID_RE.test(id)) return null;
    const key = hashId(id);
    const s = this.table.get(key);
    if (!s) return null;
    const now = this.clock.now();
    if (now - s.lastSeenAt >= this.idleMs || now - s.createdAt >= this.absoluteMs || now < s.createdAt) {
      this.table.delete(key);
      return null;
    }
    s.lastSeenAt = now;
    return s;
  }

  /** How long the cookie may live: what remains of the absolute lifetime, in whole seconds. */
  cookieMaxAgeSec(s: ConsoleSession): number {
    return Math.max(1, Math.floor((s.createdAt + this.absoluteMs - this.clock.now()) / 1000));
  }

  destroy(s: ConsoleSession): boolean {
    return this.table.delete(s.idHash);
  }

  /** End every console session; returns how many. */
  destroyAll(): number {
    const n = this.table.size;
    this.table.clear();
    return n;
  }

  get size(): number {
    return this.table.size;
  }

  private randomToken(n: number): string {
    const b = this.random.bytes(n);
    if (b.length !== n) throw new RangeError('the random source returned too few bytes');
    return b.toString('base64url');
  }
}
