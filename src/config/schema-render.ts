/**
 * What is generated from the config schema (schema.ts): the JSON Schema that `portcullis schema`
 * prints (docs/portcullis.schema.json, for editors that complete and validate the YAML), and the
 * key reference docs/configuration.md (`npm run docs:config`; a test fails when either is stale).
 */
import { stringify } from 'yaml';
import { CONFIG_SCHEMA, type KeySchema, type YamlValue } from './schema.js';

export type JsonSchema = { [key: string]: unknown };

const SCHEMA_ID = 'https://github.com/portcullis/portcullis/docs/portcullis.schema.json';

/** Durations as duration.ts reads them: one whole number and one unit. */
export const DURATION_PATTERN = '^(0|[1-9][0-9]{0,8})(ms|s|m|h|d)$';
/** An IP literal and a port, as values.ts parseListen reads them (the IP itself is checked there). */
export const LISTEN_PATTERN = '^(\\[[0-9A-Fa-f:.]+\\]|[0-9.]+):(0|[1-9][0-9]{0,4})$';

function secretForms(): JsonSchema[] {
  const one = (k: string, d: string): JsonSchema => ({
    type: 'object',
    description: d,
    properties: { [k]: { type: 'string', minLength: 1 } },
    required: [k],
    additionalProperties: false,
  });
  return [one('file', 'read from this file (trailing line breaks removed)'), one('env', 'read from this environment variable')];
}

function keyToJson(k: KeySchema): JsonSchema {
  let s: JsonSchema;
  switch (k.type) {
    case 'string':
    case 'url':
      s = { type: 'string' };
      break;
    case 'path':
      s = { type: 'string', minLength: 1 };
      break;
    case 'cidr':
      s = { type: 'string', pattern: '^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$' };
      break;
    case 'duration':
      s = { type: 'string', pattern: DURATION_PATTERN };
      break;
    case 'listen':
      s = { type: 'string', pattern: LISTEN_PATTERN };
      break;
    case 'integer':
      s = { type: 'integer' };
      if (k.min !== undefined) s['minimum'] = k.min;
      if (k.max !== undefined) s['maximum'] = k.max;
      break;
    case 'boolean':
      s = { type: 'boolean' };
      break;
    case 'list':
      s = { type: 'array', items: k.items ? keyToJson(k.items) : {} };
      break;
    case 'map':
      s = { type: 'object', propertyNames: { pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' }, additionalProperties: k.values ? keyToJson(k.values) : {} };
      break;
    case 'object':
      s = objectToJson(k.keys ?? {});
      break;
  }
  if (k.enum) s['enum'] = [...k.enum];
  const out: JsonSchema = { description: k.description };
  if (k.default !== undefined) out['default'] = k.default;
  if (k.example !== undefined) out['examples'] = [k.example];
  const alts: JsonSchema[] = [s];
  if (k.secret) alts.push(...secretForms());
  if (k.nullable) alts.push({ type: 'null' });
  if (alts.length === 1) return { ...out, ...s };
  return { ...out, anyOf: alts };
}

function objectToJson(keys: Readonly<Record<string, KeySchema>>): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  const required: string[] = [];
  for (const [name, k] of Object.entries(keys)) {
    properties[name] = keyToJson(k);
    if (k.required) required.push(name);
  }
  return { type: 'object', properties, ...(required.length ? { required } : {}), additionalProperties: false };
}

/** The configuration as a JSON Schema (draft 2020-12). */
export function configJsonSchema(): JsonSchema {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: SCHEMA_ID,
    title: 'portcullis configuration',
    description: 'The portcullis YAML configuration. Generated from src/config/schema.ts; `portcullis check-config` is the full check (this schema cannot see cross-key rules such as idle_timeout <= absolute_timeout).',
    ...objectToJson(CONFIG_SCHEMA),
  };
}

export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}

// ---------------------------------------------------------------------------------------------
// docs/configuration.md

