/** The reader: typed access to YAML nodes, every failure recorded as an issue with its position; secrets and URL checks. */
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, Scalar, type Document, type LineCounter, type ParsedNode } from 'yaml';
import { parseDuration } from './duration.js';
import { didYouMean, parseListen, unsafeUrlText } from './values.js';
import type { ConfigIssue, ListenAddress, SourcePos } from './types.js';

/** How many alias dereferences one document may need; far above any honest file. */
export const ALIAS_BUDGET = 10_000;

/** A value in the document and the key path that leads to it. */
export interface Val {
  node: ParsedNode;
  path: string;
}

export type Fields<K extends string> = { [P in K]?: Val } & { readonly $: Val };

export const childPath = (path: string, key: string): string => (path ? `${path}.${key}` : key);

export function nullAt(at: ParsedNode): ParsedNode {
  const n = new Scalar(null) as Scalar.Parsed;
  n.range = at.range;
  n.source = '';
  return n;
}

export function describe(node: ParsedNode): string {
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'no value';
    if (typeof v === 'boolean') return `${v}`;
    if (typeof v === 'number') return `the number ${node.source ?? v}`;
    if (typeof v === 'string') return 'text';
  }
  return 'something else';
}

export class Reader {
  readonly issues: ConfigIssue[] = [];
  /** Networks with an invalid entry: already reported, so references to them are not reported again. */
  readonly brokenNetworks = new Set<string>();
  private aliasBudget = ALIAS_BUDGET;

  constructor(
    private readonly doc: Document.Parsed,
    private readonly lc: LineCounter,
    readonly file: string,
    private readonly observeKeys?: (path: string, keys: readonly string[]) => void,
  ) {}

  pos(node: ParsedNode | null | undefined): SourcePos {
    const offset = node?.range?.[0] ?? 0;
    const { line, col } = this.lc.linePos(offset);
    return { file: this.file, line: Math.max(1, line), col: Math.max(1, col) };
  }

  issue(at: ParsedNode | null | undefined, path: string, message: string): undefined {
    const { line, col } = this.pos(at);
    this.issues.push({ file: this.file, line, col, path, message });
    return undefined;
  }

  /** Follows aliases (`*name`) to the node they stand for. */
  deref(node: unknown, path: string): ParsedNode | undefined {
    let n = node as ParsedNode;
    while (isAlias(n)) {
      if (--this.aliasBudget < 0) {
        if (this.aliasBudget === -1) this.issue(n, path, `more than ${ALIAS_BUDGET} aliases; refusing to expand the document`);
        return undefined;
      }
      const target = n.resolve(this.doc) as ParsedNode | undefined;
      if (!target) return this.issue(n, path, `alias *${n.source} refers to no anchor`);
      n = target;
    }
    return n;
  }

  isNull(v: Val): boolean {
    return isScalar(v.node) && v.node.value === null;
  }

  private noValue(v: Val, what: string): undefined {
    return this.issue(v.node, v.path, `has no value; expected ${what}`);
  }

  /**
   * A mapping with a fixed set of keys: unknown keys (with a suggestion), duplicate keys and
   * missing required keys are issues. Returns null when the node is not a mapping.
   */
  object<K extends string>(v: Val, keys: readonly K[], required: readonly K[] = []): Fields<K> | null {
    this.observeKeys?.(v.path, keys);
    const entries = this.entries(v, 'a mapping');
    if (!entries) return null;
    const out: Record<string, Val> = {};
    for (const e of entries) {
      if (!(keys as readonly string[]).includes(e.key)) {
        this.issue(e.keyNode, e.value.path, unknownKeyMessage(e.key, keys));
        continue;
      }
      out[e.key] = e.value;
    }
    for (const k of required) {
      if (out[k] === undefined) this.issue(v.node, v.path, `missing required key "${k}"`);
    }
    return Object.assign(out, { $: v }) as Fields<K>;
  }

  /** A mapping with free keys (e.g. `networks`), in document order, duplicates reported. */
  entries(v: Val, what: string): Array<{ key: string; keyNode: ParsedNode; value: Val }> | null {
    if (this.isNull(v)) return this.noValue(v, what) ?? null;
    if (!isMap(v.node)) return this.issue(v.node, v.path, `expected ${what}, found ${describe(v.node)}`) ?? null;
    const seen = new Map<string, ParsedNode>();
    const out: Array<{ key: string; keyNode: ParsedNode; value: Val }> = [];
    for (const pair of v.node.items) {
      const keyNode = pair.key as ParsedNode;
      if (!isScalar(keyNode) || keyNode.value === null || typeof keyNode.value === 'object') {
        this.issue(keyNode ?? v.node, v.path, 'keys must be plain names');
        continue;
      }
      const key = String(keyNode.value);
      const path = childPath(v.path, key);
      const first = seen.get(key);
      if (first) {
        this.issue(keyNode, path, `duplicate key "${key}" (first written at line ${this.pos(first).line})`);
        continue;
      }
      seen.set(key, keyNode);
      if (key === '<<') {
        this.issue(keyNode, path, 'merge keys (<<) are not supported; write the keys out');
        continue;
      }
      // a key with no value at all (`{ policy }`, `? key`) reads as null, positioned at the key
      const valueNode = pair.value === null ? nullAt(keyNode) : this.deref(pair.value, path);
      if (valueNode === undefined) continue;
      out.push({ key, keyNode, value: { node: valueNode, path } });
    }
    return out;
  }

