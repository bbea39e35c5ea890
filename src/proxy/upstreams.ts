import { Pool } from 'undici';
import type { CompiledConfig } from '../config/types.js';

/**
 * One keep-alive pool per upstream origin (undici, the engine @fastify/reply-from uses too).
 * Pools survive reloads while their origin and timeouts are unchanged.
 */
export class UpstreamPools {
  private pools = new Map<string, { pool: Pool; sig: string }>();

  get(cfg: CompiledConfig, origin: string): Pool {
    const t = cfg.upstreamTimeouts;
    const sig = `${t.connectMs}/${t.headersMs}/${t.idleMs}`;
    const have = this.pools.get(origin);
    if (have && have.sig === sig) return have.pool;
    if (have) void have.pool.close().catch(() => undefined);
    const pool = new Pool(origin, {
      connections: 256,
      pipelining: 1,
      connect: { timeout: t.connectMs },
      headersTimeout: t.headersMs,
      bodyTimeout: t.idleMs,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000,
    });
    this.pools.set(origin, { pool, sig });
    return pool;
  }

  /** Close pools whose origin is no longer configured. */
  prune(cfg: CompiledConfig): void {
    const live = new Set(cfg.apps.flatMap((a) => (a.upstream.kind === 'http' ? [a.upstream.origin] : [])));
    for (const [origin, { pool }] of this.pools) {
      if (!live.has(origin)) {
        this.pools.delete(origin);
        void pool.close().catch(() => undefined);
      }
    }
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map(({ pool }) => pool.destroy().catch(() => undefined)));
  }
}
