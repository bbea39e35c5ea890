/**
 * The Redis stores make several gateway instances act as one: what one instance writes the
 * other reads, counters and claims are exact under concurrency, revocations and lockdown
 * reach every instance, and an unreachable Redis fails closed and fast, then heals itself.
 *
 * Shared-state tests run against the Redis at $REDIS_URL (default redis://127.0.0.1:6379/0)
 * under a random key prefix that is deleted afterwards. Outage tests run their own
 * redis-server so they can stop, freeze and restart it.
 */
import { after, before, describe, test } from 'node:test';
import { strict as assert } from 'node:assert';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { ManualClock } from '../../src/clock.js';
import { isPortcullisError } from '../../src/errors.js';
import type { SessionRecord } from '../../src/store/ports.js';
import { createRedisStores, type LockdownState, type RedisStores, type Sealer } from '../../src/store/redis.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

/** AES-256-GCM with associated data, as the gateway's SecretBox does it. */
function testBox(key: Buffer = randomBytes(32)): Sealer {
  return {
    seal(plaintext, aad) {
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', key, iv);
      c.setAAD(Buffer.from(aad, 'utf8'));
      const ct = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
      return Buffer.concat([iv, c.getAuthTag(), ct]).toString('base64url');
    },
    open(sealed, aad) {
      const b = Buffer.from(sealed, 'base64url');
      const d = createDecipheriv('aes-256-gcm', key, b.subarray(0, 12));
      d.setAAD(Buffer.from(aad, 'utf8'));
      d.setAuthTag(b.subarray(12, 28));
      return Buffer.concat([d.update(b.subarray(28)), d.final()]).toString('utf8');
    },
  };
}

function session(user: string, clock: ManualClock, extra: Partial<SessionRecord> = {}): SessionRecord {
  return {
    user,
    amr: ['pwd', 'otp'],
    pending: 'none',
    createdAt: clock.now(),
    lastSeenAt: clock.now(),
    ip: '192.0.2.10',
    csrf: randomBytes(16).toString('base64url'),
    rd: 'https://mail.example.org/owa/',
    ...extra,
  };
}

/** Resolve when `check()` holds, polling each few ms; fail after `ms`. */
async function eventually(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function deleteKeys(raw: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await raw.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length) await raw.del(...keys);
  } while (cursor !== '0');
}

/** $REDIS_URL, or the default local Redis, or (when neither is set up) a private server. */
async function sharedRedis(): Promise<{ url: string; server: RedisServer | null }> {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';
  const probe = new Redis(url, { lazyConnect: true, enableOfflineQueue: false, connectTimeout: 1000, retryStrategy: () => null });
  probe.on('error', () => {});
  try {
    await probe.connect();
    await probe.ping();
    return { url, server: null };
  } catch (e) {
    if (process.env.REDIS_URL) throw e; // asked for explicitly: its absence is a failure
    const server = await startRedis();
    return { url: server.url, server };
  } finally {
    probe.disconnect();
  }
}

