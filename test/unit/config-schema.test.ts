/**
 * The config contract is written once (src/config/schema.ts) and the compiler keeps to it:
 * (a) the compiler accepts exactly the keys of the schema (a config holding every example compiles,
 *     each mapping's allowed keys are the schema's, and a key missing from the schema is refused),
 * (b) the defaults in the schema are what the compiler uses for keys left out,
 * (c) docs/configuration.md, docs/portcullis.schema.json and `portcullis schema` are generated from it,
 * (d) the JSON Schema accepts the shipped config/portcullis.yaml and refuses an unknown key.
 * Sections in PENDING_SECTIONS (added by work in progress) are tolerated as unknown to the compiler.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineCounter, parse, parseDocument, stringify } from 'yaml';
import { compileDocument, type CompileResult } from '../../src/config/compile.js';
import { CONFIG_SCHEMA, PENDING_SECTIONS, type KeySchema, type YamlValue } from '../../src/config/schema.js';
import { configJsonSchema, configJsonSchemaText, configReference, type JsonSchema } from '../../src/config/schema-render.js';
import { runCommand } from '../helpers/cli.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
type Doc = { [key: string]: unknown };

function compileObject(obj: Doc, observe?: (path: string, keys: readonly string[]) => void): CompileResult {
  const lc = new LineCounter();
  const doc = parseDocument(stringify(obj), { lineCounter: lc });
  return compileDocument(doc, lc, { file: 'test.yaml', cwd: '/tmp', checkFiles: false, env: {}, ...(observe ? { observeKeys: observe } : {}) });
}

const issuesOf = (r: CompileResult): string[] => (r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`));

const skipped = (name: string, k: KeySchema, top: boolean): boolean => (top && PENDING_SECTIONS.includes(name)) || !!k.alternative;

/** A value holding every (non-pending, non-alternative) key's example. */
function exampleOf(k: KeySchema): unknown {
  if (k.type === 'object') return examplesOf(k.keys ?? {});
  if (k.type === 'list' && k.items?.type === 'object') return [exampleOf(k.items)];
  return k.example;
}
function examplesOf(keys: Readonly<Record<string, KeySchema>>, top = false): Doc {
  const out: Doc = {};
  for (const [name, k] of Object.entries(keys)) if (!skipped(name, k, top)) out[name] = exampleOf(k);
  return out;
}
const everyExample = (): Doc => examplesOf(CONFIG_SCHEMA, true);

const MINIMAL_APP = { name: 'a', hosts: ['a.example.org'], upstream: 'builtin:whoami', rules: [{ policy: 'deny' }] };
const minimal = (): Doc => ({ apps: [{ ...MINIMAL_APP }] });

/** Every object in the schema, by normalised path ('' is the top). */
function schemaObjects(): Map<string, KeySchema> {
  const out = new Map<string, KeySchema>();
  const walk = (path: string, k: KeySchema) => {
    if (k.type === 'object') {
      out.set(path, k);
      for (const [n, c] of Object.entries(k.keys ?? {})) if (!c.alternative || c.type !== 'object') walk(path ? `${path}.${n}` : n, c);
    } else if (k.type === 'list' && k.items) walk(`${path}[]`, k.items);
  };
  const top: KeySchema = { type: 'object', description: '', keys: Object.fromEntries(Object.entries(CONFIG_SCHEMA).filter(([n, k]) => !skipped(n, k, true))) };
  walk('', top);
  return out;
}

const normalise = (path: string): string => path.replace(/\[\d+\]/g, '[]');

test('(a) a configuration holding every example of the schema compiles', () => {
  const r = compileObject(everyExample());
  assert.deepEqual(issuesOf(r), []);
});

test('(a) each mapping the compiler reads allows exactly the keys the schema lists (pending sections aside)', () => {
  const observed = new Map<string, readonly string[]>();
  compileObject(everyExample(), (path, keys) => {
    if (keys.length === 2 && keys.includes('file') && keys.includes('env')) return; // a secret's { file } / { env } form
    observed.set(normalise(path), keys);
  });
  const objects = schemaObjects();
  for (const [path, keys] of observed) {
    const s = path === '' ? { keys: CONFIG_SCHEMA } : objects.get(path);
    assert.ok(s, `the compiler reads a mapping at "${path}" that the schema does not describe`);
    const schemaKeys = Object.keys(s.keys ?? {});
    const compilerOnly = keys.filter((k) => !schemaKeys.includes(k));
    assert.deepEqual(compilerOnly, [], `keys the compiler accepts at "${path || '(top)'}" but the schema lacks`);
    const schemaOnly = schemaKeys.filter((k) => !keys.includes(k) && !(path === '' && PENDING_SECTIONS.includes(k)));
    assert.deepEqual(schemaOnly, [], `keys the schema lists at "${path || '(top)'}" but the compiler refuses`);
  }
  for (const path of objects.keys()) assert.ok(observed.has(path), `the schema's mapping "${path}" was never read by the compiler`);
});

