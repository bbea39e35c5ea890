/**
 * A flood of spoofed sources against the in-memory throttle tables.
 *
 * An attacker who can vary the source address cheaply (a botnet, an IPv6 allocation, or a
 * misconfigured trusted proxy that believes X-Forwarded-For) sends one failed login from each of a
 * million addresses, against thousands of user names. Each one creates counters; unbounded, that
 * is a memory exhaustion attack on the gateway. The tables must stay at their cap, memory must stay
 * bounded, and the throttle must still block the one source that keeps attacking.
 */
import { strict as assert } from 'node:assert';
import { after, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ManualClock } from '../../src/clock.js';
import type { LoginLimits } from '../../src/config/types.js';
import { LoginThrottle } from '../../src/auth/throttle.js';
import { DEFAULT_MAX_RATE_KEYS, createMemoryStores } from '../../src/store/memory.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const MIN = 60_000;
const LIMITS: LoginLimits = {
  perIp: { maxFailures: 20, windowMs: 15 * MIN, blockMs: 15 * MIN },
  perUser: { maxFailures: 5, windowMs: 15 * MIN, lockoutMs: 15 * MIN },
  spray: { distinctUsers: 10, windowMs: 10 * MIN, blockMs: 60 * MIN },
  mfa: { maxFailures: 5, windowMs: 15 * MIN },
  ipv6Prefix: 64,
  maxConcurrentHashes: 8,
};
const SOURCES = 1_000_000;
const USERS = 20_000;

/** A real gc() even when node was started without --expose-gc. */
function getGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

let tmp: TmpDir | null = null;
after(async () => tmp?.cleanup());

describe('memory stores under a flood of spoofed sources', () => {
  it('stay at their cap, in bounded memory, and still block the persistent attacker', async () => {
    tmp = await tmpDir('pc-flood-');
    const gc = getGc();
    const clock = new ManualClock();
    const state = await FileStateStore.open(tmp.dir);
    const stores = createMemoryStores({ clock, state });
    const throttle = new LoginThrottle({ limits: LIMITS, rates: stores.rates, state, clock });

    gc();
    const heapBefore = process.memoryUsage().heapUsed;

    const persistent = '198.51.100.66';
    let persistentTried = 0;
    let persistentRefused = 0;
    let refused = 0;
    const t0 = performance.now();
    for (let i = 0; i < SOURCES; i++) {
      // one attempt per spoofed address, never repeated
      const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      const user = `user${i % USERS}`;
      const d = await throttle.check({ ip, user });
      if (d.allowed) await throttle.recordFailure({ ip, user, passwordFingerprint: `fp${i}`, familiar: false });
      else refused++;

      if (i % 1000 === 0) {
        // the real attacker, one address, a fresh account and guess each time, among the noise
        const target = { ip: persistent, user: `target${i % 7}` };
        const p = await throttle.check(target);
        if (p.allowed) {
          persistentTried++;
          await throttle.recordFailure({ ...target, passwordFingerprint: `guess${i}`, familiar: false });
        } else {
          persistentRefused++;
          assert.ok(p.kind === 'ip' || p.kind === 'spray' || p.kind === 'user', p.kind);
        }
        clock.advance(1); // a million attempts in about 17 simulated minutes
      }
    }
    const seconds = (performance.now() - t0) / 1000;

    const sizes = stores.rates.sizes;
    assert.equal(sizes.counters, DEFAULT_MAX_RATE_KEYS, 'the counter table is full, and no fuller');
    assert.ok(sizes.blocks <= DEFAULT_MAX_RATE_KEYS);
    assert.ok(refused > 0, 'the flood itself trips per-user lockouts');

    // the persistent source was blocked after at most per_ip.max_failures guesses and never got
    // through again: the block is re-read on every attempt, so it stays the freshest entry
    assert.ok(persistentTried <= LIMITS.perIp.maxFailures, `${persistentTried} guesses got through`);
    assert.equal(persistentTried + persistentRefused, SOURCES / 1000);
    const last = await throttle.check({ ip: persistent, user: 'someone-new' });
    assert.equal(last.allowed, false, 'still blocked at the end of the flood');

    gc();
    const grownMb = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    // ~200k counters with their keys and members; measured around 60 MB
    assert.ok(grownMb < 160, `heap grew by ${grownMb.toFixed(0)} MB`);
    console.log(`# flood: ${SOURCES} sources in ${seconds.toFixed(1)} s, heap +${grownMb.toFixed(0)} MB, tables ${JSON.stringify(sizes)}`);
    await stores.close();
  });
});
