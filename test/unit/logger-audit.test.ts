/**
 * What reaches the logs: structured log lines redact secrets whatever object a caller passes, and
 * audit lines carry only the SPEC fields, with control characters neutralised so a crafted user
 * name cannot forge a second line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/audit/logger.js';
import { AuditLog } from '../../src/audit/audit-log.js';
import { ManualClock } from '../../src/clock.js';

test('secrets are redacted from structured logs', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const log = createLogger({ level: 'info', destination: sink });
  log.info({ password: 'hunter2', code: '123456', req: { headers: { cookie: 'portcullis_dev_session=abc', authorization: 'Basic eDp5' } }, user: 'alice' }, 'attempt');
  log.flush?.();
  await new Promise((r) => setImmediate(r));
  const text = lines.join('');
  for (const secret of ['hunter2', '123456', 'portcullis_dev_session=abc', 'Basic eDp5']) assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
  assert.match(text, /"user":"alice"/);
});

test('audit lines hold only the SPEC fields and cannot be split by a crafted name', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pc-audit-'));
  try {
    const file = join(dir, 'audit.jsonl');
    const audit = new AuditLog({ file, clock: new ManualClock(Date.UTC(2026, 0, 1)) });
    audit.record({ event: 'login_failed', ip: '192.0.2.1', user: 'eve\n{"event":"login_succeeded"}', app: 'mail', outcome: 'failure', reason: 'wrong password' });
    await audit.close();
    const lines = (await readFile(file, 'utf8')).trim().split('\n');
    assert.equal(lines.length, 1);
    const e = JSON.parse(lines[0]!);
    assert.deepEqual(Object.keys(e), ['ts', 'event', 'ip', 'user', 'app', 'outcome', 'reason']);
    assert.equal(e.ts, '2026-01-01T00:00:00.000Z');
    assert.ok(!e.user.includes('\n'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
