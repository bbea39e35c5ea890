import * as cryptoModule from 'node:crypto';
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Clock, Random } from '../clock.js';
import type { Factor, SessionRecord, SessionStore } from '../store/ports.js';
import { PortcullisError, isPortcullisError } from '../errors.js';
import { hostUnderDomain, type SessionConfig } from '../config/types.js';

export interface SessionTimeouts {
  idleMs: number;
  absoluteMs: number;
}

export interface OpenSession {
  /** The bearer id (cookie value). Never logged, never stored. */
  id: string;
  idHash: string;
  rec: SessionRecord;
}

const ID_BYTES = 32; // 256 bits
const ID_RE = /^[A-Za-z0-9_-]{43}$/;
/** lastSeenAt is written back at most this often, so a signed-in request costs no store write. */
const TOUCH_EVERY_MS = 60_000;
/** Bound of the id -> hash memo (see `SessionManager.hashes`): about 4 MB when full (ids copied, never slices). */
const HASHES_MAX = 20_000;

/** Whether a record is no session for a cookie of `scope` (undefined: any scope will do). */
function outOfScope(rec: SessionRecord, scope: string | null | undefined): boolean {
  return scope !== undefined && (rec.scope ?? null) !== scope;
}

/** SHA-256 of the id: the only form in which an id is stored or indexed. */
/** node:crypto's one-shot `hash` (Node >= 20.12): no Hash object per request on the hot path. */
const oneShot = (cryptoModule as { hash?: (alg: string, data: string, enc: 'base64url') => string }).hash;

export function hashSessionId(id: string): string {
  return oneShot ? oneShot('sha256', id, 'base64url') : createHash('sha256').update(id).digest('base64url');
}

/**
 * Sessions: 256-bit ids from a CSPRNG, stored only as a hash; idle and absolute timeouts; a new id
 * at every privilege change (sign-in, second factor), so a planted id is worthless.
 *
 * With a remote store, `cacheMs` > 0 keeps verified records locally for that long; every deletion
 * (here or, through the store's broadcast, on another instance) evicts at once.
 */
export class SessionManager {
  private readonly cache: LRUCache<string, { rec: SessionRecord; at: number }> | null;
  /**
   * Store reads in flight, by id hash (remote stores only): requests of one session that arrive
   * together when its cached record has run out share one round trip instead of each making one.
   */
  private readonly reading = new Map<string, Promise<SessionRecord | null>>();
  /** Revocations seen (any session): a read that a revocation overtook is not cached. */
  private revocations = 0;
  /**
   * Cookie value -> its SHA-256, for ids that named a live session when last seen: a pure
   * function memoised, so nothing here can be stale (a revoked id's hash finds no record).
   * Emptied when full (HASHES_MAX), so an attacker's ids cannot grow it: they never get in.
   */
  private readonly hashes = new Map<string, string>();

  constructor(
    private readonly deps: {
      store: SessionStore;
      clock: Clock;
      random: Random;
      timeouts: () => SessionTimeouts;
      cacheMs?: number;
      cacheMax?: number;
      /**
       * While the store is unreachable, a session this instance verified within this many ms may
       * continue from the local cache (config `session.grace`, default 0: fail closed).
       */
      graceMs?: () => number;
    },
  ) {
    this.cache =
      deps.cacheMs && deps.cacheMs > 0 ? new LRUCache({ max: deps.cacheMax ?? 50_000 }) : null;
    deps.store.onRevoked((idHash) => {
      this.revocations++;
      if (!this.cache) return;
      if (idHash === '*') {
        this.cache.clear();
        this.reading.clear();
      } else {
        this.cache.delete(idHash);
        this.reading.delete(idHash);
      }
    });
  }

  async create(init: {
    user: string;
    amr: Factor[];
    pending: SessionRecord['pending'];
    ip: string;
    rd?: string | undefined;
    mustChangePassword?: boolean;
    reauthAt?: number;
    /** The cookie's Domain when it covers many hosts (`session.domain`); absent for a per-host cookie. */
    scope?: string | null | undefined;
  }): Promise<OpenSession> {
    const now = this.deps.clock.now();
    const id = this.deps.random.bytes(ID_BYTES).toString('base64url');
    const rec: SessionRecord = {
      user: init.user,
      amr: [...init.amr],
      pending: init.pending,
      createdAt: now,
      lastSeenAt: now,
      ip: init.ip,
      csrf: this.deps.random.bytes(24).toString('base64url'),
      rd: init.rd,
      ...(init.mustChangePassword ? { mustChangePassword: true } : {}),
      ...(init.reauthAt !== undefined ? { reauthAt: init.reauthAt } : {}),
      ...(init.scope ? { scope: init.scope } : {}),
    };
    const idHash = hashSessionId(id);
    await this.deps.store.set(idHash, rec, this.ttl(rec, now));
    return { id, idHash, rec };
  }

