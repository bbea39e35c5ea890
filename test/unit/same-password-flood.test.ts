/**
 * Memory stays bounded under a flood of distinct wrong passwords (`same_password`).
 *
 * Every wrong password becomes a counter keyed by its fingerprint, and the throttle keeps a list
 * of the accounts each was tried on for the audit. An attacker who never repeats a password (a
 * dictionary walk, or random strings) would grow both without end if they were not bounded. The
 * memory store's tables are LRU-bounded and the witness list too: here 100,000 distinct wrong
 * passwords from 100,000 sources against 100,000 names, through the real reservation, with every
 * table's size checked as it fills (it never passes its cap), and a spray made after the flood is
 * still seen. The memory figure for 1,000,000 passwords from 100,000 sources is measured by the
 * bench (`node dist/bench/jobs/spray-memory.js`).
 *
 * Run in a worker thread, as flood-memory.test.ts: node:test's async hooks would slow the loop
 * several times over in the test's own thread.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { createHmac } from 'node:crypto';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ManualClock } from '../../src/clock.js';
import type { LoginLimits } from '../../src/config/types.js';
import { LoginThrottle, SprayWitness } from '../../src/auth/throttle.js';
import { createMemoryStores } from '../../src/store/memory.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { tmpDir } from '../helpers/tmp.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const LIMITS: LoginLimits = {
  perIp: { maxFailures: 20, windowMs: 15 * MIN, blockMs: 15 * MIN },
  perUser: { maxFailures: 5, windowMs: 15 * MIN, lockoutMs: 15 * MIN, ceiling: { maxFailures: 100, windowMs: 24 * HOUR } },
  spray: { distinctUsers: 10, windowMs: 10 * MIN, blockMs: HOUR },
  samePassword: { accounts: 20, windowMs: HOUR, blockMs: 24 * HOUR },
  mfa: { maxFailures: 5, windowMs: 15 * MIN },
  ipv6Prefix: 64,
  maxConcurrentHashes: 8,
};
const N = 100_000;
/** Small caps, so the flood fills them many times over. */
const MAX_KEYS = 20_000;
const WITNESS = { passwords: 2_000, accounts: 50 };
const KEY = Buffer.alloc(32, 3);
const fp = (s: string) => createHmac('sha256', KEY).update(s).digest().subarray(0, 16).toString('base64url');

interface Report {
  seconds: number;
  maxSeen: { counters: number; blocks: number; claims: number; witnessPasswords: number; witnessAccounts: number };
  final: { counters: number };
  sprayCount: number | null;
}

async function flood(dataDir: string): Promise<Report> {
  const clock = new ManualClock();
  const state = await FileStateStore.open(dataDir, { clock });
  const stores = createMemoryStores({ clock, state, maxRateKeys: MAX_KEYS });
  const witness = new SprayWitness(WITNESS.passwords, WITNESS.accounts);
  const throttle = new LoginThrottle({ limits: LIMITS, rates: stores.rates, state, clock, witness });
  const wrong = async (ip: string, user: string, pw: string) => {
    const r = await throttle.reservePassword({ ip, user, passwordFingerprint: fp(`${user}\u0000${pw}`), familiar: false, sameFingerprint: fp(pw) });
    return r.allowed ? r.ticket.failed() : null;
  };
  const maxSeen = { counters: 0, blocks: 0, claims: 0, witnessPasswords: 0, witnessAccounts: 0 };
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    await wrong(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, `user${i}`, `random-${i}`);
    if (i % 997 === 0) clock.advance(1_000);
    if (i % 1000 === 999) {
      const t = stores.rates.sizes;
      const w = witness.sizes;
      maxSeen.counters = Math.max(maxSeen.counters, t.counters);
      maxSeen.blocks = Math.max(maxSeen.blocks, t.blocks);
      maxSeen.claims = Math.max(maxSeen.claims, t.claims);
      maxSeen.witnessPasswords = Math.max(maxSeen.witnessPasswords, w.passwords);
      maxSeen.witnessAccounts = Math.max(maxSeen.witnessAccounts, w.accounts);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const final = { counters: stores.rates.sizes.counters };
  let sprayCount: number | null = null;
  for (let i = 0; i < 20; i++) {
    const r = await wrong(`172.16.0.${i}`, `victim${i}`, 'Spring2017');
    if (r?.sprayed) sprayCount = r.sprayed.count;
  }
  await stores.close();
  return { seconds, maxSeen, final, sprayCount };
}

if (!isMainThread) {
  flood(workerData as string).then(
    (r) => parentPort!.postMessage({ ok: r }),
    (e: unknown) => parentPort!.postMessage({ error: e instanceof Error ? e.stack : String(e) }),
  );
} else {
  describe('same_password under a flood of distinct wrong passwords', () => {
    it(`${N.toLocaleString('en-US')} distinct passwords from as many sources: every table at or under its cap all along; a spray is still seen`, async () => {
      const tmp = await tmpDir('pc-same-flood-');
      try {
        const worker = new Worker(new URL(import.meta.url), { workerData: tmp.dir });
        const msg = await new Promise<{ ok?: Report; error?: string }>((resolve, reject) => {
          worker.once('message', resolve);
          worker.once('error', reject);
          worker.once('exit', (code) => reject(new Error(`flood worker exited with ${code}`)));
        });
        await worker.terminate();
        if (msg.error) assert.fail(msg.error);
        const r = msg.ok!;
        assert.ok(r.maxSeen.counters <= MAX_KEYS && r.maxSeen.blocks <= MAX_KEYS && r.maxSeen.claims <= MAX_KEYS, JSON.stringify(r.maxSeen));
        assert.ok(r.maxSeen.witnessPasswords <= WITNESS.passwords, JSON.stringify(r.maxSeen));
        assert.ok(r.maxSeen.witnessAccounts <= WITNESS.passwords * WITNESS.accounts, JSON.stringify(r.maxSeen));
        assert.equal(r.final.counters, MAX_KEYS, 'the flood filled the counters table to its cap, no further');
        assert.equal(r.maxSeen.witnessPasswords, WITNESS.passwords, 'and the witness to its cap');
        assert.equal(r.sprayCount, 20, 'a spray after the flood is marked at the 20th account');
        console.log(`# same-password flood: ${N} passwords in ${r.seconds.toFixed(1)} s, largest tables ${JSON.stringify(r.maxSeen)}`);
      } finally {
        await tmp.cleanup();
      }
    });
  });
}
