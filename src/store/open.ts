/**
 * The stores a config asks for: `memory` (sessions and counters in bounded memory, credentials
 * and lockdown in files under data_dir) or `redis://` (everything shared, for several instances).
 */
import type { Clock } from '../clock.js';
import type { CompiledConfig } from '../config/types.js';
import type { Logger } from '../audit/logger.js';
import type { SecretBox } from '../auth/secret-box.js';
import { createMemoryStores } from './memory.js';
import { FileStateStore } from './file-state.js';
import { createRedisStores } from './redis.js';
import type { Stores } from './ports.js';

export async function openStores(cfg: CompiledConfig, deps: { clock: Clock; box: SecretBox; logger: Logger }): Promise<Stores> {
  if (cfg.store.kind === 'memory') {
    return createMemoryStores({ clock: deps.clock, state: await FileStateStore.open(cfg.dataDir) });
  }
  // `?prefix=name:` keeps several gateways (or test runs) apart on one Redis
  const u = new URL(cfg.store.url);
  const prefix = u.searchParams.get('prefix');
  u.searchParams.delete('prefix');
  return createRedisStores({
    url: u.toString(),
    ...(prefix ? { prefix } : {}),
    clock: deps.clock,
    box: deps.box,
    startUnavailable: true,
    onError: (err) => deps.logger.warn({ err: err.message }, 'redis store'),
    onStateChange: (up) => (up ? deps.logger.info('redis store reachable') : deps.logger.error('redis store unreachable: sign-ins fail closed until it returns')),
  });
}