  list(v: Val, what: string, opts: { nonEmpty?: string } = {}): Val[] | undefined {
    if (this.isNull(v)) return this.noValue(v, `a list of ${what}`);
    if (!isSeq(v.node)) return this.issue(v.node, v.path, `expected a list of ${what}, found ${describe(v.node)}`);
    if (opts.nonEmpty && v.node.items.length === 0) return this.issue(v.node, v.path, opts.nonEmpty);
    const out: Val[] = [];
    v.node.items.forEach((item, i) => {
      const path = `${v.path}[${i}]`;
      const node = this.deref(item, path);
      if (node) out.push({ node, path });
    });
    return out;
  }

  str(v: Val, what = 'text'): string | undefined {
    if (this.isNull(v)) return this.noValue(v, what);
    if (!isScalar(v.node) || typeof v.node.value !== 'string') {
      const hint = isScalar(v.node) && v.node.value !== null ? '; put it in quotes if it is meant as text' : '';
      return this.issue(v.node, v.path, `expected ${what}, found ${describe(v.node)}${hint}`);
    }
    return v.node.value;
  }

  /** Text that is not empty and has no control characters. */
  name(v: Val, what: string): string | undefined {
    const s = this.str(v, what);
    if (s === undefined) return undefined;
    if (s.trim().length === 0) return this.issue(v.node, v.path, `${what} cannot be empty`);
    if (/[\u0000-\u001f\u007f]/.test(s)) return this.issue(v.node, v.path, `${what} cannot contain control characters`);
    return s;
  }

  bool(v: Val): boolean | undefined {
    if (this.isNull(v)) return this.noValue(v, 'true or false');
    if (!isScalar(v.node) || typeof v.node.value !== 'boolean') {
      return this.issue(v.node, v.path, `expected true or false, found ${describe(v.node)}`);
    }
    return v.node.value;
  }

  int(v: Val, min: number, max: number): number | undefined {
    const what = `a whole number from ${min} to ${max}`;
    if (this.isNull(v)) return this.noValue(v, what);
    if (!isScalar(v.node) || typeof v.node.value !== 'number') return this.issue(v.node, v.path, `expected ${what}, found ${describe(v.node)}`);
    const n = v.node.value;
    if (!Number.isInteger(n) || n < min || n > max) return this.issue(v.node, v.path, `expected ${what}, found ${v.node.source ?? n}`);
    return n;
  }

  oneOf<T extends string | number>(v: Val, values: readonly T[]): T | undefined {
    const shown = values.map((x) => String(x)).join(', ');
    if (this.isNull(v)) return this.noValue(v, `one of ${shown}`);
    const raw = isScalar(v.node) ? v.node.value : undefined;
    if ((typeof raw === 'string' || typeof raw === 'number') && (values as readonly unknown[]).includes(raw)) return raw as T;
    const text = typeof raw === 'string' || typeof raw === 'number' ? String(raw) : null;
    const guess = text === null ? null : didYouMean(text, values.map(String));
    const found = text === null ? describe(v.node) : `"${text}"`;
    return this.issue(v.node, v.path, `expected one of ${shown}, found ${found}${guess ? `; did you mean ${guess}?` : ''}`);
  }

  duration(v: Val, opts: { allowZero?: boolean } = {}): number | undefined {
    const what = 'a duration such as 90s, 15m, 12h or 30d';
    if (this.isNull(v)) return this.noValue(v, what);
    if (isScalar(v.node) && typeof v.node.value === 'number') {
      return this.issue(v.node, v.path, `expected ${what}; "${v.node.source ?? v.node.value}" has no unit`);
    }
    const s = this.str(v, what);
    if (s === undefined) return undefined;
    const ms = parseDuration(s);
    if (ms === null) return this.issue(v.node, v.path, `"${s}" is not a duration; write a whole number and one unit: ms, s, m, h or d (e.g. 90s, 15m, 12h, 30d)`);
    if (ms === 0 && !opts.allowZero) return this.issue(v.node, v.path, 'must be longer than 0s');
    return ms;
  }

  /** A file or directory path, resolved against `cwd`. */
  filePath(v: Val, cwd: string): string | undefined {
    const s = this.name(v, 'a file path');
    if (s === undefined) return undefined;
    if (s !== s.trim()) return this.issue(v.node, v.path, `"${s}" has leading or trailing white space`);
    return resolve(cwd, s);
  }

