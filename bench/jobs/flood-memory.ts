/**
 * Memory after a million distinct attacking sources, in-process: the real LoginThrottle over the
 * real memory stores (and the real file state store), driven exactly as a failed sign-in drives
 * them (check, familiarity, recordFailure), one failure from each of `sources` addresses against
 * `users` account names. Run with --expose-gc; RSS is read after a full collection before and after.
 *
 * Driving a million failures through the login endpoint would take the better part of an hour
 * on a small machine; the HTTP flood in run.ts confirms the per-request path adds no state of
 * its own beyond what this measures.
 */
import { ManualClock } from '../../src/clock.js';
import { loadConfigText } from '../../src/config/index.js';
import { LoginThrottle } from '../../src/auth/throttle.js';
import { createMemoryStores } from '../../src/store/memory.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { runAsJob } from '../lib/ipc.js';

export interface FloodInput {
  sources: number;
  users: number;
  dataDir: string;
}

export interface FloodResult {
  sources: number;
  seconds: number;
  rssIdleMb: number;
  rssAfterMb: number;
  rssPeakMb: number;
  heapIdleMb: number;
  heapAfterMb: number;
  tables: { counters: number; blocks: number; claims: number };
  sourcesBlocked: number;
}

const MB = 2 ** 20;

runAsJob<FloodInput, FloodResult>(async (input) => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  const loaded = loadConfigText('apps:\n  - { name: x, hosts: [x.test], upstream: "builtin:whoami", rules: [{ policy: password }] }\n', 'flood.yaml', { checkFiles: false });
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.issues));
  const limits = loaded.config.loginLimits; // the SPEC defaults, as compiled
  const clock = new ManualClock();
  const state = await FileStateStore.open(input.dataDir, { clock });
  const stores = createMemoryStores({ clock, state });
  const throttle = new LoginThrottle({ limits, rates: stores.rates, state, clock });

  // warm every code path once, then measure idle
  await throttle.check({ ip: '192.0.2.1', user: 'warm' });
  await throttle.recordFailure({ ip: '192.0.2.1', user: 'warm', passwordFingerprint: 'warm', familiar: false });
  await stores.rates.reset('lt:f:ip:192.0.2.1');
  gc();
  gc();
  const idle = process.memoryUsage();
  let peak = idle.rss;
  let blocked = 0;
  const t0 = performance.now();
  for (let i = 0; i < input.sources; i++) {
    const ip = `${10 + ((i >> 24) & 3)}.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const user = `user${i % input.users}`;
    const d = await throttle.check({ ip, user });
    if (!d.allowed) {
      blocked++;
      continue;
    }
    const familiar = await throttle.isFamiliar(user, ip);
    await throttle.recordFailure({ ip, user, passwordFingerprint: `fp${i}`, familiar });
    if (i % 1000 === 999) clock.advance(100); // a million sources in 100 simulated seconds
    if (i % 50_000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
  }
  const seconds = (performance.now() - t0) / 1000;
  peak = Math.max(peak, process.memoryUsage().rss);
  gc();
  gc();
  const after = process.memoryUsage();
  const tables = stores.rates.sizes;
  await stores.close();
  return {
    sources: input.sources,
    seconds,
    rssIdleMb: idle.rss / MB,
    rssAfterMb: after.rss / MB,
    rssPeakMb: peak / MB,
    heapIdleMb: idle.heapUsed / MB,
    heapAfterMb: after.heapUsed / MB,
    tables,
    sourcesBlocked: blocked,
  };
});