  /**
   * The live session for a cookie value, or null (unknown, malformed, expired). With `scope`
   * given (the Domain of the cookie it came in, null for a per-host cookie), a session made for
   * another scope is null too: a `session.domain` session is no session on a host outside that
   * domain, whatever cookie carries it there, and a per-host one none under the domain.
   */
  async lookup(id: string | undefined | null, scope?: string | null): Promise<OpenSession | null> {
    return this.lookupNow(id, scope);
  }

  /**
   * `lookup`, answered at once when it can be (a record cached here or held by an in-process
   * store, nothing to write): the signed-in request path then makes no promise. A promise
   * otherwise (a store read, an expiry to delete, a touch to write).
   */
  lookupNow(id: string | undefined | null, scope?: string | null): OpenSession | null | Promise<OpenSession | null> {
    if (!id) return null;
    let idHash = this.hashes.get(id);
    const known = idHash !== undefined;
    if (idHash === undefined) {
      if (!ID_RE.test(id)) return null;
      idHash = hashSessionId(id);
    }
    const now = this.deps.clock.now();
    const cached = this.cache?.get(idHash);
    if (cached && now - cached.at < (this.deps.cacheMs ?? 0)) return this.settle(id, idHash, cached.rec, now, scope, known);
    const getNow = this.deps.store.getNow;
    if (!this.cache && getNow) return this.settle(id, idHash, getNow.call(this.deps.store, idHash), now, scope, known);
    return this.readThenSettle(id, idHash, now, cached, scope, known);
  }

  private async readThenSettle(id: string, idHash: string, now: number, cached: { rec: SessionRecord; at: number } | undefined, scope: string | null | undefined, known: boolean): Promise<OpenSession | null> {
    const seen = this.revocations;
    let rec: SessionRecord | null;
    try {
      rec = await this.read(idHash);
    } catch (err) {
      const grace = this.deps.graceMs?.() ?? 0;
      if (!cached || grace <= 0 || now - cached.at >= grace || !isPortcullisError(err, 'PC_STORE_UNAVAILABLE')) throw err;
      // grace never stretches a session past its own idle or absolute timeout
      if (now >= this.expiresAt(cached.rec)) throw err;
      return outOfScope(cached.rec, scope) ? null : { id, idHash, rec: cached.rec };
    }
    // a revocation broadcast while the read was in flight may concern this session: the record
    // read before it is not kept (the next request reads again)
    if (rec && this.cache && seen === this.revocations) this.cache.set(idHash, { rec, at: now });
    return this.settle(id, idHash, rec, now, scope, known);
  }

  /**
   * A record read (or cached): one made for another scope is no session here (and is left as it
   * is: not touched, not deleted); expired ones are deleted, one due for a touch is touched, else
   * it is the session.
   */
  private settle(id: string, idHash: string, rec: SessionRecord | null, now: number, scope: string | null | undefined, known: boolean): OpenSession | null | Promise<OpenSession | null> {
    if (!rec || outOfScope(rec, scope)) return null;
    if (now >= this.expiresAt(rec)) return this.destroyHash(idHash).then(() => null);
    if (now - rec.lastSeenAt >= TOUCH_EVERY_MS) return this.touch(id, idHash, rec, now);
    // the id's hash is kept for the next request of this live session (SHA-256 once, not per
    // request); the table is bounded and only ever holds ids that named a live session
    if (!known) {
      if (this.hashes.size >= HASHES_MAX) this.hashes.clear();
      // a copy of the id, not the id itself: the id is usually a slice of the request's Cookie
      // header, and V8 keeps the whole header alive behind a slice (up to 16 KB an entry)
      this.hashes.set(Buffer.from(id, 'latin1').toString('latin1'), idHash);
    }
    return { id, idHash, rec };
  }

  private async touch(id: string, idHash: string, rec: SessionRecord, now: number): Promise<OpenSession | null> {
    const touched = { ...rec, lastSeenAt: now };
    // only while the session still exists: a revocation (here or on another instance) between
    // the read above and this write must not be undone by the touch
    if (!(await this.deps.store.replace(idHash, touched, this.ttl(touched, now)))) {
      this.cache?.delete(idHash);
      return null;
    }
    this.cache?.set(idHash, { rec: touched, at: now });
    return { id, idHash, rec: touched };
  }