test('(a) alternatives (keys that exclude another) compile on their own', () => {
  const alts: Array<[string[], unknown]> = [];
  const walk = (path: string[], keys: Readonly<Record<string, KeySchema>>, top: boolean) => {
    for (const [n, k] of Object.entries(keys)) {
      if (top && PENDING_SECTIONS.includes(n)) continue;
      if (k.alternative) alts.push([[...path, n], exampleOf(k)]);
      else if (k.keys) walk([...path, n], k.keys, false);
    }
  };
  walk([], CONFIG_SCHEMA, true);
  assert.ok(alts.length > 0);
  for (const [path, value] of alts) {
    // the networks the examples name exist, as in any real config
    const doc: Doc = { ...minimal(), networks: exampleOf(CONFIG_SCHEMA.networks!) };
    let at: Doc = doc;
    for (const p of path.slice(0, -1)) at = (at[p] ??= {}) as Doc;
    at[path.at(-1)!] = value;
    assert.deepEqual(issuesOf(compileObject(doc)), [], path.join('.'));
  }
});

test('(a) a key missing from the schema is refused in every mapping, with its path', () => {
  for (const path of schemaObjects().keys()) {
    const doc = everyExample();
    let at: Doc = doc;
    for (const part of path ? path.split('.') : []) {
      const name = part.replace(/\[\]$/, '');
      at = at[name] as Doc;
      if (part.endsWith('[]')) at = (at as unknown as Doc[])[0]!;
    }
    at['not_in_schema'] = 1;
    const issues = issuesOf(compileObject(doc));
    const want = `${path.replace(/\[\]/g, '[0]')}${path ? '.' : ''}not_in_schema`;
    assert.ok(issues.some((i) => i.startsWith(`${want}: unknown key "not_in_schema"`)), `${want} refused; got ${issues.join(' | ')}`);
  }
});

test('(b) the schema defaults are the compiled defaults: writing them all out changes nothing', () => {
  const defaults = (keys: Readonly<Record<string, KeySchema>>, top: boolean): Doc => {
    const out: Doc = {};
    for (const [n, k] of Object.entries(keys)) {
      if ((top && PENDING_SECTIONS.includes(n)) || k.alternative || k.optionalSection) continue;
      if (k.type === 'object') {
        const inner = defaults(k.keys ?? {}, false);
        if (Object.keys(inner).length) out[n] = inner;
      } else if (k.default !== undefined) out[n] = k.default;
    }
    return out;
  };
  const appDefaults = defaults(CONFIG_SCHEMA['apps']!.items!.keys!, false);
  assert.ok(Object.keys(appDefaults).length > 0);
  // apps first, its defaults after its rules: the compiled positions (pos) then match the minimal file's
  const written: Doc = { apps: [{ ...MINIMAL_APP, ...appDefaults }], ...defaults(CONFIG_SCHEMA, true) };
  // the defaults are spelled out (a sample): a typo in a key would make the compile fail below
  assert.equal((written['login_limits'] as Doc)['ipv6_prefix'], 64);
  const a = compileObject(minimal());
  const b = compileObject(written);
  assert.deepEqual(issuesOf(b), []);
  assert.ok(a.ok && b.ok);
  assert.deepStrictEqual(b.config, a.config);
});

