/**
 * In-process implementations of the session and rate ports, for a single gateway instance.
 *
 * Every table is a bounded LRU (lru-cache), so a flood of spoofed sources, user names or
 * sessions costs a fixed amount of memory: past the cap the least recently used entry goes.
 * An attacker who keeps attacking keeps touching their own entries, so they stay hot and
 * their blocks stay in force; what falls out is state nobody is using.
 *
 * Expiry is computed here from the injected clock (sessions) or the `now` the caller passes
 * (rates), never from the wall clock, so tests move time with a ManualClock. lru-cache is
 * used only for its bounded recency order; its own TTL machinery is not used.
 */
import { LRUCache } from 'lru-cache';
import type { Clock } from '../clock.js';
import type { RateStore, ReserveRequest, ReserveResult, SessionRecord, SessionStore, StateStore, Stores } from './ports.js';

export const DEFAULT_MAX_SESSIONS = 100_000;
export const DEFAULT_MAX_RATE_KEYS = 200_000;
/**
 * Distinct members remembered per counter key. Counting is exact up to this many distinct
 * members; past it, any member not remembered counts as new (the count can only run high,
 * never low, so a throttle keyed on it trips early rather than late). Thresholds used with
 * `hit(…, member)` must not exceed it.
 */
export const MAX_MEMBERS_PER_KEY = 1000;

export interface MemoryStoreOptions {
  clock: Clock;
  /** Live sessions kept at most (default 100,000); past it the least recently used is dropped. */
  maxSessions?: number;
  /** Keys kept at most in each rate table (counters, blocks, claims; default 200,000 each). */
  maxRateKeys?: number;
  state: StateStore;
}

/** The memory stores, plus table sizes for metrics and tests. */
export interface MemoryStores extends Stores {
  sessions: MemorySessionStore;
  rates: MemoryRateStore;
}

export function createMemoryStores(opts: MemoryStoreOptions): MemoryStores {
  const maxSessions = positiveInt(opts.maxSessions ?? DEFAULT_MAX_SESSIONS, 'maxSessions');
  const maxRateKeys = positiveInt(opts.maxRateKeys ?? DEFAULT_MAX_RATE_KEYS, 'maxRateKeys');
  const sessions = new MemorySessionStore(opts.clock, maxSessions);
  const rates = new MemoryRateStore(opts.clock, maxRateKeys);
  const state = opts.state;
  return {
    sessions,
    rates,
    state,
    healthy: () => true,
    async close() {
      sessions.clear();
      rates.clear();
      const closable = state as StateStore & { close?: () => Promise<void> };
      if (typeof closable.close === 'function') await closable.close();
    },
  };
}

function positiveInt(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`${name} must be a positive integer, got ${n}`);
  return n;
}

interface SessionEntry {
  rec: SessionRecord;
  expiresAt: number;
}

type RevokedListener = (idHash: string | '*', user?: string) => void;

export class MemorySessionStore implements SessionStore {
  private readonly table: LRUCache<string, SessionEntry>;
  private readonly listeners: RevokedListener[] = [];

  constructor(
    private readonly clock: Clock,
    readonly maxSessions: number,
  ) {
    this.table = new LRUCache<string, SessionEntry>({ max: maxSessions });
  }

  /** Entries held, live or not yet swept (never more than `maxSessions`). */
  get size(): number {
    return this.table.size;
  }

  async get(idHash: string): Promise<SessionRecord | null> {
    return this.getNow(idHash);
  }

  getNow(idHash: string): SessionRecord | null {
    const e = this.table.get(idHash);
    if (!e) return null;
    if (e.expiresAt <= this.clock.now()) {
      this.table.delete(idHash);
      return null;
    }
    // records are copied and frozen once, when stored: a read hands out the frozen record itself
    // (no copy on the signed-in request path), and no caller can change what the store holds
    return e.rec;
  }

  async set(idHash: string, rec: SessionRecord, ttlMs: number): Promise<void> {
    this.put(idHash, rec, ttlMs);
  }

  private put(idHash: string, rec: SessionRecord, ttlMs: number): void {
    if (ttlMs > 0) this.table.set(idHash, { rec: frozenCopy(rec), expiresAt: this.clock.now() + ttlMs });
    else this.table.delete(idHash);
  }

  async replace(idHash: string, rec: SessionRecord, ttlMs: number): Promise<boolean> {
    // the check and the write in one step: nothing (a revocation) can land between them
    if (!this.getNow(idHash)) return false;
    this.put(idHash, rec, ttlMs);
    return true;
  }

  async delete(idHash: string): Promise<boolean> {
    const e = this.table.peek(idHash);
    if (!e) return false;
    this.table.delete(idHash);
    const live = e.expiresAt > this.clock.now();
    if (live) this.emit(idHash, e.rec.user);
    return live;
  }

