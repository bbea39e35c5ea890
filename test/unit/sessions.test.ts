/**
 * Sessions as a signed-in user (and someone holding a stolen or stale cookie) meets them: ids
 * that cannot be guessed or planted, idle and absolute timeouts, a new id at every privilege
 * change, revocation that sticks. A ManualClock, the memory session store, no sockets.
 */
import { beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ManualClock, type Random } from '../../src/clock.js';
import { isPortcullisError, PortcullisError } from '../../src/errors.js';
import { hashSessionId, sessionCookieName, SessionManager, type OpenSession } from '../../src/session/sessions.js';
import { MemorySessionStore } from '../../src/store/memory.js';
import type { SessionRecord, SessionStore } from '../../src/store/ports.js';

const MIN = 60_000;
const IDLE = 30 * MIN;
const ABSOLUTE = 4 * 60 * MIN;

/** Distinct, reproducible bytes for every call. */
function countingRandom(): Random {
  let n = 0;
  return {
    bytes(k: number): Buffer {
      const out = Buffer.alloc(k);
      for (let off = 0; off < k; off += 32) createHash('sha256').update(`r${n++}`).digest().copy(out, off);
      return out;
    },
  };
}

/** The memory store, with a count of reads and a way to act between a read and what follows. */
class SpyStore implements SessionStore {
  gets = 0;
  writes = 0;
  afterGet: ((idHash: string) => Promise<void>) | null = null;
  failGets = false;
  constructor(readonly inner: MemorySessionStore) {}
  async get(idHash: string) {
    this.gets++;
    if (this.failGets) throw new PortcullisError('PC_STORE_UNAVAILABLE');
    const r = await this.inner.get(idHash);
    const hook = this.afterGet;
    if (hook) {
      this.afterGet = null;
      await hook(idHash);
    }
    return r;
  }
  async set(idHash: string, rec: SessionRecord, ttl: number) {
    this.writes++;
    return this.inner.set(idHash, rec, ttl);
  }
  async replace(idHash: string, rec: SessionRecord, ttl: number) {
    this.writes++;
    return this.inner.replace(idHash, rec, ttl);
  }
  delete(idHash: string) {
    return this.inner.delete(idHash);
  }
  list(user?: string) {
    return this.inner.list(user);
  }
  deleteByUser(user: string) {
    return this.inner.deleteByUser(user);
  }
  deleteAll() {
    return this.inner.deleteAll();
  }
  onRevoked(l: (idHash: string | '*', user?: string) => void) {
    this.inner.onRevoked(l);
  }
}

let clock: ManualClock;
let store: SpyStore;
let sessions: SessionManager;

function manager(o: { cacheMs?: number; graceMs?: number } = {}): SessionManager {
  return new SessionManager({
    store,
    clock,
    random: countingRandom(),
    timeouts: () => ({ idleMs: IDLE, absoluteMs: ABSOLUTE }),
    ...(o.cacheMs !== undefined ? { cacheMs: o.cacheMs } : {}),
    ...(o.graceMs !== undefined ? { graceMs: () => o.graceMs! } : {}),
  });
}

beforeEach(() => {
  clock = new ManualClock();
  store = new SpyStore(new MemorySessionStore(clock, 1000));
  sessions = manager();
});

const signIn = (user = 'alice', pending: SessionRecord['pending'] = 'none'): Promise<OpenSession> =>
  sessions.create({ user, amr: ['pwd'], pending, ip: '192.0.2.10', rd: '/inbox' });

const gone = (e: unknown) => isPortcullisError(e, 'PC_SESSION_GONE');

