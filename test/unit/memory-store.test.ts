/**
 * The single-instance stores: sessions and rate tables in memory (bounded, expiring on the
 * injected clock), and durable state in data_dir/state.json.
 */
import { strict as assert } from 'node:assert';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ManualClock } from '../../src/clock.js';
import { isPortcullisError } from '../../src/errors.js';
import type { SessionRecord, StateStore } from '../../src/store/ports.js';
import { MAX_MEMBERS_PER_KEY, createMemoryStores } from '../../src/store/memory.js';
import { FileStateStore, MAX_KNOWN_NETWORKS } from '../../src/store/file-state.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const MIN = 60_000;
const dirs: TmpDir[] = [];
after(async () => {
  for (const d of dirs) await d.cleanup();
});
async function freshDir(): Promise<string> {
  const d = await tmpDir('pc-state-');
  dirs.push(d);
  return d.dir;
}

/** The memory stores never touch the state store in these tests. */
const unusedState = new Proxy({} as StateStore, {
  get: () => () => Promise.reject(new Error('state store not expected here')),
});

function rec(user: string, extra: Partial<SessionRecord> = {}): SessionRecord {
  return { user, amr: ['pwd'], pending: 'none', createdAt: 0, lastSeenAt: 0, ip: '192.0.2.1', csrf: 'c', ...extra };
}

describe('memory SessionStore', () => {
  it('expires sessions on the injected clock', async () => {
    const clock = new ManualClock();
    const { sessions } = createMemoryStores({ clock, state: unusedState });
    await sessions.set('s1', rec('alice'), 30 * MIN);
    assert.equal((await sessions.get('s1'))?.user, 'alice');
    clock.advance(30 * MIN - 1);
    assert.ok(await sessions.get('s1'));
    clock.advance(1);
    assert.equal(await sessions.get('s1'), null);
    assert.deepEqual(await sessions.list(), []);
  });

  it('stores a frozen copy: no caller can change a stored record, before or after reading it', async () => {
    const { sessions } = createMemoryStores({ clock: new ManualClock(), state: unusedState });
    const r = rec('alice', { pending: 'mfa' });
    await sessions.set('s1', r, MIN);
    r.pending = 'none';
    r.amr.push('otp');
    const got = (await sessions.get('s1'))!;
    assert.equal(got.pending, 'mfa');
    assert.throws(() => got.amr.push('otp'), TypeError);
    assert.throws(() => {
      got.pending = 'none';
    }, TypeError);
    assert.deepEqual((await sessions.get('s1'))!.amr, ['pwd']);
    assert.equal((await sessions.get('s1'))!.pending, 'mfa');
  });

  it('lists and revokes by user, and tells every listener', async () => {
    const clock = new ManualClock();
    const { sessions } = createMemoryStores({ clock, state: unusedState });
    const heard: Array<[string, string | undefined]> = [];
    sessions.onRevoked(() => {
      throw new Error('a broken listener');
    });
    sessions.onRevoked((id, user) => heard.push([id, user]));
    await sessions.set('a1', rec('alice'), MIN);
    await sessions.set('a2', rec('alice'), MIN);
    await sessions.set('b1', rec('bob'), MIN);
    await sessions.set('old', rec('alice'), 1);
    clock.advance(1);

    assert.deepEqual((await sessions.list('alice')).map((s) => s.idHash).sort(), ['a1', 'a2']);
    assert.equal(await sessions.deleteByUser('alice'), 2, 'the expired one is not counted');
    assert.deepEqual(heard.sort(), [['a1', 'alice'], ['a2', 'alice']]);
    assert.equal(await sessions.get('a1'), null);

    assert.equal(await sessions.delete('b1'), true);
    assert.equal(await sessions.delete('b1'), false);
    assert.deepEqual(heard.at(-1), ['b1', 'bob']);

    await sessions.set('c1', rec('carol'), MIN);
    assert.equal(await sessions.deleteAll(), 1);
    assert.deepEqual(heard.at(-1), ['*', undefined]);
    assert.deepEqual(await sessions.list(), []);
  });

  it('holds at most maxSessions, dropping the least recently used', async () => {
    const { sessions } = createMemoryStores({ clock: new ManualClock(), maxSessions: 3, state: unusedState });
    for (const id of ['s1', 's2', 's3']) await sessions.set(id, rec(id), MIN);
    await sessions.get('s1'); // s1 in use
    await sessions.set('s4', rec('s4'), MIN);
    assert.equal(sessions.size, 3);
    assert.equal(await sessions.get('s2'), null);
    assert.ok(await sessions.get('s1'));
    assert.ok(await sessions.get('s4'));
  });
});

