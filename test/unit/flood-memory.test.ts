/**
 * A flood of spoofed sources against the in-memory throttle tables.
 *
 * An attacker who can vary the source address cheaply (a botnet, an IPv6 allocation, or a
 * misconfigured trusted proxy that believes X-Forwarded-For) sends one failed login from each of
 * a million addresses, against thousands of user names. Each one creates counters; unbounded,
 * that is a memory exhaustion attack on the gateway. The tables must stay at their cap, memory
 * must stay bounded, and the throttle must still block the one source that keeps attacking.
 *
 * The flood runs in a worker thread: node:test tracks every promise of the test's own thread
 * with async hooks, which would triple the run time and muddy the heap measurement.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ManualClock } from '../../src/clock.js';
import type { LoginLimits } from '../../src/config/types.js';
import { LoginThrottle } from '../../src/auth/throttle.js';
import { DEFAULT_MAX_RATE_KEYS, createMemoryStores } from '../../src/store/memory.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { tmpDir } from '../helpers/tmp.js';

const MIN = 60_000;
/** The SPEC defaults. */
const LIMITS: LoginLimits = {
  perIp: { maxFailures: 20, windowMs: 15 * MIN, blockMs: 15 * MIN },
  perUser: { maxFailures: 5, windowMs: 15 * MIN, lockoutMs: 15 * MIN, ceiling: { maxFailures: 100, windowMs: 24 * 60 * MIN } },
  spray: { distinctUsers: 10, windowMs: 10 * MIN, blockMs: 60 * MIN },
  samePassword: { accounts: 20, windowMs: 60 * MIN, blockMs: 24 * 60 * MIN },
  mfa: { maxFailures: 5, windowMs: 15 * MIN },
  ipv6Prefix: 64,
  maxConcurrentHashes: 8,
};
const SOURCES = 1_000_000;
const USERS = 20_000;
/** The persistent attacker tries once per this many spoofed failures. */
const EVERY = 1000;
/** Heap growth allowed for ~200k counters with keys and members (measured: about 55 MB). */
const HEAP_BOUND_MB = 150;

interface FloodReport {
  seconds: number;
  heapGrowthMb: number | null;
  sizes: { counters: number; blocks: number; claims: number };
  persistentTried: number;
  persistentRefused: number;
  persistentKinds: string[];
  blockedAtEnd: boolean;
  victimLockedOut: boolean;
}

/** A real gc() even when node was started without --expose-gc; null if that is impossible. */
function getGc(): (() => void) | null {
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return null;
  }
}

async function flood(dataDir: string): Promise<FloodReport> {
  const gc = getGc();
  const clock = new ManualClock();
  const state = await FileStateStore.open(dataDir, { clock });
  const stores = createMemoryStores({ clock, state });
  const throttle = new LoginThrottle({ limits: LIMITS, rates: stores.rates, state, clock });

  gc?.();
  const heapBefore = getHeapStatistics().used_heap_size;
  const persistent = '198.51.100.66';
  let persistentTried = 0;
  let persistentRefused = 0;
  const persistentKinds = new Set<string>();
  const t0 = performance.now();

  for (let i = 0; i < SOURCES; i++) {
    // one failure per spoofed address, never repeated
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    await throttle.recordFailure({ ip, user: `user${i % USERS}`, passwordFingerprint: `fp${i}`, familiar: false });

    if (i % EVERY === 0) {
      // the real attacker: one address, among the noise, a different guess each time
      const target = { ip: persistent, user: `target${i % 7}` };
      const d = await throttle.check(target);
      if (d.allowed) {
        persistentTried++;
        await throttle.recordFailure({ ...target, passwordFingerprint: `guess${i}`, familiar: false });
      } else {
        persistentRefused++;
        persistentKinds.add(d.kind);
      }
      clock.advance(100); // a million failures in 100 simulated seconds
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const sizes = stores.rates.sizes;
  const blockedAtEnd = !(await throttle.check({ ip: persistent, user: 'someone-new' })).allowed;
  // the flood gave every one of the 20,000 names 50 distinct guesses: each is locked out
  const victimLockedOut = !(await throttle.check({ ip: '203.0.113.1', user: 'user123' })).allowed;
  gc?.();
  const heapGrowthMb = gc ? (getHeapStatistics().used_heap_size - heapBefore) / 2 ** 20 : null;
  await stores.close();
  return { seconds, heapGrowthMb, sizes, persistentTried, persistentRefused, persistentKinds: [...persistentKinds], blockedAtEnd, victimLockedOut };
}

if (!isMainThread) {
  flood(workerData as string).then(
    (r) => parentPort!.postMessage({ ok: r }),
    (e: unknown) => parentPort!.postMessage({ error: e instanceof Error ? e.stack : String(e) }),
  );
} else {
  describe('memory stores under a flood of spoofed sources', () => {
    it('stay at their cap, in bounded memory, and still block the persistent attacker', async () => {
      const tmp = await tmpDir('pc-flood-');
      try {
        const worker = new Worker(new URL(import.meta.url), { workerData: tmp.dir });
        const msg = await new Promise<{ ok?: FloodReport; error?: string }>((resolve, reject) => {
          worker.once('message', resolve);
          worker.once('error', reject);
          worker.once('exit', (code) => reject(new Error(`flood worker exited with ${code}`)));
        });
        await worker.terminate();
        if (msg.error) assert.fail(msg.error);
        const r = msg.ok!;

        // full, and no fuller (a lockout deletes the counter it replaces, so a few slots may be free)
        assert.ok(r.sizes.counters <= DEFAULT_MAX_RATE_KEYS && r.sizes.counters > DEFAULT_MAX_RATE_KEYS - 1000, `${r.sizes.counters} counters`);
        assert.ok(r.sizes.blocks <= DEFAULT_MAX_RATE_KEYS);

        // blocked after at most per_ip.max_failures guesses and never through again, though a
        // million other sources came and went
        assert.ok(r.persistentTried <= LIMITS.perIp.maxFailures, `${r.persistentTried} guesses got through`);
        assert.equal(r.persistentTried + r.persistentRefused, SOURCES / EVERY);
        assert.deepEqual(r.persistentKinds, ['ip']);
        assert.equal(r.blockedAtEnd, true, 'still blocked at the end of the flood');
        assert.equal(r.victimLockedOut, true, 'per-user lockout still works for the flooded accounts');

        if (r.heapGrowthMb !== null) assert.ok(r.heapGrowthMb < HEAP_BOUND_MB, `heap grew by ${r.heapGrowthMb.toFixed(0)} MB`);
        console.log(
          `# flood: ${SOURCES} sources in ${r.seconds.toFixed(1)} s, heap +${r.heapGrowthMb?.toFixed(0) ?? '?'} MB, tables ${JSON.stringify(r.sizes)}`,
        );
      } finally {
        await tmp.cleanup();
      }
    });
  });
}
