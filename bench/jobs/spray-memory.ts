/**
 * Memory after a flood of distinct wrong passwords (`login_limits.same_password`), in-process:
 * the real LoginThrottle (with its spray witness) over the real memory stores with their default
 * caps, driven as checkCredential drives them (reservation with both fingerprints, then the
 * failure), `passwords` distinct wrong passwords from `sources` addresses, each against a
 * distinct account name (the worst case for every table). RSS after a full GC, before and after.
 *
 * On its own: `node dist/bench/jobs/spray-memory.js ['{"passwords": 1000000, "sources": 100000}']`
 * (a full GC is made available through V8 flags when node was not started with --expose-gc).
 */
import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ManualClock } from '../../src/clock.js';
import { loadConfigText } from '../../src/config/index.js';
import { LoginThrottle } from '../../src/auth/throttle.js';
import { createMemoryStores } from '../../src/store/memory.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { runAsJob } from '../lib/ipc.js';

export interface SprayMemoryInput {
  passwords: number;
  sources: number;
  /** Simulated time the flood takes (default 1 h: every password stays in its same_password window). */
  minutes?: number;
}

export interface SprayMemoryResult {
  passwords: number;
  sources: number;
  seconds: number;
  rssIdleMb: number;
  rssAfterMb: number;
  rssPeakMb: number;
  heapIdleMb: number;
  heapAfterMb: number;
  tables: { counters: number; blocks: number; claims: number };
  witness: { passwords: number; accounts: number };
  refused: number;
  /** A spray made after the flood is still marked at the configured count. */
  sprayMarkedAt: number | null;
}

const MB = 2 ** 20;

function getGc(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

runAsJob<SprayMemoryInput, SprayMemoryResult>(
  async (input) => {
    const gc = getGc();
    const loaded = loadConfigText('apps:\n  - { name: x, hosts: [x.test], upstream: "builtin:whoami", rules: [{ policy: password }] }\n', 'spray.yaml', { checkFiles: false });
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.issues));
    const limits = loaded.config.loginLimits; // the SPEC defaults, same_password included
    const dir = await mkdtemp(join(tmpdir(), 'pc-spray-memory-'));
    try {
      const clock = new ManualClock();
      const state = await FileStateStore.open(dir, { clock });
      const stores = createMemoryStores({ clock, state });
      const throttle = new LoginThrottle({ limits, rates: stores.rates, state, clock });
      const key = Buffer.alloc(32, 5);
      const pairFp = (user: string, pw: string) => createHmac('sha256', key).update(`pair\n${user}\u0000${pw}`).digest('base64url');
      const sameFp = (pw: string) => createHmac('sha256', key).update(`same\n${pw}`).digest().subarray(0, 16).toString('base64url');
      const wrong = async (ip: string, user: string, pw: string) => {
        const r = await throttle.reservePassword({ ip, user, passwordFingerprint: pairFp(user, pw), familiar: false, sameFingerprint: sameFp(pw) });
        return r.allowed ? r.ticket.failed() : null;
      };

      // warm every code path once, then measure idle
      await wrong('192.0.2.1', 'warm', 'warm');
      await stores.rates.reset('lt:f:ip:192.0.2.1');
      gc();
      gc();
      const idle = process.memoryUsage();
      let peak = idle.rss;
      let refused = 0;
      const stepMs = ((input.minutes ?? 60) * 60_000) / input.passwords;
      const t0 = performance.now();
      for (let i = 0; i < input.passwords; i++) {
        const s = i % input.sources;
        const ip = `10.${(s >> 16) & 255}.${(s >> 8) & 255}.${s & 255}`;
        if ((await wrong(ip, `account${i}`, `distinct wrong password ${i}`)) === null) refused++;
        if (i % 1000 === 999) clock.advance(stepMs * 1000);
        if (i % 50_000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
      }
      const seconds = (performance.now() - t0) / 1000;
      peak = Math.max(peak, process.memoryUsage().rss);
      gc();
      gc();
      const after = process.memoryUsage();
      const tables = stores.rates.sizes;
      const witness = throttle.witness.sizes;
      let sprayMarkedAt: number | null = null;
      for (let i = 0; i < limits.samePassword.accounts + 5 && sprayMarkedAt === null; i++) {
        const f = await wrong(`172.16.${i >> 8}.${i & 255}`, `victim${i}`, 'Summer2017');
        if (f?.sprayed) sprayMarkedAt = i + 1;
      }
      await stores.close();
      return {
        passwords: input.passwords,
        sources: input.sources,
        seconds,
        rssIdleMb: idle.rss / MB,
        rssAfterMb: after.rss / MB,
        rssPeakMb: peak / MB,
        heapIdleMb: idle.heapUsed / MB,
        heapAfterMb: after.heapUsed / MB,
        tables,
        witness,
        refused,
        sprayMarkedAt,
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
  { passwords: 1_000_000, sources: 100_000 },
);