  async list(user?: string): Promise<Array<{ idHash: string; rec: SessionRecord }>> {
    const now = this.clock.now();
    const out: Array<{ idHash: string; rec: SessionRecord }> = [];
    const stale: string[] = [];
    for (const [idHash, e] of this.table.entries()) {
      if (e.expiresAt <= now) stale.push(idHash);
      else if (user === undefined || e.rec.user === user) out.push({ idHash, rec: e.rec });
    }
    for (const k of stale) this.table.delete(k);
    return out;
  }

  async deleteByUser(user: string): Promise<number> {
    const now = this.clock.now();
    const victims: Array<[string, boolean]> = [];
    for (const [idHash, e] of this.table.entries()) {
      if (e.rec.user === user) victims.push([idHash, e.expiresAt > now]);
    }
    let n = 0;
    for (const [idHash, live] of victims) {
      this.table.delete(idHash);
      if (live) {
        n++;
        this.emit(idHash, user);
      }
    }
    return n;
  }

  async deleteAll(): Promise<number> {
    const now = this.clock.now();
    let n = 0;
    for (const e of this.table.values()) if (e.expiresAt > now) n++;
    this.table.clear();
    this.emit('*');
    return n;
  }

  /**
   * Told of every explicit revocation (delete, deleteByUser, deleteAll: `'*'`). Sessions that
   * expire, or that the cap drops, are not announced; they simply stop being found.
   */
  onRevoked(listener: RevokedListener): void {
    this.listeners.push(listener);
  }

  clear(): void {
    this.table.clear();
  }

  private emit(idHash: string | '*', user?: string): void {
    for (const l of this.listeners) {
      try {
        l(idHash, user);
      } catch {
        // a failing listener must not stop the revocation or the other listeners
      }
    }
  }
}

/**
 * A fixed-window counter. `members` holds the distinct members seen: null before the first,
 * a string for exactly one (the common case, kept small), a Set beyond.
 */
interface Counter {
  end: number;
  n: number;
  members: string | Set<string> | null;
}

interface Block {
  until: number;
  reason: string;
}

export class MemoryRateStore implements RateStore {
  private readonly counters: LRUCache<string, Counter>;
  private readonly blocks: LRUCache<string, Block>;
  private readonly claims: LRUCache<string, number>;

  constructor(
    private readonly clock: Clock,
    readonly maxKeys: number,
  ) {
    this.counters = new LRUCache<string, Counter>({ max: maxKeys });
    this.blocks = new LRUCache<string, Block>({ max: maxKeys });
    this.claims = new LRUCache<string, number>({ max: maxKeys });
  }

  /** Entries held per table (each never more than `maxKeys`). */
  get sizes(): { counters: number; blocks: number; claims: number } {
    return { counters: this.counters.size, blocks: this.blocks.size, claims: this.claims.size };
  }

  async hit(key: string, windowMs: number, now: number, member?: string): Promise<number> {
    return this.hitSync(key, windowMs, now, member);
  }

  private hitSync(key: string, windowMs: number, now: number, member?: string): number {
    let c = this.counters.get(key);
    if (!c || c.end <= now) {
      c = { end: now + windowMs, n: 0, members: null };
      this.counters.set(key, c);
    }
    if (member === undefined) {
      c.n++;
    } else if (c.members === null) {
      c.members = member;
      c.n++;
    } else if (typeof c.members === 'string') {
      if (c.members !== member) {
        c.members = new Set([c.members, member]);
        c.n++;
      }
    } else if (!c.members.has(member)) {
      if (c.members.size < MAX_MEMBERS_PER_KEY) c.members.add(member);
      c.n++;
    }
    return c.n;
  }

  async count(key: string, now: number): Promise<number> {
    const c = this.counters.get(key);
    if (!c) return 0;
    if (c.end <= now) {
      this.counters.delete(key);
      return 0;
    }
    return c.n;
  }

  async reset(key: string): Promise<void> {
    this.counters.delete(key);
  }

  /** Blocks never shorten: a longer block already in force stays (lift it with `unblock`). */
  async block(key: string, until: number, reason: string): Promise<void> {
    const cur = this.blocks.get(key);
    if (cur && cur.until >= until && cur.until > this.clock.now()) return;
    this.blocks.set(key, { until, reason });
  }

  async blockedUntil(key: string, now: number): Promise<{ until: number; reason: string } | null> {
    const b = this.blocks.get(key);
    if (!b) return null;
    if (b.until <= now) {
      this.blocks.delete(key);
      return null;
    }
    return { until: b.until, reason: b.reason };
  }