function yamlInline(v: YamlValue): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return /^[A-Za-z0-9_./-]+$/.test(v) && !/^(true|false|null|[0-9.]+)$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(yamlInline).join(', ')}]`;
  const entries = Object.entries(v as Record<string, YamlValue>);
  return entries.length === 0 ? '{}' : `{ ${entries.map(([k, x]) => `${k}: ${yamlInline(x)}`).join(', ')} }`;
}

function typeText(k: KeySchema): string {
  const base: Record<KeySchema['type'], string> = {
    string: 'text',
    integer: 'integer',
    boolean: 'true/false',
    duration: 'duration',
    listen: 'IP:port',
    path: 'file path',
    url: 'URL',
    cidr: 'CIDR',
    object: 'mapping',
    list: 'list',
    map: 'mapping of names',
  };
  let t = base[k.type];
  if (k.type === 'list' && k.items) t = `list of ${k.items.enum ? 'names' : typeText(k.items)}`;
  if (k.type === 'integer' && k.min !== undefined && !k.enum) t += ` ${k.min}..${k.max}`;
  if (k.enum) t = k.enum.map((e) => `\`${e}\``).join(' \\| ');
  if (k.secret) t += ' (secret)';
  if (k.nullable) t += ' or null';
  if (k.required) t += ', **required**';
  return t;
}

function defaultCell(k: KeySchema): string {
  if (k.defaultText) return k.defaultText;
  if (k.default === undefined) return k.type === 'object' ? '' : '—';
  return `\`${yamlInline(k.default)}\``;
}

const esc = (s: string): string => s.replace(/\|/g, '\\|');

function rows(prefix: string, keys: Readonly<Record<string, KeySchema>>, out: string[]): void {
  for (const [name, k] of Object.entries(keys)) {
    const path = `${prefix}${name}`;
    const example = k.example !== undefined && k.type !== 'object' ? `\`${esc(yamlInline(k.example))}\`` : '';
    out.push(`| \`${path}\` | ${typeText(k)} | ${esc(defaultCell(k))} | ${example} | ${esc(k.description)} |`);
    if (k.keys) rows(`${path}.`, k.keys, out);
    if (k.items?.keys) rows(`${path}[].`, k.items.keys, out);
  }
}

/** docs/configuration.md */
export function configReference(): string {
  const out: string[] = [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/schema.ts by `npm run docs:config`; do not edit by hand. -->',
    '',
    'One YAML file (`--config FILE`, default `$PORTCULLIS_CONFIG`, else `config/portcullis.yaml`).',
    'It is validated in full at load and at every reload: unknown keys are refused, and every problem',
    'is reported as `FILE:LINE:COL key.path: message`; a running gateway keeps its configuration when a',
    'new one has problems. `portcullis check-config` runs the same check.',
    '',
    '- Durations are one whole number and one unit: `500ms`, `90s`, `15m`, `12h`, `30d`.',
    '- Relative file paths resolve against the working directory. `DATA_DIR` is `data_dir`.',
    '- A key marked *(secret)* may also be written `{ file: PATH }` (the file\'s content, trailing line',
    '  breaks removed) or `{ env: NAME }`; it is never echoed in messages.',
    '- Rule conditions, path patterns and policies are explained in the README.',
    '- Editors: `portcullis schema > portcullis.schema.json` prints this reference as a JSON Schema',
    '  (also committed as [portcullis.schema.json](portcullis.schema.json)); with the YAML language',
    '  server, put `# yaml-language-server: $schema=portcullis.schema.json` at the top of the file.',
    '',
  ];
  for (const [name, k] of Object.entries(CONFIG_SCHEMA)) {
    out.push(`## \`${name}\``, '');
    if (k.type === 'object') {
      // the section's own description, then its keys (its own row would repeat the paragraph)
      out.push(k.description.replace(/^./, (c) => c.toUpperCase()) + '.', '');
      out.push('| key | type | default | example | what |', '|---|---|---|---|---|');
      rows(`${name}.`, k.keys ?? {}, out);
    } else {
      out.push('| key | type | default | example | what |', '|---|---|---|---|---|');
      rows('', { [name]: k }, out);
    }
    out.push('');
  }
  out.push(
    '## Every key at once',
    '',
    'Each key with its example value (not a working configuration: some keys exclude others, such as',
    '`enrol` and `totp.enrol`, or `attack.threshold` and `attack.factor`).',
    '',
    '```yaml',
    stringify(everyExample(CONFIG_SCHEMA), { lineWidth: 0 }).trimEnd(),
    '```',
    '',
  );
  return out.join('\n');
}

/** A value holding every key's example (objects expanded key by key, lists of objects with one item). */
function everyExample(keys: Readonly<Record<string, KeySchema>>): Record<string, unknown> {
  const one = (k: KeySchema): unknown => {
    if (k.type === 'object') return everyExample(k.keys ?? {});
    if (k.type === 'list' && k.items?.type === 'object') return [one(k.items)];
    return k.example;
  };
  const out: Record<string, unknown> = {};
  for (const [name, k] of Object.entries(keys)) if (!k.alternative) out[name] = one(k);
  return out;
}