describe('Redis stores: two instances on one Redis', () => {
  const prefix = `pc-test-${randomBytes(6).toString('hex')}:`;
  const clock = new ManualClock();
  const box = testBox();
  let server: RedisServer | null = null;
  let raw: Redis;
  let a: RedisStores;
  let b: RedisStores;

  before(async () => {
    const shared = await sharedRedis();
    server = shared.server;
    raw = new Redis(shared.url);
    a = await createRedisStores({ url: shared.url, prefix, clock, box });
    b = await createRedisStores({ url: shared.url, prefix, clock, box });
  });

  after(async () => {
    await a?.close();
    await b?.close();
    if (raw) {
      await deleteKeys(raw, prefix);
      await raw.quit();
    }
    await server?.stop();
  });

  test('a session written by one instance is read by the other', async () => {
    assert.equal(a.healthy(), true);
    const rec = session('alice', clock);
    await a.sessions.set('id-hash-1', rec, 60_000);
    assert.deepEqual(await b.sessions.get('id-hash-1'), rec);
    assert.equal(await b.sessions.get('id-hash-unknown'), null);
    const enrolling = session('alice', clock, { pending: 'enrol', amr: ['pwd'], enrolSecret: 'sealed-candidate', mustChangePassword: true });
    await b.sessions.set('id-hash-1', enrolling, 60_000);
    assert.deepEqual(await a.sessions.get('id-hash-1'), enrolling);
  });

  test('Redis holds neither the CSRF secret nor a readable record, and every session key expires', async () => {
    const rec = session('alice', clock);
    await a.sessions.set('id-hash-2', rec, 60_000);
    const stored = await raw.hgetall(`${prefix}s:id-hash-2`);
    assert.equal(stored.u, 'alice');
    assert.ok(stored.r && !stored.r.includes(rec.csrf) && !stored.r.includes('192.0.2.10'));
    const ttl = await raw.pttl(`${prefix}s:id-hash-2`);
    assert.ok(ttl > 0 && ttl <= 60_000, `session ttl ${ttl}`);
    const indexTtl = await raw.pttl(`${prefix}su:alice`);
    assert.ok(indexTtl > 0 && indexTtl <= 60_000, `index ttl ${indexTtl}`);
  });

  test('a record forged, altered or moved to another id in Redis is not a session', async () => {
    const rec = session('alice', clock);
    await a.sessions.set('id-hash-3', rec, 60_000);
    const sealed = await raw.hget(`${prefix}s:id-hash-3`, 'r');
    assert.ok(sealed);
    // Someone with write access to Redis copies alice's record under an id they hold.
    await raw.hset(`${prefix}s:attacker-id`, 'u', 'alice', 'r', sealed);
    assert.equal(await b.sessions.get('attacker-id'), null);
    // ...or relabels it as another user's, or writes a plain record.
    await raw.hset(`${prefix}s:id-hash-3`, 'u', 'admin');
    assert.equal(await b.sessions.get('id-hash-3'), null);
    await raw.hset(`${prefix}s:id-hash-3`, 'u', 'alice', 'r', JSON.stringify({ ...rec, user: 'alice' }));
    assert.equal(await b.sessions.get('id-hash-3'), null);
    await raw.del(`${prefix}s:attacker-id`);
  });

  test('a session whose lifetime is over is dropped, not stored', async () => {
    await a.sessions.set('id-hash-4', session('carol', clock), 60_000);
    await a.sessions.set('id-hash-4', session('carol', clock), 0);
    assert.equal(await b.sessions.get('id-hash-4'), null);
    assert.deepEqual(await b.sessions.list('carol'), []);
  });

  test('deleteByUser on one instance revokes on the other: its listeners hear every id once', async () => {
    const heardByB: Array<[string, string | undefined]> = [];
    const heardByA: Array<[string, string | undefined]> = [];
    b.sessions.onRevoked((id, user) => heardByB.push([id, user]));
    a.sessions.onRevoked((id, user) => heardByA.push([id, user]));
    await a.sessions.set('ivan-1', session('ivan', clock), 60_000);
    await a.sessions.set('ivan-2', session('ivan', clock), 60_000);
    await b.sessions.set('judy-1', session('judy', clock), 60_000);
    assert.deepEqual((await b.sessions.list('ivan')).map((s) => s.idHash).sort(), ['ivan-1', 'ivan-2']);

    assert.equal(await a.sessions.deleteByUser('ivan'), 2);
    // The instance that revoked knows at once; the other hears it over pub/sub.
    assert.deepEqual(heardByA.sort(), [['ivan-1', 'ivan'], ['ivan-2', 'ivan']]);
    await eventually(() => heardByB.length >= 2, 2000, 'the revocation on B');
    assert.deepEqual(heardByB.sort(), [['ivan-1', 'ivan'], ['ivan-2', 'ivan']]);
    assert.equal(await b.sessions.get('ivan-1'), null);
    assert.equal(await b.sessions.get('ivan-2'), null);
    assert.deepEqual(await b.sessions.list('ivan'), []);
    assert.ok(await b.sessions.get('judy-1'), "judy's session is untouched");

    // B revokes judy; once A has heard that, it has also seen its own ivan broadcast (same
    // channel, in order) and must not have notified its listeners a second time.
    assert.equal(await b.sessions.delete('judy-1'), true);
    assert.equal(await b.sessions.delete('judy-1'), false);
    await eventually(() => heardByA.some(([id]) => id === 'judy-1'), 2000, 'the revocation on A');
    assert.deepEqual(heardByA.sort(), [['ivan-1', 'ivan'], ['ivan-2', 'ivan'], ['judy-1', 'judy']]);
    assert.deepEqual(heardByB.sort(), [['ivan-1', 'ivan'], ['ivan-2', 'ivan'], ['judy-1', 'judy']]);
    assert.equal(await a.sessions.deleteByUser('ivan'), 0);
  });

  test('list() without a user finds every session; deleteAll() removes them all and is heard as *', async () => {
    await a.sessions.deleteAll();
    const heardByB: string[] = [];
    b.sessions.onRevoked((id) => heardByB.push(id));
    for (let i = 0; i < 30; i++) await (i % 2 ? a : b).sessions.set(`many-${i}`, session(`user-${i % 3}`, clock), 60_000);
    const all = await b.sessions.list();
    assert.equal(all.length, 30);
    assert.deepEqual(new Set(all.map((s) => s.rec.user)), new Set(['user-0', 'user-1', 'user-2']));

    assert.equal(await a.sessions.deleteAll(), 30);
    await eventually(() => heardByB.includes('*'), 2000, 'the revocation of all sessions on B');
    assert.deepEqual(await b.sessions.list(), []);
    assert.deepEqual(await b.sessions.list('user-1'), []);
    assert.equal(await b.sessions.deleteByUser('user-1'), 0);
  });

  test('200 failures counted from two instances at once add up to exactly 200', async () => {
    const now = clock.now();
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).rates.hit('ip:198.51.100.7', 15 * 60_000, now)),
    );
    // Every hit saw a distinct count: no two instances ever read-modify-wrote the same value.
    assert.deepEqual(
      [...results].sort((x, y) => x - y),
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    assert.equal(await a.rates.count('ip:198.51.100.7', now), 200);
    assert.equal(await b.rates.count('ip:198.51.100.7', now), 200);
    const ttl = await raw.pttl(`${prefix}r:ip:198.51.100.7`);
    assert.ok(ttl > 0 && ttl <= 15 * 60_000);
  });

  test('a window starts at the first failure and ends a window later', async () => {
    const t0 = clock.now();
    assert.equal(await a.rates.hit('user:dave', 60_000, t0), 1);
    assert.equal(await b.rates.hit('user:dave', 60_000, t0 + 59_000), 2);
    assert.equal(await a.rates.count('user:dave', t0 + 59_999), 2);
    assert.equal(await a.rates.count('user:dave', t0 + 60_000), 0);
    assert.equal(await b.rates.hit('user:dave', 60_000, t0 + 60_000), 1, 'a new window');
    await a.rates.reset('user:dave');
    assert.equal(await b.rates.count('user:dave', t0 + 60_000), 0);
  });

  test('distinct user names from one address are counted once each, across instances', async () => {
    const now = clock.now();
    const names = Array.from({ length: 20 }, (_, i) => `sprayed-user-${i}`);
    const results = await Promise.all(
      [...names, ...names].map((name, i) => (i % 2 ? a : b).rates.hit('spray:203.0.113.9', 10 * 60_000, now, name)),
    );
    assert.ok(results.every((n) => n >= 1 && n <= 20));
    assert.equal(await b.rates.count('spray:203.0.113.9', now), 20);
    assert.equal(await a.rates.hit('spray:203.0.113.9', 10 * 60_000, now, 'sprayed-user-3'), 20);
    assert.equal(await a.rates.hit('spray:203.0.113.9', 10 * 60_000, now, 'someone-else'), 21);
    // What was typed as a user name (sometimes a password) is not kept in clear.
    const fields = await raw.hkeys(`${prefix}r:spray:203.0.113.9`);
    assert.ok(!fields.some((f) => f.includes('sprayed-user') || f.includes('someone-else')));
  });

  test('a TOTP step is claimed exactly once across instances', async () => {
    const now = clock.now();
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).rates.claim('totp:alice:58919220', 90_000, now)),
    );
    assert.equal(results.filter(Boolean).length, 1);
    assert.equal(await a.rates.claim('totp:alice:58919221', 90_000, now), true);
    const ttl = await raw.pttl(`${prefix}c:totp:alice:58919220`);
    assert.ok(ttl > 0 && ttl <= 90_000);
  });

  test('blocks are seen, listed and lifted from any instance, and end on time', async () => {
    const now = clock.now();
    await a.rates.block('ip:192.0.2.66', now + 60_000, 'per_ip');
    await a.rates.block('user:erin', now + 120_000, 'locked_out');
    assert.deepEqual(await b.rates.blockedUntil('ip:192.0.2.66', now), { until: now + 60_000, reason: 'per_ip' });
    assert.deepEqual(await b.rates.listBlocks(now), [
      { key: 'ip:192.0.2.66', until: now + 60_000, reason: 'per_ip' },
      { key: 'user:erin', until: now + 120_000, reason: 'locked_out' },
    ]);
    // A shorter block does not cut a longer one short.
    await b.rates.block('user:erin', now + 30_000, 'per_user');
    assert.deepEqual(await a.rates.blockedUntil('user:erin', now), { until: now + 120_000, reason: 'locked_out' });
    const ttl = await raw.pttl(`${prefix}b:user:erin`);
    assert.ok(ttl > 60_000 && ttl <= 120_000);

    assert.equal(await b.rates.unblock('ip:192.0.2.66'), true);
    assert.equal(await a.rates.unblock('ip:192.0.2.66'), false);
    assert.equal(await a.rates.blockedUntil('ip:192.0.2.66', now), null);
    assert.deepEqual(
      (await a.rates.listBlocks(now)).map((x) => x.key),
      ['user:erin'],
    );
    assert.equal(await a.rates.blockedUntil('user:erin', now + 120_000), null, 'over at until');
    assert.deepEqual(await b.rates.listBlocks(now + 120_000), []);
  });

  test('credentials written by one instance are used by the other; a recovery code works once', async () => {
    await a.state.setTotp('frank', { secret: 'sealed-secret', enrolledAt: clock.now(), source: 'enrolled' });
    assert.deepEqual(await b.state.getTotp('frank'), { secret: 'sealed-secret', enrolledAt: clock.now(), source: 'enrolled' });
    await b.state.setTotp('frank', null);
    assert.equal(await a.state.getTotp('frank'), null);

    await a.state.setRecoveryCodes('frank', ['h1', 'h2', 'h3']);
    assert.equal(await b.state.countRecoveryCodes('frank'), 3);
    const uses = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).state.consumeRecoveryCode('frank', 'h2')));
    assert.equal(uses.filter(Boolean).length, 1);
    assert.equal(await a.state.countRecoveryCodes('frank'), 2);
    await b.state.setRecoveryCodes('frank', ['h9']);
    assert.equal(await a.state.consumeRecoveryCode('frank', 'h1'), false, 'replaced codes are gone');
    assert.equal(await a.state.consumeRecoveryCode('frank', 'h9'), true);

    await a.state.addAppPassword('frank', { label: 'phone', hash: '$argon2id$phone', createdAt: 1 });
    await b.state.addAppPassword('frank', { label: 'laptop', hash: '$argon2id$laptop', createdAt: 2 });
    await a.state.addAppPassword('frank', { label: 'phone', hash: '$argon2id$phone', createdAt: 1, lastUsedAt: 5 });
    assert.deepEqual(await b.state.listAppPasswords('frank'), [
      { label: 'phone', hash: '$argon2id$phone', createdAt: 1, lastUsedAt: 5 },
      { label: 'laptop', hash: '$argon2id$laptop', createdAt: 2 },
    ]);
    assert.equal(await b.state.revokeAppPassword('frank', 'phone'), true);
    assert.equal(await a.state.revokeAppPassword('frank', 'phone'), false);

    assert.equal(await a.state.addKnownNetwork('frank', '192.0.2.0/24'), true);
    assert.equal(await b.state.addKnownNetwork('frank', '192.0.2.0/24'), false);
    assert.deepEqual(await b.state.knownNetworks('frank'), ['192.0.2.0/24']);

    await b.state.forgetUser('frank');
    assert.equal(await a.state.countRecoveryCodes('frank'), 0);
    assert.deepEqual(await a.state.listAppPasswords('frank'), []);
    assert.deepEqual(await a.state.knownNetworks('frank'), []);
  });

  test('known networks are capped, keeping the most recently seen', async () => {
    const add = async (i: number): Promise<boolean> => {
      clock.advance(1000);
      return (i % 2 ? a : b).state.addKnownNetwork('grace', `10.0.${i}.0/24`);
    };
    for (let i = 0; i < 50; i++) assert.equal(await add(i), true);
    assert.equal(await add(0), false); // seen again: now the most recent
    for (let i = 50; i < 55; i++) assert.equal(await add(i), true);
    const kept = await b.state.knownNetworks('grace');
    assert.equal(kept.length, 50);
    assert.ok(kept.includes('10.0.0.0/24'), 'the network seen again stays');
    for (let i = 1; i <= 5; i++) assert.ok(!kept.includes(`10.0.${i}.0/24`), `10.0.${i}.0/24 was the least recently seen`);
    assert.equal(kept.at(-1), '10.0.54.0/24');
  });

  test('a lockdown switched on one instance is heard by the other', async () => {
    const heardByB: LockdownState[] = [];
    const heardByA: LockdownState[] = [];
    b.onLockdown((s) => heardByB.push(s));
    a.onLockdown((s) => heardByA.push(s));
    const on = { on: true, since: clock.now(), by: 'admin' };
    await a.state.setLockdown(on);
    assert.deepEqual(heardByA, [on]);
    await eventually(() => heardByB.length === 1, 2000, 'the lockdown on B');
    assert.deepEqual(heardByB, [on]);
    assert.deepEqual(await b.state.getLockdown(), on);
    const off = { on: false, since: clock.now() + 1, by: 'admin' };
    await b.state.setLockdown(off);
    await eventually(() => heardByA.length === 2, 2000, 'the lockdown release on A');
    assert.deepEqual(heardByA, [on, off]);
    assert.deepEqual(heardByB, [on, off]);
  });
});