describe('memory RateStore', () => {
  it('counts in a fixed window that starts at the first event', async () => {
    const { rates } = createMemoryStores({ clock: new ManualClock(), state: unusedState });
    assert.equal(await rates.hit('k', 1000, 0), 1);
    assert.equal(await rates.hit('k', 1000, 500), 2);
    assert.equal(await rates.hit('k', 1000, 999), 3);
    assert.equal(await rates.count('k', 999), 3);
    assert.equal(await rates.count('k', 1000), 0);
    assert.equal(await rates.hit('k', 1000, 1000), 1, 'a new window');
    await rates.reset('k');
    assert.equal(await rates.count('k', 1000), 0);
  });

  it('counts distinct members, exactly up to the per-key cap and never low past it', async () => {
    const { rates } = createMemoryStores({ clock: new ManualClock(), state: unusedState });
    assert.equal(await rates.hit('spray', 60_000, 0, 'alice'), 1);
    assert.equal(await rates.hit('spray', 60_000, 1, 'alice'), 1);
    assert.equal(await rates.hit('spray', 60_000, 2, 'bob'), 2);
    assert.equal(await rates.hit('spray', 60_000, 3, 'alice'), 2);
    for (let i = 3; i <= MAX_MEMBERS_PER_KEY; i++) await rates.hit('spray', 60_000, 4, `u${i}`);
    assert.equal(await rates.count('spray', 5), MAX_MEMBERS_PER_KEY);
    assert.equal(await rates.hit('spray', 60_000, 5, 'u500'), MAX_MEMBERS_PER_KEY, 'remembered members still count once');
    assert.equal(await rates.hit('spray', 60_000, 5, 'one-more'), MAX_MEMBERS_PER_KEY + 1);
    assert.equal(await rates.hit('spray', 60_000, 5, 'one-more'), MAX_MEMBERS_PER_KEY + 2, 'past the cap the count errs high');
  });

  it('keeps at most maxRateKeys counters, and the one in use survives', async () => {
    const { rates } = createMemoryStores({ clock: new ManualClock(), maxRateKeys: 100, state: unusedState });
    await rates.hit('attacker', MIN, 0);
    for (let i = 0; i < 10_000; i++) {
      await rates.hit(`spoofed-${i}`, MIN, 0);
      if (i % 50 === 0) await rates.hit('attacker', MIN, 0);
    }
    assert.equal(rates.sizes.counters, 100);
    assert.equal(await rates.count('attacker', 0), 201);
  });

  it('blocks until a time, lists and lifts blocks', async () => {
    const clock = new ManualClock(0);
    const { rates } = createMemoryStores({ clock, state: unusedState });
    await rates.block('ip:a', 1000, 'ip');
    await rates.block('ip:b', 500, 'spray');
    assert.deepEqual(await rates.blockedUntil('ip:a', 999), { until: 1000, reason: 'ip' });
    assert.equal(await rates.blockedUntil('ip:a', 1000), null);
    assert.deepEqual(await rates.listBlocks(0), [
      { key: 'ip:b', until: 500, reason: 'spray' },
    ]);
    await rates.block('ip:a', 2000, 'spray');
    await rates.block('ip:a', 1500, 'ip');
    assert.deepEqual(await rates.blockedUntil('ip:a', 600), { until: 2000, reason: 'spray' }, 'a block never shortens');
    assert.deepEqual((await rates.listBlocks(600)).map((b) => b.key), ['ip:a']);
    assert.equal(await rates.unblock('ip:a'), true);
    assert.equal(await rates.unblock('ip:a'), false);
    assert.equal(await rates.blockedUntil('ip:a', 600), null);
  });

  it('claim is check-and-set: one winner among concurrent claimants, free again after the TTL', async () => {
    const { rates } = createMemoryStores({ clock: new ManualClock(), state: unusedState });
    const results = await Promise.all(Array.from({ length: 20 }, () => rates.claim('totp:alice:123', 90_000, 0)));
    assert.equal(results.filter(Boolean).length, 1);
    assert.equal(await rates.claim('totp:alice:123', 90_000, 89_999), false);
    assert.equal(await rates.claim('totp:alice:123', 90_000, 90_000), true);
  });

  it('refuses a claim rather than forget a live one when the table is full', async () => {
    const { rates } = createMemoryStores({ clock: new ManualClock(), maxRateKeys: 10, state: unusedState });
    for (let i = 0; i < 10; i++) assert.equal(await rates.claim(`c${i}`, 1000, 0), true);
    assert.equal(await rates.claim('c-new', 1000, 500), false, 'fail closed');
    assert.equal(await rates.claim('c0', 1000, 500), false, 'the live claim is still there');
    assert.equal(await rates.claim('c-new', 1000, 1000), true, 'once the old ones expire there is room');
  });
});

