/**
 * A throw-away Redis that fails over, for end-to-end tests: one primary, one replica and three
 * Sentinels (quorum 2), Debian's `redis-server` and `redis-sentinel`, all on free 127.0.0.1
 * ports in a temporary directory (never 6379 / 26379), without persistence.
 *
 *   const rs = await startSentinelSet();           // resolves once every Sentinel knows the
 *   t.after(() => rs.stop());                      // primary, the replica and the other two
 *   const killedAt = rs.killPrimary();             // kill -9
 *   const switchedAt = await rs.waitForSwitch();   // Sentinels name the replica as primary
 *
 * `down-after-milliseconds` 1000 and `failover-timeout` 3000 keep a failover to a few seconds.
 * Outside CI a missing binary skips (`sentinelSkip()`); with CI set it fails.
 */
import { writeFile } from 'node:fs/promises';
import { freezeProcess } from './freeze.js';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, waitForPort } from './ports.js';
import { findBinary, noteSkip, spawnDaemon, tmpDir, type Daemon, type TmpDir } from './tmp.js';

const REDIS_SERVER = findBinary('redis-server', ['/usr/bin/redis-server', '/usr/local/bin/redis-server']);
const REDIS_SENTINEL = findBinary('redis-sentinel', ['/usr/bin/redis-sentinel', '/usr/local/bin/redis-sentinel']);

export function haveSentinel(): boolean {
  return REDIS_SERVER !== null && REDIS_SENTINEL !== null;
}

/** For node:test's `skip` option (fails in CI when a binary is missing). */
export function sentinelSkip(): false | string {
  return noteSkip('redis-server and redis-sentinel', haveSentinel());
}

export interface SentinelSet {
  /** The master name the Sentinels monitor. */
  name: string;
  primaryPort: number;
  replicaPort: number;
  sentinelPorts: number[];
  /** `redis-sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/NAME/DB` (plus `?prefix=` if given). */
  url(opts?: { db?: number; prefix?: string }): string;
  /** The port of the server the Sentinels currently name as primary (after `waitForSwitch`). */
  primary(): number;
  /** The other one. */
  replica(): number;
  /** `SENTINEL FAILOVER`: a graceful switch, the old primary stays up and becomes the replica. */
  failover(): Promise<void>;
  /** Resolves once the primary has a replica online (the old primary, after `failover()`; it is told REPLICAOF at once). */
  waitForReplica(timeoutMs?: number): Promise<void>;
  /** kill -9 the current primary; returns Date.now() at the kill. */
  killPrimary(): number;
  /**
   * Resolves with Date.now() once a majority of the Sentinels name the replica as the primary and
   * the replica says it is a primary (ROLE). Rejects after `timeoutMs` (default 20 s).
   */
  waitForSwitch(timeoutMs?: number): Promise<number>;
  /** kill -9 Sentinel number `i` (0-based). */
  killSentinel(i: number): void;
  /** SIGSTOP (`freeze`, resolved once it is really stopped) or SIGCONT (`thaw`) the server on `port` (primary or replica). */
  freeze(port: number): Promise<void>;
  thaw(port: number): void;
  /** A plain client (lazy: call connect()) on a server port, for checks; the caller disconnects it. */
  client(port: number, db?: number): Redis;
  /** Everything the programs wrote (for failure messages). */
  output(): string;
  /** Stop every program and remove the temporary directory. */
  stop(): Promise<void>;
}

async function waitUntil(what: string, f: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await f()) return;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function plain(port: number, db = 0): Redis {
  const c = new Redis({ host: '127.0.0.1', port, db, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000, commandTimeout: 1000 });
  c.on('error', () => {});
  return c;
}

async function ask<T>(port: number, f: (c: Redis) => Promise<T>): Promise<T> {
  const c = plain(port);
  try {
    await c.connect();
    return await f(c);
  } finally {
    c.disconnect();
  }
}

function pairs(flat: unknown): Map<string, string> {
  const m = new Map<string, string>();
  if (Array.isArray(flat)) for (let i = 0; i + 1 < flat.length; i += 2) m.set(String(flat[i]), String(flat[i + 1]));
  return m;
}