describe('Redis stores: outages', () => {
  const prefix = `pc-test-${randomBytes(6).toString('hex')}:`;
  const clock = new ManualClock();
  let server: RedisServer;

  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    await server?.stop();
  });

  /** Assert that `p` rejects with PC_STORE_UNAVAILABLE within `ms`. */
  async function unavailableWithin(p: Promise<unknown>, ms: number): Promise<void> {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms);
    });
    try {
      await assert.rejects(Promise.race([p, timeout]), (e: unknown) => isPortcullisError(e, 'PC_STORE_UNAVAILABLE'));
    } finally {
      clearTimeout(timer);
    }
    assert.ok(Date.now() - started < ms);
  }

  test('while Redis is down every call fails fast and closed; when it is back the store heals itself', async () => {
    const states: boolean[] = [];
    const errors: Error[] = [];
    const revoked: string[] = [];
    const stores = await createRedisStores({
      url: server.url,
      prefix,
      clock,
      box: testBox(),
      onStateChange: (up) => states.push(up),
      onError: (e) => errors.push(e),
    });
    try {
      stores.sessions.onRevoked((id) => revoked.push(id));
      await stores.sessions.set('h', session('alice', clock), 60_000);
      assert.equal(await stores.rates.hit('ip:192.0.2.1', 60_000, clock.now()), 1);

      await server.stop();
      const now = clock.now();
      await Promise.all([
        unavailableWithin(stores.sessions.get('h'), 2000),
        unavailableWithin(stores.sessions.set('h2', session('bob', clock), 60_000), 2000),
        unavailableWithin(stores.rates.hit('ip:192.0.2.1', 60_000, now), 2000),
        unavailableWithin(stores.rates.blockedUntil('ip:192.0.2.1', now), 2000),
        unavailableWithin(stores.rates.claim('totp:alice:1', 90_000, now), 2000),
        unavailableWithin(stores.state.getTotp('alice'), 2000),
        unavailableWithin(stores.state.getLockdown(), 2000),
        unavailableWithin(stores.sessions.deleteAll(), 2000),
      ]);
      await eventually(() => !stores.healthy(), 2000, 'healthy() to turn false');
      assert.deepEqual(states, [false]);
      await eventually(() => errors.length >= 1, 2000, 'connection errors to be reported (not thrown)');

      await server.start();
      await eventually(() => stores.healthy(), 10_000, 'the store to reconnect');
      assert.deepEqual(states, [false, true]);
      // Revocations broadcast while we were away may have been missed: caches are told to drop all.
      await eventually(() => revoked.includes('*'), 2000, 'a resynchronising revocation');
      // The restarted server is empty (no persistence): the counter starts again.
      assert.equal(await stores.rates.hit('ip:192.0.2.1', 60_000, clock.now()), 1);
      await stores.sessions.set('h3', session('carol', clock), 60_000);
      assert.equal((await stores.sessions.get('h3'))?.user, 'carol');
    } finally {
      await stores.close();
    }
    await unavailableWithin(stores.sessions.get('h3'), 100);
    assert.equal(stores.healthy(), false);
  });

  test('a Redis that stops answering fails calls after the command timeout, then recovers', async () => {
    const stores = await createRedisStores({ url: server.url, prefix, clock, box: testBox(), commandTimeoutMs: 300 });
    try {
      await server.freeze();
      try {
        await unavailableWithin(stores.rates.hit('ip:192.0.2.2', 60_000, clock.now()), 1000);
        await eventually(() => !stores.healthy(), 3000, 'healthy() to turn false');
      } finally {
        server.thaw();
      }
      await eventually(() => stores.healthy(), 10_000, 'the store to reconnect');
      assert.ok((await stores.rates.hit('ip:192.0.2.2', 60_000, clock.now())) >= 1);
    } finally {
      await stores.close();
    }
  });

  test('creation fails with PC_STORE_UNAVAILABLE when Redis cannot be reached, without echoing the password', async () => {
    const gone = await startRedis();
    await gone.stop();
    const started = Date.now();
    await assert.rejects(
      createRedisStores({
        url: `redis://:hunter2@127.0.0.1:${gone.port}/0`,
        prefix,
        clock,
        box: testBox(),
        connectTimeoutMs: 300,
      }),
      (e: unknown) => isPortcullisError(e, 'PC_STORE_UNAVAILABLE') && !e.message.includes('hunter2') && e.message.includes(String(gone.port)),
    );
    assert.ok(Date.now() - started < 2000);
  });

  test('a store URL that is not redis:// or rediss:// is refused', async () => {
    for (const url of ['http://127.0.0.1:6379', 'not a url', 'memory']) {
      await assert.rejects(createRedisStores({ url, clock, box: testBox() }), (e: unknown) => isPortcullisError(e, 'PC_CONFIG_INVALID'));
    }
  });
});
