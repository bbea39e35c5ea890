/**
 * The stores a config asks for: `memory` (sessions and counters in bounded memory, credentials
 * and lockdown in files under data_dir) or `redis://` / `rediss://` / `redis-sentinel://` (everything
 * shared, for several instances; Sentinel for a Redis that fails over).
 */
import type { Clock } from '../clock.js';
import type { CompiledConfig } from '../config/types.js';
import type { Logger } from '../audit/logger.js';
import type { SecretBox } from '../auth/secret-box.js';
import { createMemoryStores } from './memory.js';
import { FileStateStore } from './file-state.js';
import { createRedisStores } from './redis.js';
import { isSentinelUrl } from './redis-url.js';
import type { Stores } from './ports.js';

export async function openStores(cfg: CompiledConfig, deps: { clock: Clock; box: SecretBox; logger: Logger }): Promise<Stores> {
  if (cfg.store.kind === 'memory') {
    return createMemoryStores({ clock: deps.clock, state: await FileStateStore.open(cfg.dataDir) });
  }
  // `?prefix=name:` keeps several gateways (or test runs) apart on one Redis; a Sentinel URL
  // (redis-url.ts) carries its own prefix parameter, read by the store
  let url = cfg.store.url;
  let prefix: string | null = null;
  if (!isSentinelUrl(url)) {
    const u = new URL(url);
    prefix = u.searchParams.get('prefix');
    u.searchParams.delete('prefix');
    url = u.toString();
  }
  return createRedisStores({
    url,
    ...(prefix ? { prefix } : {}),
    clock: deps.clock,
    box: deps.box,
    startUnavailable: true,
    onError: (err) => deps.logger.warn({ err: err.message }, 'redis store'),
    onStateChange: (up) => (up ? deps.logger.info('redis store reachable') : deps.logger.error('redis store unreachable: sign-ins fail closed until it returns')),
  });
}