describe('FileStateStore', () => {
  it('persists across reopening, in a 0600 file, leaving no temp files', async () => {
    const dir = await freshDir();
    const s = await FileStateStore.open(dir);
    await s.setTotp('alice', { secret: 'sealed', enrolledAt: 1, source: 'enrolled' });
    await s.setRecoveryCodes('alice', ['h1', 'h2']);
    await s.addAppPassword('alice', { label: 'phone', hash: 'x', createdAt: 2 });
    await s.addKnownNetwork('alice', '192.0.2.0/24');
    await s.setLockdown({ on: true, since: 3, by: 'admin' });
    await s.setTotp('__proto__', { secret: 'odd name', enrolledAt: 4, source: 'provisioned' });
    await s.close();

    const st = await stat(join(dir, 'state.json'));
    assert.equal(st.mode & 0o777, 0o600);
    assert.deepEqual(await readdir(dir), ['state.json']);

    const r = await FileStateStore.open(dir);
    assert.deepEqual(await r.getTotp('alice'), { secret: 'sealed', enrolledAt: 1, source: 'enrolled' });
    assert.equal(await r.countRecoveryCodes('alice'), 2);
    assert.deepEqual(await r.listAppPasswords('alice'), [{ label: 'phone', hash: 'x', createdAt: 2 }]);
    assert.deepEqual(await r.knownNetworks('alice'), ['192.0.2.0/24']);
    assert.deepEqual(await r.getLockdown(), { on: true, since: 3, by: 'admin' });
    assert.equal((await r.getTotp('__proto__'))?.secret, 'odd name');
    assert.equal(await r.getTotp('constructor'), null);
    await r.forgetUser('alice');
    assert.equal(await r.getTotp('alice'), null);
    assert.equal(await r.countRecoveryCodes('alice'), 0);
    await r.close();
  });

  it('keeps the 50 most recently used networks per user', async () => {
    const s = await FileStateStore.open(await freshDir());
    for (let i = 0; i < 60; i++) assert.equal(await s.addKnownNetwork('alice', `10.0.${i}.0/24`), true);
    assert.equal(await s.addKnownNetwork('alice', '10.0.59.0/24'), false, 'already known');
    let nets = await s.knownNetworks('alice');
    assert.equal(nets.length, MAX_KNOWN_NETWORKS);
    assert.ok(!nets.includes('10.0.9.0/24') && nets.includes('10.0.10.0/24'));
    assert.equal(await s.addKnownNetwork('alice', '10.0.10.0/24'), false);
    await s.addKnownNetwork('alice', '10.1.0.0/24');
    nets = await s.knownNetworks('alice');
    assert.ok(nets.includes('10.0.10.0/24'), 'using a network again makes it recent');
    assert.ok(!nets.includes('10.0.11.0/24'));
  });

  it('serialises concurrent mutations: nothing is lost, a recovery code is used once', async () => {
    const dir = await freshDir();
    const s = await FileStateStore.open(dir);
    await s.setRecoveryCodes('alice', ['code-1', 'code-2']);
    const labels = Array.from({ length: 30 }, (_, i) => `device-${i}`);
    const [uses] = await Promise.all([
      Promise.all(Array.from({ length: 10 }, () => s.consumeRecoveryCode('alice', 'code-1'))),
      Promise.all(labels.map((label, i) => s.addAppPassword('alice', { label, hash: `h${i}`, createdAt: i }))),
    ]);
    assert.equal(uses.filter(Boolean).length, 1);
    await s.close();
    const r = await FileStateStore.open(dir);
    assert.deepEqual((await r.listAppPasswords('alice')).map((p) => p.label).sort(), [...labels].sort());
    assert.equal(await r.countRecoveryCodes('alice'), 1);
    await assert.rejects(r.addAppPassword('alice', { label: 'device-3', hash: 'dup', createdAt: 0 }), (e) => isPortcullisError(e, 'PC_BAD_REQUEST'));
    assert.equal(await r.revokeAppPassword('alice', 'device-3'), true);
    assert.equal(await r.revokeAppPassword('alice', 'device-3'), false);
  });

  it('sees changes another process made to the file, and does not overwrite them', async () => {
    const dir = await freshDir();
    const clock = new ManualClock();
    const gateway = await FileStateStore.open(dir, { clock });
    await gateway.setTotp('alice', { secret: 'old', enrolledAt: 1, source: 'enrolled' });
    const cli = await FileStateStore.open(dir);
    await cli.setTotp('alice', null); // `portcullis totp reset alice`

    // a write checks the file first, so it cannot resurrect the old secret
    await gateway.addKnownNetwork('alice', '192.0.2.0/24');
    assert.equal(await gateway.getTotp('alice'), null);
    const fresh = await FileStateStore.open(dir);
    assert.equal(await fresh.getTotp('alice'), null, 'the reset survived the gateway writing');
    assert.deepEqual(await fresh.knownNetworks('alice'), ['192.0.2.0/24']);

    // reads look at the file at most once per recheckMs
    await cli.setTotp('alice', { secret: 'new', enrolledAt: 2, source: 'provisioned' });
    clock.advance(999);
    assert.equal(await gateway.getTotp('alice'), null, 'within the second, the loaded copy');
    clock.advance(1);
    assert.equal((await gateway.getTotp('alice'))?.secret, 'new');
  });

  it('refuses to open a damaged file rather than start empty, and leaves it alone', async () => {
    const dir = await freshDir();
    const file = join(dir, 'state.json');
    for (const text of ['{"version":1,"users":{"alice":{"totp":', '{"version":1,"users":{"alice":{"totp":{"secret":5}}}}', '[]']) {
      await writeFile(file, text, { mode: 0o600 });
      await assert.rejects(FileStateStore.open(dir), (e) => isPortcullisError(e, 'PC_STORE_UNAVAILABLE') && /damaged/.test((e as Error).message));
      assert.equal(await readFile(file, 'utf8'), text);
    }
  });

  it('removes temp files left by a writer that died', async () => {
    const dir = await freshDir();
    // pid 2^22+1 is above Linux's pid_max default range and never running
    await writeFile(join(dir, 'state.json.4194305.1.tmp'), '{"partial');
    const s = await FileStateStore.open(dir);
    assert.deepEqual(await readdir(dir), []);
    assert.deepEqual(await s.knownNetworks('alice'), []);
  });
});
