/**
 * docs/reference.md lists every route the code registers, every metric it exports and every audit
 * event it can write (and marks the ones `notify` can send): a new one without its line fails here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AUDIT_EVENTS, NOTIFY_EVENTS } from '../../src/audit/events.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DOC = readFileSync(join(ROOT, 'docs', 'reference.md'), 'utf8');
const sources = (readdirSync(join(ROOT, 'src'), { recursive: true }) as string[])
  .filter((f) => f.endsWith('.ts'))
  .map((f) => ({ file: f, text: readFileSync(join(ROOT, 'src', f), 'utf8') }));

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('every route the code registers is in docs/reference.md', () => {
  const routes: string[] = [];
  for (const { text } of sources) {
    for (const m of text.matchAll(/\bapp\.(get|post|put|delete|patch)\(\s*'(\/[^']*)'/g)) routes.push(`${m[1]!.toUpperCase()} ${m[2]}`);
  }
  assert.ok(routes.length >= 30, `found ${routes.length} routes`);
  const missing = routes.filter((r) => !new RegExp('`' + escapeRe(r) + '[`?]').test(DOC));
  assert.deepEqual(missing, [], 'routes missing from docs/reference.md');
});

test('every metric is in docs/reference.md', () => {
  const metrics = sources.flatMap(({ text }) => [...text.matchAll(/name: '(portcullis_[a-z_]+)'/g)].map((m) => m[1]!));
  assert.ok(metrics.length >= 10, `found ${metrics.length} metrics`);
  const missing = metrics.filter((m) => !DOC.includes(`| \`${m}\` |`));
  assert.deepEqual(missing, [], 'metrics missing from docs/reference.md');
});

test('every audit event is in docs/reference.md, and the ones notify sends are marked', () => {
  const row = (e: string) => DOC.split('\n').find((l) => l.startsWith(`| \`${e}\` |`));
  assert.deepEqual(AUDIT_EVENTS.filter((e) => !row(e)), [], 'events missing from docs/reference.md');
  assert.deepEqual(NOTIFY_EVENTS.filter((e) => !row(e)!.includes('*notify*')), [], 'notify events not marked *notify*');
  const marked = AUDIT_EVENTS.filter((e) => row(e)!.includes('*notify*'));
  assert.deepEqual([...marked].sort(), [...NOTIFY_EVENTS].sort(), 'events marked *notify* that notify cannot send');
});
