/**
 * Lockdown while the state store is unreachable: unknown means on.
 *
 * The attack: an admin has turned lockdown on (remote access is under attack). The attacker, or
 * the same incident, takes Redis down; a gateway instance that starts now (a restart, a new
 * replica, a crashed worker) cannot read the saved lockdown state. It used to log the error and
 * serve with lockdown off until Redis came back: the one switch meant to shut remote access down
 * opened it, on exactly the instance nobody was watching. It is the fail-open class of Envoy's
 * ext_authz `failure_mode_allow` and of every policy check that treats "could not ask" as "yes".
 *
 * The safe answer: a lockdown state that cannot be read is on. Only `lockdown.networks` reach
 * apps until the state has been read (retried in the background) or an admin sets it on this
 * instance; the error is logged; lockdown cannot be turned off while the store cannot record it.
 * Once the store answers, its state applies (off if it says off, on with the admin's name if on).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { ManualClock } from '../../src/clock.js';
import { createLogger } from '../../src/audit/logger.js';
import { createMemoryStores } from '../../src/store/memory.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { createRedisStores } from '../../src/store/redis.js';
import { SecretBox } from '../../src/auth/secret-box.js';
import { PortcullisError } from '../../src/errors.js';
import { LOCKDOWN_UNKNOWN_BY } from '../../src/access/lockdown.js';
import type { StateStore } from '../../src/store/ports.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { rawHttp, get } from '../helpers/raw-http.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const CONFIG = `
networks: { office: ["127.0.0.2/32"] }
lockdown: { networks: [office] }
apps:
  - name: files
    hosts: ["files.test"]
    upstream: "builtin:whoami"
    rules:
      - { networks: ["127.0.0.0/8"], policy: bypass }
`;
const OUTSIDER = '127.0.0.1';
const OFFICE = '127.0.0.2';

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A logger whose lines the test can read. */
function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  return { logger: createLogger({ level: 'info', destination: dest }), lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** A state store whose lockdown calls fail while `down` is set, as a store that cannot be reached. */
function flaky(inner: StateStore): { state: StateStore; ctl: { down: boolean } } {
  const ctl = { down: true };
  const state = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if ((prop === 'getLockdown' || prop === 'setLockdown') && typeof v === 'function') {
        return (...args: unknown[]) => (ctl.down ? Promise.reject(new PortcullisError('PC_STORE_UNAVAILABLE', 'store down (test)')) : (v as (...a: unknown[]) => Promise<unknown>).apply(target, args));
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { state, ctl };
}

async function status(gw: TestGateway, ip: string): Promise<number> {
  return (await rawHttp(gw.port, get('/', 'files.test'), { localAddress: ip })).status;
}

async function eventually(what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) assert.fail(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function adminApi(gw: TestGateway, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const { readFile } = await import('node:fs/promises');
  const token = (await readFile(gw.gw.rt.config.admin.tokenFile, 'utf8')).trim();
  const r = await request(`http://127.0.0.1:${gw.gw.adminPort}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: r.statusCode, json: (await r.body.json()) as Record<string, unknown> };
}

async function gatewayOverFlakyStore(saved: { on: boolean; since: number; by: string } | null): Promise<{ gw: TestGateway; ctl: { down: boolean }; lines: () => Array<Record<string, unknown>> }> {
  const dir: TmpDir = await tmpDir('pc-lockdown-state');
  cleanups.push(() => dir.cleanup());
  const inner = await FileStateStore.open(dir.dir);
  if (saved) await inner.setLockdown(saved);
  const { state, ctl } = flaky(inner);
  const clock = new ManualClock(Date.UTC(2026, 3, 1, 9, 0, 0));
  const { logger, lines } = capturingLogger();
  const gw = await startTestGateway(CONFIG, { clock, logger, stores: createMemoryStores({ clock, state }), lockdownRetryMs: 30 });
  cleanups.push(() => gw.close());
  return { gw, ctl, lines };
}

test('started while the state cannot be read: lockdown is on (office only), logged, until the state is read', async () => {
  const { gw, ctl, lines } = await gatewayOverFlakyStore(null);
  assert.equal(await status(gw, OUTSIDER), 403, 'an outsider is refused while the lockdown state is unknown');
  assert.equal(await status(gw, OFFICE), 200, 'the lockdown networks still reach the app');
  const st = await adminApi(gw, 'GET', '/api/lockdown');
  assert.equal(st.json.on, true);
  assert.equal(st.json.by, LOCKDOWN_UNKNOWN_BY);
  const logged = lines().filter((l) => l.level === 50 && /lockdown is assumed ON/.test(String(l.msg)));
  assert.equal(logged.length, 1, 'one error line says so (not one per retry)');

  // turning it off cannot be recorded: refused, lockdown stays on
  const off = await adminApi(gw, 'POST', '/api/lockdown', { on: false });
  assert.equal(off.status, 503);
  assert.equal(await status(gw, OUTSIDER), 403);

  // the store answers again (nothing saved: lockdown was never on)
  ctl.down = false;
  await eventually('the outsider is admitted once the state (off) is read', async () => (await status(gw, OUTSIDER)) === 200);
  assert.equal(gw.gw.rt.lockdown.on, false);
  assert.ok(lines().some((l) => /saved lockdown state has been read: lockdown is off/.test(String(l.msg))));
});

test('when the saved state is on, reading it keeps lockdown on, now with the admin who set it', async () => {
  const { gw, ctl } = await gatewayOverFlakyStore({ on: true, since: Date.UTC(2026, 2, 31), by: 'cli:alice' });
  assert.equal(await status(gw, OUTSIDER), 403);
  ctl.down = false;
  await eventually('the saved state is read', async () => gw.gw.rt.lockdown.by === 'cli:alice');
  assert.equal(gw.gw.rt.lockdown.on, true);
  assert.equal(await status(gw, OUTSIDER), 403);
  assert.equal(await status(gw, OFFICE), 200);
});

test('an admin turning lockdown on while the state is unknown is not overridden by the state read later', async () => {
  const { gw, ctl } = await gatewayOverFlakyStore(null);
  const on = await adminApi(gw, 'POST', '/api/lockdown', { on: true, by: 'bob' });
  assert.equal(on.status, 503, 'on in this instance, but not saved');
  ctl.down = false;
  await new Promise((r) => setTimeout(r, 200)); // several retry periods
  assert.equal(gw.gw.rt.lockdown.on, true);
  assert.equal(await status(gw, OUTSIDER), 403);
});

test('with Redis down at start (a closed loopback port), lockdown is on until Redis answers', { timeout: 30_000 }, async () => {
  const redis: RedisServer = await startRedis();
  cleanups.push(() => redis.stop());
  await redis.stop(); // the port is closed now
  const clock = new ManualClock(Date.UTC(2026, 3, 1, 9, 0, 0));
  const stores = await createRedisStores({
    url: redis.url,
    prefix: `pc-lockdown-unknown-${process.pid}:`,
    clock,
    box: new SecretBox(Buffer.alloc(32, 7)),
    startUnavailable: true,
    connectTimeoutMs: 200,
  });
  const gw = await startTestGateway(CONFIG, { clock, stores, lockdownRetryMs: 50 });
  cleanups.push(() => gw.close());
  assert.equal(stores.healthy(), false);
  assert.equal(await status(gw, OUTSIDER), 403);
  assert.equal(await status(gw, OFFICE), 200);
  await redis.start();
  await eventually('the outsider is admitted once Redis answers (nothing saved)', async () => (await status(gw, OUTSIDER)) === 200, 15_000);
});