  async unblock(key: string): Promise<boolean> {
    const b = this.blocks.peek(key);
    if (!b) return false;
    this.blocks.delete(key);
    return b.until > this.clock.now();
  }

  async listBlocks(now: number): Promise<Array<{ key: string; until: number; reason: string }>> {
    const out: Array<{ key: string; until: number; reason: string }> = [];
    const stale: string[] = [];
    for (const [key, b] of this.blocks.entries()) {
      if (b.until <= now) stale.push(key);
      else out.push({ key, until: b.until, reason: b.reason });
    }
    for (const k of stale) this.blocks.delete(k);
    return out.sort((a, b) => a.until - b.until || (a.key < b.key ? -1 : 1));
  }

  /**
   * Check-and-set in one synchronous step (no await between the read and the write), so two
   * concurrent claimants in this process cannot both win. A claim is never evicted while live:
   * if the table is full of live claims, the claim is refused (fail closed: a TOTP code
   * then cannot be used, rather than possibly be replayed).
   */
  async claim(key: string, ttlMs: number, now: number): Promise<boolean> {
    const exp = this.claims.peek(key);
    if (exp !== undefined && exp > now) return false;
    if (exp === undefined && this.claims.size >= this.maxKeys) {
      this.sweepClaims(now);
      if (this.claims.size >= this.maxKeys) return false;
    }
    this.claims.set(key, now + ttlMs);
    return true;
  }

  /**
   * Synchronous from the first read to the last write (no await in between), so no other attempt
   * in this process can interleave: that is what makes it atomic here.
   */
  async reserve(req: ReserveRequest, now: number): Promise<ReserveResult> {
    for (const key of req.blocks) {
      const b = this.blocks.get(key);
      if (b && b.until > now) return { ok: false, block: { key, until: b.until, reason: b.reason } };
    }
    if (req.seen) {
      const c = this.live(req.seen.key, now);
      if (c && hasMember(c, req.seen.member)) return { ok: false, seen: true };
    }
    for (let i = 0; i < req.counters.length; i++) {
      const c = req.counters[i]!;
      const cur = this.live(c.key, now);
      if (!cur || cur.n < c.max) continue;
      if (c.member !== undefined && hasMember(cur, c.member)) continue;
      return { ok: false, full: i };
    }
    const counts: number[] = [];
    const added: boolean[] = [];
    for (const c of req.counters) {
      const before = this.live(c.key, now)?.n ?? 0;
      const n = this.hitSync(c.key, c.windowMs, now, c.member);
      counts.push(n);
      added.push(n > before);
    }
    return { ok: true, counts, added };
  }

  async unhit(key: string, now: number, member?: string): Promise<void> {
    const c = this.live(key, now);
    if (!c) return;
    if (member === undefined) {
      if (c.n > 0) c.n--;
      return;
    }
    if (c.members === member) {
      c.members = null;
      c.n--;
    } else if (c.members instanceof Set && c.members.delete(member)) c.n--;
  }

  private readonly slots = new LRUCache<string, { n: number; until: number }>({ max: 100_000 });

  async acquire(key: string, max: number, ttlMs: number, now: number): Promise<boolean> {
    let s = this.slots.get(key);
    if (!s || s.until <= now) s = { n: 0, until: 0 };
    if (s.n >= max) return false;
    this.slots.set(key, { n: s.n + 1, until: now + ttlMs });
    return true;
  }

  async releaseSlot(key: string): Promise<void> {
    const s = this.slots.get(key);
    if (!s) return;
    if (s.n > 1) s.n--;
    // lru-cache resets every internal array (O(max), 100,000 slots) when its last entry is
    // deleted: that cost ~0.3 ms on each sign-in of an idle gateway. The last entry is kept spent
    // instead (acquire reads n = 0 as free).
    else if (this.slots.size > 1) this.slots.delete(key);
    else s.n = 0;
  }

  private live(key: string, now: number): Counter | null {
    const c = this.counters.get(key);
    if (!c) return null;
    if (c.end <= now) {
      this.counters.delete(key);
      return null;
    }
    return c;
  }

  clear(): void {
    this.counters.clear();
    this.blocks.clear();
    this.claims.clear();
    this.slots.clear();
  }

  private sweepClaims(now: number): void {
    const stale: string[] = [];
    for (const [k, exp] of this.claims.entries()) if (exp <= now) stale.push(k);
    for (const k of stale) this.claims.delete(k);
  }
}

function hasMember(c: Counter, member: string): boolean {
  return c.members === member || (c.members instanceof Set && c.members.has(member));
}

function frozenCopy(rec: SessionRecord): SessionRecord {
  const copy = structuredClone(rec);
  Object.freeze(copy.amr);
  return Object.freeze(copy);
}
