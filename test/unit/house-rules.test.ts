/**
 * The rules of the house (docs/ARCHITECTURE.md), checked on the source rather than remembered:
 * - no import circles among src/ files, type imports included;
 * - the core (config, net, policy, access, auth, directory, session, store, audit, util) never
 *   imports fastify or any @fastify/ package: only the HTTP layer does.
 * Reads the TypeScript sources next to the compiled test (dist/test/unit -> ../../../src).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SRC = join(ROOT, 'src');
const CORE = ['config', 'net', 'policy', 'access', 'auth', 'directory', 'session', 'store', 'audit', 'util'];

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every module specifier a file imports or re-exports (static, dynamic and type-only). */
function specifiers(text: string): string[] {
  const found: string[] = [];
  const re = /(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;
  for (const m of text.matchAll(re)) found.push((m[1] ?? m[2] ?? m[3])!);
  return found;
}

const files = sources(SRC);
const graph = new Map<string, string[]>();
const external = new Map<string, string[]>();
for (const f of files) {
  const specs = specifiers(readFileSync(f, 'utf8'));
  const local: string[] = [];
  const outside: string[] = [];
  for (const s of specs) {
    if (s.startsWith('.')) {
      const target = resolve(dirname(f), s.replace(/\.js$/, '.ts'));
      if (existsSync(target)) local.push(target);
    } else outside.push(s);
  }
  graph.set(f, local);
  external.set(f, outside);
}

test('the source has files and the import reader finds their imports', () => {
  assert.ok(files.length > 50, `found ${files.length} source files`);
  const main = [...graph.entries()].find(([f]) => f.endsWith(join('src', 'main.ts')));
  assert.ok(main && main[1].length > 3, 'src/main.ts imports several local modules');
});

test('no import circles (type imports included)', () => {
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const circles: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 1);
    stack.push(f);
    for (const g of graph.get(f) ?? []) {
      if (state.get(g) === 1) {
        const at = stack.indexOf(g);
        circles.push([...stack.slice(at), g].map((x) => relative(SRC, x)).join(' -> '));
      } else if (!state.has(g)) visit(g);
    }
    stack.pop();
    state.set(f, 2);
  };
  for (const f of files) if (!state.has(f)) visit(f);
  assert.deepEqual(circles, []);
});

test('the core never imports fastify', () => {
  const offenders: string[] = [];
  for (const [f, specs] of external) {
    const top = relative(SRC, f).split(/[\\/]/)[0]!;
    if (!CORE.includes(top)) continue;
    for (const s of specs) if (s === 'fastify' || s.startsWith('@fastify/')) offenders.push(`${relative(SRC, f)} imports ${s}`);
  }
  assert.deepEqual(offenders, []);
});
