/**
 * A runtime for unit tests of the core (gate, login), built as test/helpers/portal-app.ts builds
 * one but without fastify: createRuntime over memory stores (file state in a temp dir), a
 * ManualClock, cheap argon2, a silent logger; audit events collected.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ManualClock, cryptoRandom } from '../../src/clock.js';
import { loadConfigText } from '../../src/config/index.js';
import { createRuntime, type RuntimeImpl } from '../../src/bootstrap.js';
import { silentLogger } from '../../src/audit/logger.js';
import { TEST_PARAMS } from '../../src/auth/password.js';
import { createMemoryStores } from '../../src/store/memory.js';
import { FileStateStore } from '../../src/store/file-state.js';
import type { AuditEvent } from '../../src/audit/events.js';
import type { CompiledApp, CompiledConfig } from '../../src/config/types.js';
import type { Stores } from '../../src/store/ports.js';
import { tmpDir, type TmpDir } from './tmp.js';
import { usersYaml, type TestUser } from './gateway.js';

export interface CoreRuntime {
  rt: RuntimeImpl;
  clock: ManualClock;
  dir: TmpDir;
  usersFile: string;
  events: AuditEvent[];
  /** The config in force (rt.config). */
  readonly cfg: CompiledConfig;
  /** The app by name. */
  app(name: string): CompiledApp;
  /** Audit events named `event` since the last `events.length = 0`. */
  audited(event: string): AuditEvent[];
  close(): Promise<void>;
}

/**
 * `config`: YAML without users_file, data_dir, audit and admin. `wrapStores` may replace store
 * operations (to simulate an outage).
 */
export async function startCoreRuntime(config: string, opts: { users: TestUser[]; wrapStores?: (s: Stores) => Stores; tmpPrefix?: string }): Promise<CoreRuntime> {
  const dir = await tmpDir(opts.tmpPrefix ?? 'pc-core');
  const usersFile = join(dir.dir, 'users.yaml');
  await writeFile(usersFile, await usersYaml(opts.users), { mode: 0o600 });
  const file = join(dir.dir, 'portcullis.yaml');
  const text = [
    'listen: "127.0.0.1:0"',
    `admin: { listen: "127.0.0.1:0", token_file: ${JSON.stringify(join(dir.dir, 'data', 'admin.token'))} }`,
    `data_dir: ${JSON.stringify(join(dir.dir, 'data'))}`,
    `users_file: ${JSON.stringify(usersFile)}`,
    'audit: { file: null }',
    config,
  ].join('\n');
  await writeFile(file, text);
  const loaded = loadConfigText(text, file);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.issues));
  const clock = new ManualClock();
  const state = await FileStateStore.open(join(dir.dir, 'data'));
  const mem = createMemoryStores({ clock, state });
  const stores = opts.wrapStores ? opts.wrapStores(mem) : mem;
  const rt = await createRuntime(loaded.config, { clock, random: cryptoRandom, logger: silentLogger(), argon2: TEST_PARAMS, stores });
  const events: AuditEvent[] = [];
  rt.audit.on((e) => events.push(e));
  return {
    rt,
    clock,
    dir,
    usersFile,
    events,
    get cfg() {
      return rt.config;
    },
    app(name) {
      const a = rt.config.apps.find((x) => x.name === name);
      if (!a) throw new Error(`no app ${name}`);
      return a;
    },
    audited: (event) => events.filter((e) => e.event === event),
    async close() {
      await rt.hasher.close();
      await rt.audit.close();
      await rt.stores.close();
      await dir.cleanup();
    },
  };
}