describe('create and lookup', () => {
  it('a new session has a 256-bit url-safe id, and the store knows it only by its hash', async () => {
    const s = await signIn();
    assert.match(s.id, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(s.idHash, hashSessionId(s.id));
    assert.notEqual(s.idHash, s.id);
    assert.equal(await store.inner.get(s.id), null);
    assert.equal((await store.inner.get(s.idHash))?.user, 'alice');
    assert.equal(s.rec.createdAt, clock.now());
    assert.equal(s.rec.lastSeenAt, clock.now());
    assert.equal(s.rec.rd, '/inbox');
    assert.match(s.rec.csrf, /^[A-Za-z0-9_-]{32}$/);
  });

  it('two sessions never share an id or a CSRF token', async () => {
    const a = await signIn();
    const b = await signIn();
    assert.notEqual(a.id, b.id);
    assert.notEqual(a.rec.csrf, b.rec.csrf);
  });

  it('the cookie value finds its session', async () => {
    const s = await signIn();
    const found = await sessions.lookup(s.id);
    assert.equal(found?.idHash, s.idHash);
    assert.equal(found?.rec.user, 'alice');
  });

  it('missing, malformed, unknown and hash-for-id cookies find nothing, without reading the store for malformed ones', async () => {
    const s = await signIn();
    assert.equal(await sessions.lookup(undefined), null);
    assert.equal(await sessions.lookup(null), null);
    assert.equal(await sessions.lookup(''), null);
    const before = store.gets;
    assert.equal(await sessions.lookup(s.id + 'x'), null);
    assert.equal(await sessions.lookup(s.id.slice(1)), null);
    assert.equal(await sessions.lookup(`${s.id.slice(0, 42)}=`), null);
    assert.equal(store.gets, before);
    assert.equal(await sessions.lookup('A'.repeat(43)), null);
    // the stored hash is 43 characters too, but presenting it is not presenting the id
    assert.equal(await sessions.lookup(s.idHash), null);
  });
});

describe('timeouts on a fixed clock', () => {
  it('idle: a session left alone for the idle timeout is gone, and removed from the store', async () => {
    const s = await signIn();
    clock.advance(IDLE - 1);
    assert.ok(await sessions.lookup(s.id));
    clock.advance(IDLE - 1);
    assert.ok(await sessions.lookup(s.id), 'the previous request counted as activity');
    clock.advance(IDLE);
    assert.equal(await sessions.lookup(s.id), null);
    assert.equal((await store.inner.list()).length, 0);
  });

  it('idle: exactly at the timeout the session has ended', async () => {
    const s = await signIn();
    clock.advance(IDLE);
    assert.equal(await sessions.lookup(s.id), null);
  });

  it('absolute: activity does not keep a session past the absolute timeout', async () => {
    const s = await signIn();
    for (let t = 0; t < ABSOLUTE - 10 * MIN; t += 10 * MIN) {
      clock.advance(10 * MIN);
      assert.ok(await sessions.lookup(s.id), `alive after ${(t + 10 * MIN) / MIN} min of activity`);
    }
    clock.set(s.rec.createdAt + ABSOLUTE);
    assert.equal(await sessions.lookup(s.id), null);
  });

  it('expiresAt is the earlier of idle and absolute expiry', async () => {
    const s = await signIn();
    assert.equal(sessions.expiresAt(s.rec), s.rec.createdAt + IDLE);
    assert.equal(sessions.expiresAt({ ...s.rec, lastSeenAt: s.rec.createdAt + ABSOLUTE - MIN }), s.rec.createdAt + ABSOLUTE);
  });

  it('the store itself drops the record when the session would have ended', async () => {
    const s = await signIn();
    clock.advance(IDLE);
    assert.equal(await store.inner.get(s.idHash), null);
  });
});

describe('touch: lastSeenAt is written back at most every 60 s', () => {
  it('requests within a minute of the last write cost no store write', async () => {
    const s = await signIn();
    const w = store.writes;
    clock.advance(30_000);
    await sessions.lookup(s.id);
    clock.advance(29_999);
    await sessions.lookup(s.id);
    assert.equal(store.writes, w);
    assert.equal((await store.inner.get(s.idHash))?.lastSeenAt, s.rec.createdAt);
  });

  it('the first request a minute or more after the last write moves lastSeenAt', async () => {
    const s = await signIn();
    clock.advance(60_000);
    const found = await sessions.lookup(s.id);
    assert.equal(found?.rec.lastSeenAt, clock.now());
    assert.equal((await store.inner.get(s.idHash))?.lastSeenAt, clock.now());
  });

  it('so the idle timeout counts from the last write, up to a minute early', async () => {
    const s = await signIn();
    clock.advance(59_000);
    assert.ok(await sessions.lookup(s.id)); // not written back
    clock.set(s.rec.createdAt + IDLE);
    assert.equal(await sessions.lookup(s.id), null);
  });

  it('a session revoked between the read and the touch stays revoked', async () => {
    const s = await signIn();
    clock.advance(2 * MIN);
    store.afterGet = async (h) => {
      await store.inner.delete(h);
    };
    assert.equal(await sessions.lookup(s.id), null);
    assert.equal(await store.inner.get(s.idHash), null);
  });

  it('peek reads the session without touching it', async () => {
    const s = await signIn();
    clock.advance(5 * MIN);
    assert.equal((await sessions.peek(s.idHash))?.lastSeenAt, s.rec.createdAt);
    assert.equal((await store.inner.get(s.idHash))?.lastSeenAt, s.rec.createdAt);
    clock.set(s.rec.createdAt + IDLE);
    assert.equal(await sessions.peek(s.idHash), null);
  });
});

describe('rotate: a new id at every privilege change', () => {
  it('gives a new id and CSRF token, applies the changes, and the old id no longer works', async () => {
    const s = await signIn('alice', 'mfa');
    clock.advance(10_000);
    const r = await sessions.rotate(s, { pending: 'none', amr: ['pwd', 'otp'] });
    assert.notEqual(r.id, s.id);
    assert.notEqual(r.idHash, s.idHash);
    assert.notEqual(r.rec.csrf, s.rec.csrf);
    assert.equal(r.rec.pending, 'none');
    assert.deepEqual(r.rec.amr, ['pwd', 'otp']);
    assert.equal(r.rec.lastSeenAt, clock.now());
    assert.equal(await sessions.lookup(s.id), null, 'a planted or stolen pre-sign-in id is worthless');
    assert.equal((await sessions.lookup(r.id))?.rec.pending, 'none');
  });

  it('does not extend the absolute lifetime', async () => {
    let s = await signIn();
    const created = s.rec.createdAt;
    while (clock.now() < created + ABSOLUTE - 10 * MIN) {
      clock.advance(10 * MIN);
      s = (await sessions.lookup(s.id))!;
    }
    clock.set(created + ABSOLUTE - MIN);
    const r = await sessions.rotate(s, {});
    assert.equal(r.rec.createdAt, created);
    clock.advance(MIN);
    assert.equal(await sessions.lookup(r.id), null);
  });

  it('of a session revoked meanwhile throws PC_SESSION_GONE and leaves no session behind', async () => {
    const s = await signIn();
    await store.inner.deleteByUser('alice');
    await assert.rejects(sessions.rotate(s, { pending: 'none', amr: ['pwd', 'otp'] }), gone);
    assert.equal((await store.inner.list('alice')).length, 0);
  });

  it('of a session already rotated (a replayed step) throws PC_SESSION_GONE', async () => {
    const s = await signIn('alice', 'mfa');
    await sessions.rotate(s, { pending: 'none' });
    await assert.rejects(sessions.rotate(s, { pending: 'none' }), gone);
    assert.equal((await store.inner.list('alice')).length, 1);
  });
});

describe('update', () => {
  it('changes the record in place under the same id', async () => {
    const s = await signIn('alice', 'enrol');
    const u = await sessions.update(s, { enrolSecret: 'sealed' });
    assert.equal(u.id, s.id);
    assert.equal((await sessions.lookup(s.id))?.rec.enrolSecret, 'sealed');
  });

  it('of a revoked session throws PC_SESSION_GONE and does not bring it back', async () => {
    const s = await signIn();
    await sessions.destroy(s);
    await assert.rejects(sessions.update(s, { pending: 'none' }), gone);
    assert.equal(await sessions.lookup(s.id), null);
    assert.equal(await store.inner.get(s.idHash), null);
  });
});

describe('destroy', () => {
  it('ends the session at once', async () => {
    const s = await signIn();
    await sessions.destroy(s);
    assert.equal(await sessions.lookup(s.id), null);
  });

  it('ends only that session', async () => {
    const a = await signIn();
    const b = await signIn();
    await sessions.destroyHash(a.idHash);
    assert.equal(await sessions.lookup(a.id), null);
    assert.ok(await sessions.lookup(b.id));
  });
});

describe('local cache with revocation', () => {
  beforeEach(() => {
    sessions = manager({ cacheMs: 2_000, graceMs: 10_000 });
  });

  it('a signed-in request within the cache time reads no store', async () => {
    const s = await signIn();
    await sessions.lookup(s.id);
    const g = store.gets;
    clock.advance(1_000);
    assert.ok(await sessions.lookup(s.id));
    assert.equal(store.gets, g);
    clock.advance(1_000);
    assert.ok(await sessions.lookup(s.id));
    assert.equal(store.gets, g + 1, 'read again once the cache time is over');
  });

  it('requests of one session arriving together when its cache has run out share one store read (issue 17)', async () => {
    const s = await signIn();
    await sessions.lookup(s.id);
    clock.advance(2_000);
    const g = store.gets;
    const all = await Promise.all(Array.from({ length: 32 }, () => sessions.lookup(s.id)));
    assert.ok(all.every((x) => x && x.rec.user === 'alice'));
    assert.equal(store.gets, g + 1, 'one round trip for 32 concurrent requests');
  });

  it('a revocation while a shared read is in flight: the next request reads again and finds nothing', async () => {
    const s = await signIn();
    clock.advance(2_000);
    // the session is revoked (on another instance) between the read and its answer
    store.afterGet = async (h) => {
      await store.inner.delete(h);
    };
    const first = sessions.lookup(s.id);
    await first;
    assert.equal(await sessions.lookup(s.id), null, 'a lookup after the broadcast must not reuse the old read');
  });

  it('a revocation anywhere (the store broadcast) evicts at once: no cached grace for a revoked session', async () => {
    const s = await signIn();
    assert.ok(await sessions.lookup(s.id));
    await store.inner.delete(s.idHash);
    assert.equal(await sessions.lookup(s.id), null);
  });

  it('revoking all of a user, or everyone, evicts too', async () => {
    const a = await signIn('alice');
    const b = await signIn('bob');
    await sessions.lookup(a.id);
    await sessions.lookup(b.id);
    await store.inner.deleteByUser('alice');
    assert.equal(await sessions.lookup(a.id), null);
    assert.ok(await sessions.lookup(b.id));
    await store.inner.deleteAll();
    assert.equal(await sessions.lookup(b.id), null);
  });

  it('store down: a session verified within the grace continues; an unknown one fails closed', async () => {
    const s = await signIn();
    const other = await signIn('bob');
    await sessions.lookup(s.id);
    store.failGets = true;
    clock.advance(3_000);
    assert.equal((await sessions.lookup(s.id))?.rec.user, 'alice');
    await assert.rejects(sessions.lookup(other.id), (e) => isPortcullisError(e, 'PC_STORE_UNAVAILABLE'));
    clock.advance(10_000);
    await assert.rejects(sessions.lookup(s.id), (e) => isPortcullisError(e, 'PC_STORE_UNAVAILABLE'));
  });

  it('store down: the grace never stretches a session past its idle timeout', async () => {
    sessions = manager({ cacheMs: 2_000, graceMs: IDLE * 2 });
    const s = await signIn();
    await sessions.lookup(s.id);
    store.failGets = true;
    clock.advance(IDLE);
    await assert.rejects(sessions.lookup(s.id), (e) => isPortcullisError(e, 'PC_STORE_UNAVAILABLE'));
  });

  it('without a cache, a store failure fails closed at once', async () => {
    sessions = manager();
    const s = await signIn();
    await sessions.lookup(s.id);
    store.failGets = true;
    await assert.rejects(sessions.lookup(s.id), (e) => isPortcullisError(e, 'PC_STORE_UNAVAILABLE'));
  });
});

describe('cookie name', () => {
  it('is __Host- prefixed over https and plainly named over http', () => {
    assert.equal(sessionCookieName(true), '__Host-portcullis');
    assert.equal(sessionCookieName(false), 'portcullis_dev_session');
  });
});
