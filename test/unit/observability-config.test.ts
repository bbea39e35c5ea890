/**
 * The configuration keys of issue 17 and issue 14 item 6 (`access_log`, `apps[].assertion`), and
 * the request id's rules (http/request-id.ts): which ids a trusted proxy may hand over, and that a
 * made one comes from the injected Random.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { formatIssues, loadConfigText, type LoadResult } from '../../src/config/index.js';
import type { CompiledConfig } from '../../src/config/types.js';
import { RequestIds, requestIdFrom } from '../../src/http/request-id.js';
import { outcomeOf, pathOnly } from '../../src/http/access-log.js';

function ok(r: LoadResult): CompiledConfig {
  if (!r.ok) assert.fail(formatIssues(r.issues));
  return r.config;
}

const app = (extra = '') => `apps:\n  - name: demo\n    hosts: [localhost]\n    upstream: builtin:whoami\n    rules: [{ policy: bypass }]\n${extra}`;

describe('access_log and apps[].assertion', () => {
  it('off and on by default; a relative path resolves like audit.file', () => {
    const c = ok(loadConfigText(app(), 'p.yaml', { cwd: '/srv/pc' }));
    assert.deepEqual(c.accessLog, { file: null });
    assert.equal(c.apps[0]!.assertion, true);
    const on = ok(loadConfigText(`access_log: { file: logs/access.jsonl }\n${app('    assertion: false\n')}`, 'p.yaml', { cwd: '/srv/pc' }));
    assert.deepEqual(on.accessLog, { file: '/srv/pc/logs/access.jsonl' });
    assert.equal(on.apps[0]!.assertion, false);
    assert.deepEqual(ok(loadConfigText(`access_log: { file: null }\n${app()}`, 'p.yaml')).accessLog, { file: null });
  });

  it('refuses unknown keys and wrong types, with file:line:col and the key path', () => {
    const r = loadConfigText(`access_log: { file: x, format: combined }\n${app('    assertion: maybe\n')}`, 'p.yaml');
    assert.equal(r.ok, false);
    const text = r.ok ? '' : formatIssues(r.issues);
    assert.match(text, /p\.yaml:1:\d+ .*access_log\.format/);
    assert.match(text, /p\.yaml:7:\d+ .*apps\[0\]\.assertion/);
  });
});

describe('the request id', () => {
  it('takes a well-formed X-Request-Id, else a valid traceparent trace id', () => {
    assert.equal(requestIdFrom({ 'x-request-id': 'abc-123_4.5:6' }), 'abc-123_4.5:6');
    assert.equal(requestIdFrom({ 'x-request-id': '6f1c2a7e-3b1d-4c55-9a1e-0d2b7c9e4f10' }), '6f1c2a7e-3b1d-4c55-9a1e-0d2b7c9e4f10');
    assert.equal(requestIdFrom({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }), '0af7651916cd43dd8448eb211c80319c');
    assert.equal(requestIdFrom({ 'x-request-id': 'bad id', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }), '0af7651916cd43dd8448eb211c80319c');
  });

  it('refuses what is too long, has unsafe characters, or is not a valid traceparent', () => {
    for (const v of ['', 'x'.repeat(129), 'a b', 'a\tb', 'a"b', 'a;b', 'é', '-x', '<x>', 'a,b']) assert.equal(requestIdFrom({ 'x-request-id': v }), null, JSON.stringify(v));
    assert.equal(requestIdFrom({ 'x-request-id': ['a', 'b'] as unknown as string }), null, 'two values: neither');
    assert.equal(requestIdFrom({ 'x-request-id': 'x'.repeat(128) }), 'x'.repeat(128));
    for (const tp of [
      '00-00000000000000000000000000000000-b7ad6b7169203331-01',
      'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      '00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01',
      '00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01',
      'garbage',
    ]) assert.equal(requestIdFrom({ traceparent: tp }), null, tp);
  });

  it('makes ids of 32 hex digits from the injected Random', () => {
    let calls = 0;
    const ids = new RequestIds({ bytes: (n) => (calls++, Buffer.alloc(n, calls)) });
    const a = ids.next();
    assert.equal(a, '01'.repeat(16));
    for (let i = 0; i < 1023; i++) ids.next();
    assert.equal(calls, 1, 'drawn 1,024 ids at a time');
    assert.equal(ids.next(), '02'.repeat(16));
  });
});

describe('access log fields', () => {
  it('never keeps a query string', () => {
    assert.equal(pathOnly('/a/b?token=secret'), '/a/b');
    assert.equal(pathOnly('/a?'), '/a');
    assert.equal(pathOnly('/plain'), '/plain');
    assert.ok(pathOnly(`/${'x'.repeat(5000)}`).length <= 2049);
  });

  it('outcomes come from a fixed set', () => {
    assert.deepEqual(outcomeOf({ kind: 'error', code: 'PC_HOST_UNKNOWN', app: null, reason: 'unknown host' }), { app: null, policy: null, outcome: 'refused', rule: null });
    assert.equal(outcomeOf({ kind: 'error', code: 'PC_LOCKDOWN', app: null, reason: 'lockdown' }).outcome, 'lockdown');
  });
});