  /** One store read per id hash at a time when records are cached (see `reading`). */
  private read(idHash: string): Promise<SessionRecord | null> {
    if (!this.cache) return this.deps.store.get(idHash);
    let p = this.reading.get(idHash);
    if (!p) {
      p = this.deps.store.get(idHash);
      this.reading.set(idHash, p);
      const done = () => {
        if (this.reading.get(idHash) === p) this.reading.delete(idHash);
      };
      p.then(done, done);
    }
    return p;
  }

  /**
   * The live record for `idHash`, read from the store without touching it (lastSeenAt unchanged),
   * or null when it is gone or expired. For an open WebSocket re-checking its session: traffic on
   * the tunnel is not activity that extends the idle timeout. Store errors propagate.
   */
  async peek(idHash: string): Promise<SessionRecord | null> {
    const rec = await this.deps.store.get(idHash);
    return rec && this.deps.clock.now() < this.expiresAt(rec) ? rec : null;
  }

  /** When `rec` ends unless it is touched again: the earlier of its idle and absolute expiry (ms). */
  expiresAt(rec: SessionRecord): number {
    const t = this.deps.timeouts();
    return Math.min(rec.createdAt + t.absoluteMs, rec.lastSeenAt + t.idleMs);
  }

  /**
   * Replace the session with a new id carrying `changes` (privilege change: no fixation). The new
   * record is written first and the old one deleted after; if the old one was already gone
   * (revoked meanwhile, here or on another instance) the new one is deleted again and
   * PC_SESSION_GONE thrown: a revocation racing a sign-in step can never be undone by it.
   */
  async rotate(old: OpenSession, changes: Partial<SessionRecord>): Promise<OpenSession> {
    const now = this.deps.clock.now();
    const id = this.deps.random.bytes(ID_BYTES).toString('base64url');
    const rec: SessionRecord = {
      ...old.rec,
      ...changes,
      lastSeenAt: now,
      csrf: this.deps.random.bytes(24).toString('base64url'),
    };
    const idHash = hashSessionId(id);
    await this.deps.store.set(idHash, rec, this.ttl(rec, now));
    this.cache?.delete(old.idHash);
    if (!(await this.deps.store.delete(old.idHash))) {
      await this.deps.store.delete(idHash);
      throw new PortcullisError('PC_SESSION_GONE');
    }
    return { id, idHash, rec };
  }

  /** Update the record in place (same id); a session revoked meanwhile stays revoked (PC_SESSION_GONE). */
  async update(s: OpenSession, changes: Partial<SessionRecord>): Promise<OpenSession> {
    const now = this.deps.clock.now();
    const rec = { ...s.rec, ...changes };
    if (!(await this.deps.store.replace(s.idHash, rec, this.ttl(rec, now)))) {
      this.cache?.delete(s.idHash);
      throw new PortcullisError('PC_SESSION_GONE');
    }
    this.cache?.set(s.idHash, { rec, at: now });
    return { ...s, rec };
  }

  /** Drop a session from this instance's cache (after the store deleted it some other way). */
  forget(idHash: string): void {
    this.cache?.delete(idHash);
  }

  async destroy(s: OpenSession): Promise<void> {
    await this.destroyHash(s.idHash);
  }

  async destroyHash(idHash: string): Promise<void> {
    this.cache?.delete(idHash);
    await this.deps.store.delete(idHash);
  }

  private ttl(rec: SessionRecord, now: number): number {
    return Math.max(1, this.expiresAt(rec) - now);
  }
}

/** The session cookie a request reads and a response sets: its name, and its Domain (null: host-only). */
export interface SessionCookie {
  name: string;
  domain: string | null;
}

/**
 * The session cookie for a host (lower case, no port): `__Secure-portcullis` with
 * `Domain=<session.domain>` over https on a host under `session.domain` (one sign-in for all of
 * them); otherwise the per-host cookie of `sessionCookieName`.
 */
export function sessionCookieFor(session: Pick<SessionConfig, 'domain'>, host: string, secure: boolean): SessionCookie {
  if (secure && session.domain !== null && hostUnderDomain(host, session.domain)) return { name: '__Secure-portcullis', domain: session.domain };
  return { name: sessionCookieName(secure), domain: null };
}

/**
 * Cookie name: `__Host-portcullis` over https (Secure, Path=/, no Domain: the browser enforces it);
 * a plainly named development cookie over plain http, where `__Host-` cannot be used.
 */
export function sessionCookieName(secure: boolean): string {
  return secure ? '__Host-portcullis' : 'portcullis_dev_session';
}
