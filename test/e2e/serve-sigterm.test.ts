/**
 * The report behind issue 14 item 4, replayed against the real program: `portcullis serve` gets
 * SIGTERM while a slow request is in flight. Before, the request got no response and nothing was
 * logged; now /readyz turns 503, the request is answered in full, each phase is logged, and the
 * process exits 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpDir } from '../helpers/tmp.js';
import { freePort } from '../helpers/ports.js';
import { rawHttp, get } from '../helpers/raw-http.js';
import { startUpstream } from '../helpers/upstream.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

async function until<T>(f: () => Promise<T | null>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => null);
    if (v !== null) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('serve: SIGTERM with a slow request in flight answers it, logs each phase, exits 0', { timeout: 30_000 }, async () => {
  const up = await startUpstream();
  const dir = await tmpDir('pc-sigterm');
  const port = await freePort();
  const admin = await freePort();
  const file = join(dir.dir, 'p.yaml');
  await writeFile(
    file,
    `listen: "127.0.0.1:${port}"
shutdown: { drain: 300ms, grace: 5s }
users_file: ${JSON.stringify(join(dir.dir, 'users.yaml'))}
data_dir: ${JSON.stringify(join(dir.dir, 'data'))}
admin: { listen: "127.0.0.1:${admin}", token_file: ${JSON.stringify(join(dir.dir, 'data', 'admin.token'))} }
apps:
  - { name: mail, hosts: ["mail.test"], upstream: "${up.url}", rules: [{ policy: bypass }] }
`,
  );
  const child = spawn(process.execPath, [CLI, 'serve', '--config', file], {
    env: { ...process.env, PORTCULLIS_ARGON2: 'test', PORTCULLIS_LOG_LEVEL: 'info', PORTCULLIS_SECRET_KEY: randomBytes(32).toString('base64') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (out += c));
  try {
    await until(async () => ((await rawHttp(admin, get('/readyz', `127.0.0.1:${admin}`))).status === 200 ? true : null), 10_000);
    const slow = rawHttp(port, get('/slow?ms=1500', 'mail.test'), { timeoutMs: 10_000 });
    await until(async () => (up.requests.some((r) => r.url === '/slow?ms=1500') ? true : null), 5_000);
    child.kill('SIGTERM');
    await until(async () => ((await rawHttp(admin, get('/readyz', `127.0.0.1:${admin}`))).status === 503 ? true : null), 2_000);
    const r = await slow;
    assert.equal(r.status, 200, `the in-flight request is answered; log:\n${out}`);
    assert.equal(JSON.parse(r.body).url, '/slow?ms=1500');
    const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (c) => resolve(c))));
    assert.equal(code, 0, out);
    for (const phase of ['shutdown: not ready', 'shutdown: drain over', 'shutdown: every request in flight finished', 'shutdown: done']) {
      assert.ok(out.includes(phase), `logged "${phase}":\n${out}`);
    }
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await up.close();
    await dir.cleanup();
  }
});