test('(c) docs/configuration.md and docs/portcullis.schema.json are generated from the schema (`npm run docs:config`)', () => {
  assert.ok(readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8') === configReference(), 'docs/configuration.md is stale: run `npm run docs:config`');
  assert.ok(readFileSync(join(ROOT, 'docs', 'portcullis.schema.json'), 'utf8') === configJsonSchemaText(), 'docs/portcullis.schema.json is stale: run `npm run docs:config`');
  const doc = configReference();
  const keyPaths = (keys: Readonly<Record<string, KeySchema>>, prefix: string): string[] =>
    Object.entries(keys).flatMap(([n, k]) => [`${prefix}${n}`, ...(k.keys ? keyPaths(k.keys, `${prefix}${n}.`) : []), ...(k.items?.keys ? keyPaths(k.items.keys, `${prefix}${n}[].`) : [])]);
  for (const p of keyPaths(CONFIG_SCHEMA, '')) {
    const top = !p.includes('.') && !p.includes('[');
    assert.ok(doc.includes(top ? `## \`${p}\`` : `| \`${p}\` |`), `docs/configuration.md documents ${p}`);
  }
});

test('(c) `portcullis schema` prints the JSON Schema and exits 0', async () => {
  const r = await runCommand(['schema']);
  assert.deepEqual([r.code, r.err], [0, '']);
  assert.equal(r.out, configJsonSchemaText());
  assert.equal((JSON.parse(r.out) as JsonSchema)['additionalProperties'], false);
});

// ---------------------------------------------------------------------------------------------
// (d) A small validator for the JSON Schema keywords the generator uses (no dependency)

function validate(s: JsonSchema, v: unknown, path = '$'): string[] {
  if (s['anyOf']) {
    const alts = s['anyOf'] as JsonSchema[];
    const results = alts.map((a) => validate(a, v, path));
    return results.some((r) => r.length === 0) ? [] : [`${path}: matches none of ${alts.length} forms (${results.map((r) => r[0]).join('; ')})`];
  }
  const errs: string[] = [];
  const type = s['type'] as string | undefined;
  const actual = v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v;
  if (type && !(type === actual || (type === 'number' && actual === 'integer'))) return [`${path}: expected ${type}, found ${actual}`];
  if (s['enum'] && !(s['enum'] as unknown[]).includes(v)) errs.push(`${path}: ${JSON.stringify(v)} is not one of ${JSON.stringify(s['enum'])}`);
  if (typeof v === 'string') {
    if (s['pattern'] && !new RegExp(s['pattern'] as string, 'u').test(v)) errs.push(`${path}: "${v}" does not match ${s['pattern']}`);
    if (typeof s['minLength'] === 'number' && v.length < s['minLength']) errs.push(`${path}: too short`);
  }
  if (typeof v === 'number') {
    if (typeof s['minimum'] === 'number' && v < s['minimum']) errs.push(`${path}: below ${s['minimum']}`);
    if (typeof s['maximum'] === 'number' && v > s['maximum']) errs.push(`${path}: above ${s['maximum']}`);
  }
  if (Array.isArray(v) && s['items']) v.forEach((x, i) => errs.push(...validate(s['items'] as JsonSchema, x, `${path}[${i}]`)));
  if (actual === 'object') {
    const o = v as Record<string, unknown>;
    const props = (s['properties'] ?? {}) as Record<string, JsonSchema>;
    for (const r of (s['required'] ?? []) as string[]) if (!(r in o)) errs.push(`${path}: missing ${r}`);
    for (const [k, x] of Object.entries(o)) {
      if (props[k]) errs.push(...validate(props[k]!, x, `${path}.${k}`));
      else if (s['additionalProperties'] === false) errs.push(`${path}: unknown key ${k}`);
      else if (typeof s['additionalProperties'] === 'object') errs.push(...validate(s['additionalProperties'] as JsonSchema, x, `${path}.${k}`));
      const names = s['propertyNames'] as JsonSchema | undefined;
      if (names) errs.push(...validate({ type: 'string', ...names }, k, `${path} key ${k}`));
    }
  }
  return errs;
}

test('(d) the JSON Schema accepts the shipped config/portcullis.yaml and every example, and refuses unknown keys and bad values', () => {
  const schema = configJsonSchema();
  const shipped = parse(readFileSync(join(ROOT, 'config', 'portcullis.yaml'), 'utf8')) as Doc;
  assert.deepEqual(validate(schema, shipped), []);
  assert.deepEqual(validate(schema, examplesOf(CONFIG_SCHEMA)), []);

  assert.deepEqual(validate(schema, { ...shipped, sesion: {} }), ['$: unknown key sesion']);
  assert.deepEqual(validate(schema, { ...shipped, session: { idle_timeout: '30m', idle: '1h' } }), ['$.session: unknown key idle']);
  assert.deepEqual(validate(schema, { ...shipped, session: { idle_timeout: '30 minutes' } }).length, 1);
  assert.deepEqual(validate(schema, { ...shipped, workers: 0 }), ['$.workers: below 1']);
  assert.deepEqual(validate(schema, { ...shipped, store: { file: '/run/secrets/redis' } }), []);
  assert.equal(validate(schema, { ...shipped, store: { file: '/x', env: 'Y' } }).length, 1);
  const noApps = { ...shipped };
  delete noApps['apps'];
  assert.deepEqual(validate(schema, noApps), ['$: missing apps']);
});

test('(d) every example in the schema, pending sections included, is valid JSON Schema-wise', () => {
  const all: Doc = {};
  for (const [n, k] of Object.entries(CONFIG_SCHEMA)) all[n] = exampleOf(k) as YamlValue;
  all['enrol'] = exampleOf(CONFIG_SCHEMA['enrol']!);
  assert.deepEqual(validate(configJsonSchema(), all), []);
});