/** Start primary, replica and three Sentinels; resolves once the Sentinels agree on the set. */
export async function startSentinelSet(opts: { name?: string; downAfterMs?: number; failoverTimeoutMs?: number } = {}): Promise<SentinelSet> {
  if (!REDIS_SERVER || !REDIS_SENTINEL) throw new Error('redis-server and redis-sentinel are needed (scripts/install-test-deps.sh)');
  const name = opts.name ?? 'pcmaster';
  const dir: TmpDir = await tmpDir('pc-sentinel');
  const daemons: Array<{ label: string; d: Daemon }> = [];
  const output = (): string => daemons.map(({ label, d }) => `--- ${label}\n${d.output().slice(-4000)}`).join('\n');
  const stop = async (): Promise<void> => {
    for (const { d } of daemons) d.child.kill('SIGCONT'); // a frozen server must act on SIGTERM
    await Promise.all(daemons.map(({ d }) => d.stop(2000)));
    await dir.cleanup();
  };
  try {
    const taken = new Set([6379, 26379]);
    const port = async (): Promise<number> => {
      for (;;) {
        const p = await freePort();
        if (!taken.has(p)) {
          taken.add(p);
          return p;
        }
      }
    };
    const primaryPort = await port();
    const replicaPort = await port();
    const sentinelPorts = [await port(), await port(), await port()];
    const server = (label: string, p: number, extra: string[]): Daemon => {
      const d = spawnDaemon(REDIS_SERVER, ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir.dir, '--dbfilename', `${label}.rdb`, ...extra]);
      daemons.push({ label, d });
      return d;
    };
    server('primary', primaryPort, []);
    await waitForPort(primaryPort);
    server('replica', replicaPort, ['--replicaof', '127.0.0.1', String(primaryPort)]);
    await waitForPort(replicaPort);
    await waitUntil(
      'the replica syncs',
      () => ask(replicaPort, async (c) => /master_link_status:up/.test(await c.info('replication'))),
      10_000,
    );
    for (const [i, sp] of sentinelPorts.entries()) {
      const conf = join(dir.dir, `sentinel-${i}.conf`);
      await writeFile(
        conf,
        [
          `port ${sp}`,
          'bind 127.0.0.1',
          `dir ${dir.dir}`,
          `sentinel monitor ${name} 127.0.0.1 ${primaryPort} 2`,
          `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${name} ${opts.failoverTimeoutMs ?? 3000}`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      );
      daemons.push({ label: `sentinel-${i}`, d: spawnDaemon(REDIS_SENTINEL, [conf]) });
    }
    for (const sp of sentinelPorts) await waitForPort(sp);
    // agreed: every Sentinel sees the primary up, the replica, and the two other Sentinels
    await waitUntil(
      'the Sentinels agree',
      async () => {
        for (const sp of sentinelPorts) {
          const m = pairs(await ask(sp, (c) => c.call('SENTINEL', 'MASTER', name)));
          if (m.get('port') !== String(primaryPort) || m.get('num-slaves') !== '1' || m.get('num-other-sentinels') !== '2') return false;
          if (/s_down|o_down/.test(m.get('flags') ?? '')) return false;
        }
        return true;
      },
      20_000,
    );
    let current = primaryPort;
    const serverAt = (p: number): Daemon => daemons.find(({ label }) => label === (p === primaryPort ? 'primary' : p === replicaPort ? 'replica' : ''))!.d;
    return {
      name,
      primaryPort,
      replicaPort,
      sentinelPorts,
      primary: () => current,
      replica: () => (current === primaryPort ? replicaPort : primaryPort),
      async failover() {
        await ask(sentinelPorts[0]!, (c) => c.call('SENTINEL', 'FAILOVER', name));
      },
      async waitForReplica(timeoutMs = 20_000) {
        // the Sentinels turn a demoted primary into a replica only at their next INFO round (about
        // 10 s); tell it now what they would tell it then
        const other = current === primaryPort ? replicaPort : primaryPort;
        await ask(other, (c) => c.call('REPLICAOF', '127.0.0.1', String(current))).catch(() => undefined);
        await waitUntil(
          'the primary has a replica online',
          () => ask(current, async (c) => /^slave0:.*state=online/m.test(await c.info('replication'))),
          timeoutMs,
        );
      },
      url: (o = {}) =>
        `redis-sentinel://${sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',')}/${name}/${o.db ?? 0}${o.prefix ? `?prefix=${encodeURIComponent(o.prefix)}` : ''}`,
      killPrimary() {
        const entry = daemons.find(({ label }) => label === (current === primaryPort ? 'primary' : 'replica'))!;
        entry.d.child.kill('SIGKILL');
        return Date.now();
      },
      async waitForSwitch(timeoutMs = 20_000) {
        const target = current === primaryPort ? replicaPort : primaryPort;
        await waitUntil(
          'the Sentinels switch to the replica',
          async () => {
            let agree = 0;
            for (const sp of sentinelPorts) {
              try {
                const addr = (await ask(sp, (c) => c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name))) as string[];
                if (addr && String(addr[1]) === String(target)) agree++;
              } catch {
                // that Sentinel does not answer: it does not count
              }
            }
            if (agree < 2) return false;
            const role = (await ask(target, (c) => c.call('ROLE'))) as unknown[];
            return role[0] === 'master';
          },
          timeoutMs,
        );
        current = target;
        return Date.now();
      },
      killSentinel: (i) => void daemons.find(({ label }) => label === `sentinel-${i}`)!.d.child.kill('SIGKILL'),
      freeze: (p) => freezeProcess(serverAt(p).child),
      thaw: (p) => serverAt(p).child.kill('SIGCONT'),
      client: (p, db = 0) => plain(p, db),
      output,
      stop,
    };
  } catch (e) {
    const out = output();
    await stop();
    throw new Error(`${(e as Error).message}\n${out}`);
  }
}