  listen(v: Val): ListenAddress | undefined {
    const s = this.str(v, 'an address and port such as 127.0.0.1:8080');
    if (s === undefined) return undefined;
    const addr = parseListen(s);
    if (!addr) {
      const hint = /^:\d+$/.test(s) ? '; write 0.0.0.0' + s + ' or [::]' + s + ' to listen on every address' : '';
      return this.issue(v.node, v.path, `"${s}" is not an IP address and port such as 127.0.0.1:8080 or [::1]:8080${hint}`);
    }
    return addr;
  }
}

/**
 * A secret value: text written inline, `{ file: PATH }` (the file's content, trailing line breaks
 * removed; PATH relative to the working directory) or `{ env: NAME }`. Missing files and unset
 * variables are issues at the `file:`/`env:` line; the value itself is never put in a message.
 * `source` says where it came from, for later messages (`the URL from file /run/secrets/redis`).
 */
export interface Secret {
  value: string;
  inline: boolean;
  source: string;
}

export const MAX_SECRET_BYTES = 64 * 1024;
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function readSecret(r: Reader, v: Val, what: string, cwd: string, env: NodeJS.ProcessEnv): Secret | undefined {
  if (isScalar(v.node) && typeof v.node.value === 'string') return { value: v.node.value, inline: true, source: 'inline' };
  if (!isMap(v.node)) return r.issue(v.node, v.path, `expected ${what}, { file: PATH } or { env: NAME }, found ${describe(v.node)}`);
  const o = r.object(v, ['file', 'env']);
  if (!o) return undefined;
  if ((o.file ? 1 : 0) + (o.env ? 1 : 0) !== 1) return r.issue(v.node, v.path, 'a secret is written { file: PATH } or { env: NAME } (exactly one of them)');
  if (o.file) {
    const p = r.filePath(o.file, cwd);
    if (p === undefined) return undefined;
    let text: string;
    try {
      const st = statSync(p);
      if (!st.isFile()) return r.issue(o.file.node, o.file.path, `cannot read the secret file ${p}: not a regular file`);
      if (st.size > MAX_SECRET_BYTES) return r.issue(o.file.node, o.file.path, `the secret file ${p} is larger than ${MAX_SECRET_BYTES} bytes`);
      text = readFileSync(p, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code ?? 'unreadable';
      return r.issue(o.file.node, o.file.path, `cannot read the secret file ${p}: ${why}`);
    }
    const value = text.replace(/[\r\n]+$/, '');
    if (value === '') return r.issue(o.file.node, o.file.path, `the secret file ${p} is empty`);
    return { value, inline: false, source: `file ${p}` };
  }
  const name = r.str(o.env!, 'the name of an environment variable');
  if (name === undefined) return undefined;
  if (!ENV_NAME.test(name)) return r.issue(o.env!.node, o.env!.path, `"${name}" is not an environment variable name (letters, digits and _)`);
  const value = env[name];
  if (value === undefined) return r.issue(o.env!.node, o.env!.path, `the environment variable ${name} is not set`);
  if (value === '') return r.issue(o.env!.node, o.env!.path, `the environment variable ${name} is empty`);
  return { value, inline: false, source: `environment variable ${name}` };
}

/** How a secret URL is named in messages: never its text (it may carry a password or token). */
export function secretShown(sec: Secret, what: string): string {
  return sec.inline ? `the ${what}` : `the ${what} from ${sec.source}`;
}

export function unknownKeyMessage(key: string, keys: readonly string[]): string {
  const guess = didYouMean(key, keys);
  if (guess) return `unknown key "${key}"; did you mean "${guess}"?`;
  return keys.length <= 8 ? `unknown key "${key}"; expected one of: ${keys.join(', ')}` : `unknown key "${key}"`;
}

/** Reads an optional field: absent means `dflt`; a bad value is an issue and also `dflt`. */
export function opt<T>(v: Val | undefined, read: (v: Val) => T | undefined, dflt: T): T {
  if (v === undefined) return dflt;
  const out = read(v);
  return out === undefined ? dflt : out;
}

/**
 * Common checks of URL-like strings; returns the parsed URL or records an issue. `shown` names the
 * URL in messages (default: its text); secret URLs pass a name so that no password is echoed.
 */
export function checkUrl(r: Reader, v: Val, s: string, protocols: readonly string[], shown = `"${s}"`): URL | undefined {
  const unsafe = unsafeUrlText(s);
  if (unsafe) return r.issue(v.node, v.path, `the URL ${unsafe}`);
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return r.issue(v.node, v.path, `${shown} is not a valid absolute URL`);
  }
  if (!protocols.includes(u.protocol)) {
    return r.issue(v.node, v.path, `${shown}: expected a ${protocols.map((p) => `${p}//`).join(' or ')} URL`);
  }
  if (!u.hostname) return r.issue(v.node, v.path, `${shown} has no host`);
  if (s.includes('#')) return r.issue(v.node, v.path, `${shown} cannot have a fragment (#...)`);
  return u;
}
