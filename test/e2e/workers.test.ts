/**
 * `workers: N` (node:cluster) with a shared store: `portcullis serve` as an operator runs it
 * forks N workers that share the listening socket and the Redis state, restarts a worker that
 * dies, and stops cleanly on SIGTERM. With the memory store, more than one worker is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { tmpDir } from '../helpers/tmp.js';
import { freePort } from '../helpers/ports.js';
import { rawHttp, get } from '../helpers/raw-http.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const REDIS = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';

function childPids(pid: number): Promise<number[]> {
  return readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').then(
    (t) => t.trim().split(/\s+/).filter(Boolean).map(Number),
    () => [],
  );
}

async function until<T>(f: () => Promise<T | null>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => null);
    if (v !== null) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('workers: 2 with a Redis store serve on one port, survive a worker crash, stop on SIGTERM', { timeout: 30_000 }, async () => {
  const dir = await tmpDir('pc-workers');
  const port = await freePort();
  const admin = await freePort();
  const file = join(dir.dir, 'p.yaml');
  await writeFile(join(dir.dir, 'users.yaml'), 'users: {}\n');
  await writeFile(
    file,
    `listen: "127.0.0.1:${port}"
workers: 2
shutdown: { drain: 100ms, grace: 2s }
store: "${REDIS}${REDIS.includes('?') ? '&' : '?'}prefix=pc-workers-${randomBytes(4).toString('hex')}:"
users_file: ${JSON.stringify(join(dir.dir, 'users.yaml'))}
data_dir: ${JSON.stringify(join(dir.dir, 'data'))}
admin: { listen: "127.0.0.1:${admin}", token_file: ${JSON.stringify(join(dir.dir, 'data', 'admin.token'))} }
apps:
  - name: who
    hosts: ["who.test"]
    upstream: "builtin:whoami"
    rules:
      - { policy: bypass }
`,
  );
  const child = spawn(process.execPath, [CLI, 'serve', '--config', file], {
    env: { ...process.env, PORTCULLIS_ARGON2: 'test', PORTCULLIS_LOG_LEVEL: 'warn', PORTCULLIS_SECRET_KEY: randomBytes(32).toString('base64') },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (c) => (err += c));
  try {
    const workers = await until(async () => {
      const pids = await childPids(child.pid!);
      return pids.length === 2 ? pids : null;
    }, 10_000);
    await until(async () => ((await rawHttp(port, get('/', 'who.test'))).status === 200 ? true : null), 10_000);
    for (let i = 0; i < 20; i++) assert.equal((await rawHttp(port, get(`/r${i}`, 'who.test'))).status, 200);
    process.kill(workers[0]!, 'SIGKILL');
    const replaced = await until(async () => {
      const pids = await childPids(child.pid!);
      return pids.length === 2 && !pids.includes(workers[0]!) ? pids : null;
    }, 10_000);
    assert.equal(replaced.length, 2, `a dead worker is replaced; stderr: ${err}`);
    await until(async () => ((await rawHttp(port, get('/', 'who.test'))).status === 200 ? true : null), 10_000);
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    assert.equal(code, 0, err);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await dir.cleanup();
  }
});
