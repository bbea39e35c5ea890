/**
 * Passkey credentials in both durable stores (issue 13): the file state (memory stores use it)
 * and Redis (two instances on one Redis, db from $REDIS_URL, a random key prefix). The same
 * contract: bounded per user, ids unique, the counter compared and moved atomically (a counter
 * that does not move forward is `cloned` and changes nothing), rename, remove, forgetUser; and a
 * session record carrying a ceremony's challenge survives the Redis round trip; each credential id
 * has one owner, found by `passkeyOwner` (passwordless sign-in).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { ManualClock } from '../../src/clock.js';
import { FileStateStore } from '../../src/store/file-state.js';
import type { PasskeyRecord, StateStore } from '../../src/store/ports.js';
import { createRedisStores, type RedisStores, type Sealer } from '../../src/store/redis.js';
import { tmpDir } from '../helpers/tmp.js';

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

const key = (id: string, counter = 0, transports: string[] = ['internal']): PasskeyRecord => ({
  id,
  publicKey: `sealed-${id}`,
  counter,
  transports,
  name: `key ${id}`,
  createdAt: 1_700_000_000_000 + id.length,
});

/** The contract, run against one store (and, when given, a second view of it). */
function contract(name: string, open: () => { a: StateStore; b: StateStore }) {
  test(`${name}: add, list, bound, unique ids`, async () => {
    const { a, b } = open();
    assert.equal(await a.addPasskey('u1', key('k1', 0, []), 3), true);
    assert.equal(await a.addPasskey('u1', key('k1'), 3), false, 'the same credential twice');
    assert.equal(await a.addPasskey('u1', key('k22'), 3), true);
    assert.equal(await a.addPasskey('u1', key('k333'), 3), true);
    assert.equal(await a.addPasskey('u1', key('k4444'), 3), false, 'past the bound');
    const list = await b.listPasskeys('u1');
    assert.deepEqual(list.map((p) => p.id), ['k1', 'k22', 'k333']);
    assert.deepEqual(list[0]!.transports, [], 'an empty transport list stays a list');
    assert.deepEqual(await b.listPasskeys('nobody'), []);
  });

  test(`${name}: the counter moves forward only; a clone changes nothing`, async () => {
    const { a, b } = open();
    await a.addPasskey('u2', key('c1', 5), 10);
    assert.equal(await a.usePasskey('u2', 'c1', 6, 1000), 'ok');
    assert.equal(await b.usePasskey('u2', 'c1', 6, 2000), 'cloned', 'the same counter again');
    assert.equal(await b.usePasskey('u2', 'c1', 3, 3000), 'cloned', 'a counter going backwards');
    const [p] = await a.listPasskeys('u2');
    assert.equal(p!.counter, 6);
    assert.equal(p!.lastUsedAt, 1000);
    assert.equal(await a.usePasskey('u2', 'missing', 1, 1), 'gone');
    // counterless authenticators (0 on both sides) are not clones
    await a.addPasskey('u2', key('z0', 0), 10);
    assert.equal(await a.usePasskey('u2', 'z0', 0, 4000), 'ok');
    assert.equal(await b.usePasskey('u2', 'z0', 0, 5000), 'ok');
    assert.equal((await a.listPasskeys('u2')).find((x) => x.id === 'z0')!.lastUsedAt, 5000);
  });

  test(`${name}: rename, remove, forget`, async () => {
    const { a, b } = open();
    await a.addPasskey('u3', key('r1'), 10);
    await a.addPasskey('u3', key('r2'), 10);
    assert.equal(await b.renamePasskey('u3', 'r1', 'YubiKey "5" <nfc>'), true);
    assert.equal(await b.renamePasskey('u3', 'nope', 'x'), false);
    assert.equal((await a.listPasskeys('u3'))[0]!.name, 'YubiKey "5" <nfc>');
    assert.equal(await a.removePasskey('u3', 'r1'), true);
    assert.equal(await a.removePasskey('u3', 'r1'), false);
    assert.deepEqual((await b.listPasskeys('u3')).map((p) => p.id), ['r2']);
    await a.forgetUser('u3');
    assert.deepEqual(await b.listPasskeys('u3'), []);
  });

  test(`${name}: the owner of a credential id (passwordless), one owner per id`, async () => {
    const { a, b } = open();
    assert.equal(await a.addPasskey('u5', key('o1'), 10), true);
    assert.equal(await a.addPasskey('u5', key('o2'), 10), true);
    assert.equal(await b.passkeyOwner('o1'), 'u5');
    assert.equal(await b.passkeyOwner('nope'), null);
    assert.equal(await b.passkeyOwner(''), null);
    assert.equal(await b.addPasskey('u6', key('o1'), 10), false, 'another user cannot register the same credential id');
    assert.equal(await a.passkeyOwner('o1'), 'u5', 'and the owner stays');
    assert.equal(await a.removePasskey('u5', 'o1'), true);
    assert.equal(await b.passkeyOwner('o1'), null, 'removed: no owner');
    assert.equal(await b.addPasskey('u6', key('o1'), 10), true, 'a free id may be registered again');
    assert.equal(await a.passkeyOwner('o1'), 'u6');
    await a.forgetUser('u5');
    assert.equal(await b.passkeyOwner('o2'), null, 'a forgotten user owns nothing');
    assert.equal(await b.passkeyOwner('o1'), 'u6', 'another user\'s entry is kept');
  });
}

describe('file state', async () => {
  const dir = await tmpDir('pc-passkeys');
  let s: FileStateStore;
  let s2: FileStateStore;
  before(async () => {
    s = await FileStateStore.open(dir.dir, { recheckMs: 0 });
    s2 = await FileStateStore.open(dir.dir, { recheckMs: 0 });
  });
  after(async () => {
    await s.close();
    await s2.close();
    await dir.cleanup();
  });
  contract('file state (two processes on one file)', () => ({ a: s, b: s2 }));
  test('file state: passkeys survive a reopen', async () => {
    const again = await FileStateStore.open(dir.dir);
    assert.deepEqual((await again.listPasskeys('u1')).map((p) => p.id), ['k1', 'k22', 'k333']);
    await again.close();
  });
});

describe('Redis', () => {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/12';
  const prefix = `pc-passkey-${randomBytes(6).toString('hex')}:`;
  const clock = new ManualClock();
  const box = testBox();
  let a: RedisStores;
  let b: RedisStores;
  before(async () => {
    a = await createRedisStores({ url, prefix, clock, box });
    b = await createRedisStores({ url, prefix, clock, box });
  });
  after(async () => {
    await a?.close();
    await b?.close();
    const raw = new Redis(url);
    const keys = await raw.keys(`${prefix}*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
  });
  contract('Redis (two instances)', () => ({ a: a.state, b: b.state }));
  test('Redis: a session carrying a passkey challenge and amr hwk round-trips', async () => {
    const rec = {
      user: 'u9',
      amr: ['pwd' as const, 'hwk' as const],
      pending: 'none' as const,
      createdAt: clock.now(),
      lastSeenAt: clock.now(),
      ip: '192.0.2.1',
      csrf: 'x',
      passkeyChallenge: { challenge: 'abc', kind: 'authenticate' as const, expiresAt: clock.now() + 300_000 },
    };
    await a.sessions.set('h1', rec, 60_000);
    assert.deepEqual(await b.sessions.get('h1'), rec);
  });
});
