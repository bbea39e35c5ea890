/**
 * The configuration schema: walks the parsed YAML tree (every node keeps its offset, so every
 * issue gets a line and column), collects every problem, and builds the deep-frozen
 * `CompiledConfig`. Nothing here fills in defaults by mutating the input, and nothing is
 * silently corrected except what is harmless and stated (host names are lower-cased).
 *
 * The key reference, defaults included, is the comment at the top of load.ts.
 */
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, Scalar, type Document, type LineCounter, type ParsedNode } from 'yaml';
import { CidrSet, coversEveryone, parseCidr, type Cidr } from '../net/cidr.js';
import { parseIp } from '../net/ip.js';
import { formatDuration, parseDuration } from './duration.js';
import { compilePathPattern } from './paths.js';
import { NOTIFY_EVENTS } from '../audit/events.js';
import { hostUnderDomain, IPV6_PREFIX_MIN } from './types.js';
import type { LdapConfig } from './types.js';
import type {
  AttackConfig,
  CompiledApp,
  CompiledConfig,
  CompiledRule,
  ConfigIssue,
  ListenAddress,
  LoginLimits,
  NotifyConfig,
  PasswordPolicy,
  PathMatcher,
  PolicyName,
  SourcePos,
  TotpConfig,
} from './types.js';

export interface CompileOptions {
  /** The file name as the user wrote it; used in issues and `SourcePos`. */
  file: string;
  /** Directory relative paths resolve against. */
  cwd: string;
  /** Whether to check that referenced files (TLS certificate and key) are readable now. */
  checkFiles: boolean;
  /** Where `{ env: NAME }` secrets are looked up (default: `process.env`). */
  env?: NodeJS.ProcessEnv;
}

export type CompileResult = { ok: true; config: CompiledConfig } | { ok: false; issues: ConfigIssue[] };

// ---------------------------------------------------------------------------------------------
// Vocabulary

const NETWORK_NAME = /^[a-z0-9][a-z0-9_-]*$/;
const APP_NAME = /^[a-z0-9][a-z0-9-]*$/;
const MAX_NAME_LENGTH = 63;
const POLICIES: readonly PolicyName[] = ['deny', 'bypass', 'password', 'mfa'];
/** RFC 9110 token characters. */
const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const REFUSED_METHODS: Record<string, string> = {
  CONNECT: 'CONNECT is refused: the gateway never opens tunnels for clients',
  TRACE: 'TRACE is refused: it echoes the request, credentials and cookies included (cross-site tracing)',
};
const EMAIL =
  /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;
const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** How many alias dereferences one document may need; far above any honest file. */
const ALIAS_BUDGET = 10_000;

// ---------------------------------------------------------------------------------------------
// Small pure helpers (exported for the CLI and tests)

/**
 * `127.0.0.1:8080`, `0.0.0.0:443`, `[::1]:8080`, `[::]:443`: an IP literal and a port (0-65535;
 * 0 asks the OS for a free port). Host names are refused: the bind address must be unambiguous.
 * IPv6 hosts are returned without brackets, as `net.Server.listen` wants them.
 */
export function parseListen(s: string): ListenAddress | null {
  if (typeof s !== 'string') return null;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):(0|[1-9][0-9]{0,4})$/.exec(s);
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  if (m[1] !== undefined) {
    const ip = parseIp(m[1]);
    if (!ip || ip.family !== 6) return null;
    return { host: ip.address, port };
  }
  const ip = parseIp(m[2]!);
  if (!ip || ip.family !== 4) return null;
  return { host: ip.address, port };
}

/** The closest candidate to a mistyped word, if one is close enough to be what was meant. */
export function didYouMean(word: string, candidates: Iterable<string>): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = c === word ? 0 : levenshtein(w, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  if (best === null || best === word) return null;
  const limit = Math.max(1, Math.floor(Math.max(word.length, best.length) / 3));
  return bestDistance <= limit ? best : null;
}

function levenshtein(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 8) return Math.abs(a.length - b.length);
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * Why a URL-like string is unsafe to pass on (to a proxy, an HTTP client, a Redis or SMTP
 * client, a log line), or null. WHATWG URL parsing silently drops tabs and line breaks and
 * rewrites backslashes, so the raw text is checked before parsing.
 */
export function unsafeUrlText(s: string): string | null {
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\r' || ch === '\n') return 'contains a line break (CR/LF)';
    if (ch === ' ') return 'contains a space';
    if (cp < 0x20 || cp === 0x7f) return `contains a control character (U+${cp.toString(16).toUpperCase().padStart(4, '0')})`;
    if (cp > 0x7e) return 'contains a non-ASCII character; write host names in punycode and percent-encode the rest';
    if ('"\'`'.includes(ch)) return `contains a quote (${ch})`;
    if ('<>\\{}|^'.includes(ch)) return `contains "${ch}"; percent-encode it if it is really meant`;
  }
  return null;
}

/** A host name as `appsByHost` keys it: lower-case DNS name, IPv4 dotted quad, or `[ipv6]`. */
export function normaliseHost(input: string): { ok: true; host: string } | { ok: false; error: string } {
  const h = input.toLowerCase();
  if (h.length === 0) return { ok: false, error: 'a host cannot be empty' };
  const bracketed = /^\[(.*)\]$/.exec(h);
  const ipText = bracketed ? bracketed[1]! : h;
  const ip = parseIp(ipText);
  if (ip) {
    if (ip.family === 4 && ipText.includes(':')) return { ok: false, error: `"${input}" is an IPv4-mapped address; write ${ip.address}` };
    if (bracketed && ip.family === 4) return { ok: false, error: `"${input}": only IPv6 addresses go in brackets; write ${ip.address}` };
    return { ok: true, host: ip.family === 6 ? `[${ip.address}]` : ip.address };
  }
  if (bracketed) return { ok: false, error: `"${input}" is not a valid IPv6 address` };
  if (h.includes('*')) return { ok: false, error: `"${input}": wildcard hosts are not supported; list each host name` };
  if (/:[0-9]*$/.test(h)) return { ok: false, error: `"${input}": hosts are matched without the port; remove "${h.slice(h.lastIndexOf(':'))}"` };
  if (h.endsWith('.')) return { ok: false, error: `"${input}": write the name without the trailing dot` };
  if (/[^\x21-\x7e]/.test(h)) return { ok: false, error: `"${input}" is not a valid DNS name (write internationalised names in punycode, xn--...)` };
  if (h.length > 253) return { ok: false, error: `"${input}" is longer than 253 characters` };
  const labels = h.split('.');
  const badLabel = labels.find((l) => !DNS_LABEL.test(l));
  if (badLabel !== undefined) {
    return { ok: false, error: `"${input}" is not a valid DNS name (label "${badLabel}": letters, digits and inner "-", 1 to 63 characters)` };
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return { ok: false, error: `"${input}" is neither a valid IP address nor a DNS name` };
  return { ok: true, host: h };
}

// ---------------------------------------------------------------------------------------------
// Read-only containers for the compiled config (Object.freeze does not stop Map#set or URL setters)

class FrozenMap<K, V> extends Map<K, V> {
  constructor(entries: Iterable<readonly [K, V]>) {
    super();
    for (const [k, v] of entries) Map.prototype.set.call(this, k, v);
    Object.freeze(this);
  }
  override set(key: K): this {
    throw new TypeError(`the configuration is read-only (set ${String(key)})`);
  }
  override delete(key: K): boolean {
    throw new TypeError(`the configuration is read-only (delete ${String(key)})`);
  }
  override clear(): void {
    throw new TypeError('the configuration is read-only (clear)');
  }
}

class FrozenSet<T> extends Set<T> {
  constructor(values: Iterable<T>) {
    super();
    for (const v of values) Set.prototype.add.call(this, v);
    Object.freeze(this);
  }
  override add(value: T): this {
    throw new TypeError(`the configuration is read-only (add ${String(value)})`);
  }
  override delete(value: T): boolean {
    throw new TypeError(`the configuration is read-only (delete ${String(value)})`);
  }
  override clear(): void {
    throw new TypeError('the configuration is read-only (clear)');
  }
}

/** A URL whose setters throw, so no request handler can rewrite the configured upstream. */
class FrozenURL extends URL {
  constructor(href: string) {
    super(href);
    Object.freeze(this);
  }
}
for (const name of ['href', 'protocol', 'username', 'password', 'host', 'hostname', 'port', 'pathname', 'search', 'hash']) {
  const d = Object.getOwnPropertyDescriptor(URL.prototype, name);
  if (!d?.get) continue;
  Object.defineProperty(FrozenURL.prototype, name, {
    get: d.get,
    set() {
      throw new TypeError(`the configuration is read-only (URL ${name})`);
    },
    enumerable: true,
    configurable: false,
  });
}
Object.defineProperty(FrozenURL.prototype, 'searchParams', {
  get(this: URL) {
    return new URLSearchParams(this.search);
  },
  enumerable: true,
  configurable: false,
});

function deepFreeze<T>(value: T, seen = new Set<unknown>()): T {
  if (value === null || typeof value !== 'object' || seen.has(value)) return value;
  seen.add(value);
  if (value instanceof CidrSet || value instanceof URL || value instanceof RegExp) return value;
  if (value instanceof Map) {
    for (const v of value.values()) deepFreeze(v, seen);
  } else if (value instanceof Set) {
    for (const v of value) deepFreeze(v, seen);
  } else {
    for (const v of Object.values(value)) deepFreeze(v, seen);
  }
  return Object.freeze(value);
}

// ---------------------------------------------------------------------------------------------
// The reader: typed access to YAML nodes, every failure recorded as an issue

/** A value in the document and the key path that leads to it. */
interface Val {
  node: ParsedNode;
  path: string;
}

type Fields<K extends string> = { [P in K]?: Val } & { readonly $: Val };

const childPath = (path: string, key: string): string => (path ? `${path}.${key}` : key);

function nullAt(at: ParsedNode): ParsedNode {
  const n = new Scalar(null) as Scalar.Parsed;
  n.range = at.range;
  n.source = '';
  return n;
}

function describe(node: ParsedNode): string {
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

class Reader {
  readonly issues: ConfigIssue[] = [];
  /** Networks with an invalid entry: already reported, so references to them are not reported again. */
  readonly brokenNetworks = new Set<string>();
  private aliasBudget = ALIAS_BUDGET;

  constructor(
    private readonly doc: Document.Parsed,
    private readonly lc: LineCounter,
    readonly file: string,
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
interface Secret {
  value: string;
  inline: boolean;
  source: string;
}

const MAX_SECRET_BYTES = 64 * 1024;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function readSecret(r: Reader, v: Val, what: string, cwd: string, env: NodeJS.ProcessEnv): Secret | undefined {
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
function secretShown(sec: Secret, what: string): string {
  return sec.inline ? `the ${what}` : `the ${what} from ${sec.source}`;
}

function unknownKeyMessage(key: string, keys: readonly string[]): string {
  const guess = didYouMean(key, keys);
  if (guess) return `unknown key "${key}"; did you mean "${guess}"?`;
  return keys.length <= 8 ? `unknown key "${key}"; expected one of: ${keys.join(', ')}` : `unknown key "${key}"`;
}

/** Reads an optional field: absent means `dflt`; a bad value is an issue and also `dflt`. */
function opt<T>(v: Val | undefined, read: (v: Val) => T | undefined, dflt: T): T {
  if (v === undefined) return dflt;
  const out = read(v);
  return out === undefined ? dflt : out;
}

// ---------------------------------------------------------------------------------------------
// Sections

const TOP_KEYS = [
  'listen',
  'tls',
  'trusted_proxies',
  'proxy_protocol',
  'admin',
  'data_dir',
  'store',
  'workers',
  'networks',
  'users_file',
  'session',
  'totp',
  'enrol',
  'password_policy',
  'login_limits',
  'lockdown',
  'attack',
  'notify',
  'audit',
  'upstream_timeouts',
  'shutdown',
  'apps',
  'ldap',
] as const;

interface NetworkRefs {
  set: CidrSet;
  names: string[];
}

/** Compile a parsed document. Issues come back sorted by position. */
export function compileDocument(doc: Document.Parsed, lc: LineCounter, opts: CompileOptions): CompileResult {
  const r = new Reader(doc, lc, opts.file);
  const config = compileRoot(r, doc, opts);
  if (r.issues.length > 0 || !config) {
    const issues = [...r.issues].sort((a, b) => a.line - b.line || a.col - b.col);
    return { ok: false, issues };
  }
  return { ok: true, config };
}

function compileRoot(r: Reader, doc: Document.Parsed, o: CompileOptions): CompiledConfig | null {
  const contents = doc.contents;
  if (contents === null || (isScalar(contents) && contents.value === null)) {
    r.issue(null, '', 'the file is empty; a configuration needs at least "apps"');
    return null;
  }
  const rootNode = r.deref(contents, '');
  if (!rootNode) return null;
  const t = r.object({ node: rootNode, path: '' }, TOP_KEYS, ['apps']);
  if (!t) return null;
  const cwd = resolve(o.cwd);

  const listen = opt(t.listen, (v) => r.listen(v), { host: '127.0.0.1', port: 8080 });
  const dataDir = opt(t.data_dir, (v) => r.filePath(v, cwd), resolve(cwd, 'data'));
  const tls = t.tls && !r.isNull(t.tls) ? compileTls(r, t.tls, cwd, o.checkFiles) : null;
  const trustedProxies = opt(t.trusted_proxies, (v) => compileTrustedProxies(r, v), CidrSet.empty);
  const proxyProtocol = opt(t.proxy_protocol, (v) => r.bool(v), false);
  if (proxyProtocol && trustedProxies.size === 0 && t.proxy_protocol) {
    r.issue(t.proxy_protocol.node, t.proxy_protocol.path, 'proxy_protocol needs trusted_proxies: a PROXY header is only believed from them');
  }
  const { admin, listenAt: adminListenAt } = compileAdmin(r, t.admin, cwd, dataDir);
  if (sharesPort(admin.listen, listen)) {
    const at = adminListenAt ?? t.listen ?? t.$;
    r.issue(at.node, at.path, `the admin listener (${admin.listen.host}:${admin.listen.port}) and "listen" (${listen.host}:${listen.port}) cannot share a port`);
  }
  const env = o.env ?? process.env;
  const store = opt(t.store, (v) => compileStore(r, v, cwd, env), { kind: 'memory' } as CompiledConfig['store']);
  const workers = opt(t.workers, (v) => r.int(v, 1, 64), 1);
  if (workers > 1 && store.kind !== 'redis' && t.workers) {
    r.issue(t.workers.node, t.workers.path, 'workers above 1 need a shared store (store: redis://...); with memory each worker would keep its own sessions and counters');
  }
  const networks = opt(t.networks, (v) => compileNetworks(r, v), new Map<string, CidrSet>());
  const usersFile = opt(t.users_file, (v) => r.filePath(v, cwd), resolve(cwd, 'config/users.yaml'));
  const session = compileSession(r, t.session);
  const totp = compileTotp(r, t.totp, networks, t.enrol);
  const passwordPolicy = compilePasswordPolicy(r, t.password_policy);
  const loginLimits = compileLoginLimits(r, t.login_limits);
  const lockdown = compileLockdown(r, t.lockdown, networks);
  const attack = t.attack && !r.isNull(t.attack) ? compileAttack(r, t.attack) : null;
  const notify = compileNotify(r, t.notify, cwd, env);
  const audit = compileAudit(r, t.audit, cwd, dataDir);
  const upstreamTimeouts = compileUpstreamTimeouts(r, t.upstream_timeouts);
  const shutdown = compileShutdown(r, t.shutdown);
  const apps = t.apps ? compileApps(r, t.apps, networks) : [];
  const ldap = t.ldap && !r.isNull(t.ldap) ? compileLdap(r, t.ldap, cwd, env, o.checkFiles, t.login_limits, loginLimits) : null;

  const appsByHost = new Map<string, CompiledApp>();
  for (const app of apps) for (const h of app.hosts) appsByHost.set(h, app);

  if (r.issues.length > 0) return null;
  return deepFreeze<CompiledConfig>({
    file: resolve(cwd, o.file),
    baseDir: cwd,
    listen,
    tls,
    trustedProxies,
    proxyProtocol,
    admin,
    dataDir,
    store,
    workers,
    networks: new FrozenMap(networks),
    usersFile,
    session,
    totp,
    passwordPolicy,
    loginLimits,
    lockdown,
    attack,
    notify,
    audit,
    upstreamTimeouts,
    shutdown,
    ldap,
    apps,
    appsByHost: new FrozenMap(appsByHost),
  });
}

/** Whether two listeners would collide (port 0 asks the OS for a free port, so never does). */
function sharesPort(a: ListenAddress, b: ListenAddress): boolean {
  const wildcard = (h: string) => h === '0.0.0.0' || h === '::';
  return a.port !== 0 && a.port === b.port && (a.host === b.host || wildcard(a.host) || wildcard(b.host));
}

function compileTls(r: Reader, v: Val, cwd: string, checkFiles: boolean): CompiledConfig['tls'] {
  const t = r.object(v, ['cert', 'key'], ['cert', 'key']);
  if (!t) return null;
  const read = (f: Val | undefined, what: string): string => {
    const p = f ? r.filePath(f, cwd) : undefined;
    if (f && p !== undefined && checkFiles) {
      const why = unreadableFile(p);
      if (why) r.issue(f.node, f.path, `cannot read the TLS ${what} ${p}: ${why}`);
    }
    return p ?? '';
  };
  return { cert: read(t.cert, 'certificate'), key: read(t.key, 'key') };
}

function unreadableFile(p: string): string | null {
  try {
    if (!statSync(p).isFile()) return 'not a regular file';
    accessSync(p, fsConstants.R_OK);
    return null;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'no such file';
    if (code === 'EACCES') return 'permission denied';
    return e instanceof Error ? e.message : String(e);
  }
}

function compileTrustedProxies(r: Reader, v: Val): CidrSet | undefined {
  const items = r.list(v, 'CIDRs');
  if (!items) return undefined;
  const cidrs: Cidr[] = [];
  for (const item of items) {
    const s = r.str(item, 'a CIDR');
    if (s === undefined) continue;
    const p = parseCidr(s);
    if (!p.ok) {
      r.issue(item.node, item.path, p.error);
      continue;
    }
    if (coversEveryone(s) || p.cidr.prefix === 0) {
      const scope =
        p.cidr.family === 6 && p.cidr.prefix === 0
          ? 'every address'
          : s.includes(':')
            ? 'every IPv4 address (written as IPv6 through ::ffff:0:0/96 or ::/96)'
            : 'every IPv4 address';
      r.issue(item.node, item.path, `"${s}" covers ${scope}; trusting it would let any client forge its address through X-Forwarded-For or a PROXY header. List the proxies' own addresses`);
      continue;
    }
    cidrs.push(p.cidr);
  }
  return new CidrSet(cidrs);
}

function compileAdmin(r: Reader, v: Val | undefined, cwd: string, dataDir: string): { admin: CompiledConfig['admin']; listenAt?: Val } {
  const dflt = { listen: { host: '127.0.0.1', port: 9090 }, tokenFile: join(dataDir, 'admin.token') };
  const a = v ? r.object(v, ['listen', 'token_file']) : null;
  if (!a) return { admin: dflt };
  const listen = opt(a.listen, (x) => r.listen(x), dflt.listen);
  const tokenFile = opt(a.token_file, (x) => r.filePath(x, cwd), dflt.tokenFile);
  return { admin: { listen, tokenFile }, ...(a.listen ? { listenAt: a.listen } : {}) };
}

function compileStore(r: Reader, v: Val, cwd: string, env: NodeJS.ProcessEnv): CompiledConfig['store'] | undefined {
  const sec = readSecret(r, v, '"memory" or a redis:// URL', cwd, env);
  if (sec === undefined) return undefined;
  const s = sec.value;
  if (s === 'memory') return { kind: 'memory' };
  const shown = secretShown(sec, 'Redis URL');
  if (!/^rediss?:\/\//i.test(s)) {
    // a typo such as "memroy" is worth showing; anything that may carry a password is not
    const found = sec.inline && /^[A-Za-z0-9+.-]*(:\/\/[^@]*)?$/.test(s) ? `, found "${s}"` : sec.inline ? '' : ` (${sec.source})`;
    return r.issue(v.node, v.path, `expected "memory" or a redis:// or rediss:// URL${found}`);
  }
  const u = checkUrl(r, v, s, ['redis:', 'rediss:'], shown);
  if (!u) return undefined;
  if (!/^(\/([0-9]|[1-9][0-9]{1,3})?)?$/.test(u.pathname)) return r.issue(v.node, v.path, `the path of a Redis URL is the database number (/0), found "${u.pathname}"`);
  for (const k of u.searchParams.keys()) {
    if (k !== 'prefix') return r.issue(v.node, v.path, `a Redis URL takes only the "prefix" parameter (key prefix, to keep gateways apart), found "${k}"`);
  }
  const prefix = u.searchParams.get('prefix');
  if (prefix !== null && !/^[A-Za-z0-9._:-]{1,64}$/.test(prefix)) return r.issue(v.node, v.path, `the Redis key prefix "${prefix}" may use letters, digits and . _ : - (at most 64)`);
  return { kind: 'redis', url: s };
}

/**
 * Common checks of URL-like strings; returns the parsed URL or records an issue. `shown` names the
 * URL in messages (default: its text); secret URLs pass a name so that no password is echoed.
 */
function checkUrl(r: Reader, v: Val, s: string, protocols: readonly string[], shown = `"${s}"`): URL | undefined {
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

function compileNetworks(r: Reader, v: Val): Map<string, CidrSet> | undefined {
  const entries = r.entries(v, 'a mapping of network names to lists of CIDRs');
  if (!entries) return undefined;
  const out = new Map<string, CidrSet>();
  for (const e of entries) {
    if (!NETWORK_NAME.test(e.key) || e.key.length > MAX_NAME_LENGTH) {
      r.issue(e.keyNode, e.value.path, `"${e.key}" is not a valid network name: lower-case letters, digits, "-" and "_", starting with a letter or digit, at most ${MAX_NAME_LENGTH} characters`);
      continue;
    }
    const items = r.list(e.value, 'CIDRs');
    const cidrs: Cidr[] = [];
    if (!items) r.brokenNetworks.add(e.key);
    for (const item of items ?? []) {
      const s = r.str(item, 'a CIDR');
      const p = s === undefined ? undefined : parseCidr(s);
      if (p?.ok) cidrs.push(p.cidr);
      else {
        if (p) r.issue(item.node, item.path, p.error);
        r.brokenNetworks.add(e.key);
      }
    }
    // even when some entries are bad the name is defined, so references to it are not reported twice
    out.set(e.key, new CidrSet(cidrs));
  }
  return out;
}

/**
 * A list of network names and literal CIDRs. `who` names the referrer in the message about a
 * network without entries ("rule relies on network X which has no entries").
 */
function compileNetworkRefs(r: Reader, v: Val, networks: ReadonlyMap<string, CidrSet>, who: string, emptyList: string | null): NetworkRefs | undefined {
  const items = r.list(v, 'network names or CIDRs', emptyList ? { nonEmpty: emptyList } : {});
  if (!items) return undefined;
  const cidrs: Cidr[] = [];
  const names: string[] = [];
  let failed = false;
  for (const item of items) {
    const s = r.str(item, 'a network name or a CIDR');
    if (s === undefined) {
      failed = true;
      continue;
    }
    names.push(s);
    if (NETWORK_NAME.test(s)) {
      const set = networks.get(s);
      if (!set) {
        const guess = didYouMean(s, networks.keys());
        const known = networks.size ? `defined: ${[...networks.keys()].join(', ')}` : 'no networks are defined';
        r.issue(item.node, item.path, `unknown network "${s}" (${guess ? `did you mean "${guess}"?` : known})`);
        failed = true;
      } else if (set.size === 0 && !r.brokenNetworks.has(s)) {
        r.issue(item.node, item.path, `${who} relies on network "${s}" which has no entries`);
        failed = true;
      } else if (set.size === 0) {
        failed = true;
      } else cidrs.push(...set.entries);
      continue;
    }
    if (/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(s) && networks.has(s.toLowerCase())) {
      r.issue(item.node, item.path, `network names are lower case; did you mean "${s.toLowerCase()}"?`);
      failed = true;
      continue;
    }
    const p = parseCidr(s);
    if (!p.ok) {
      const looksLikeCidr = /[./:]/.test(s);
      r.issue(item.node, item.path, looksLikeCidr ? p.error : `"${s}" is neither a network name (lower-case letters, digits, "-", "_") nor a CIDR`);
      failed = true;
      continue;
    }
    cidrs.push(p.cidr);
  }
  return failed ? undefined : { set: new CidrSet(cidrs), names };
}

function compileSession(r: Reader, v: Val | undefined): CompiledConfig['session'] {
  const d = { idleTimeoutMs: 30 * 60_000, absoluteTimeoutMs: 12 * 3_600_000, graceMs: 0, domain: null, portal: null };
  if (!v) return d;
  const s = r.object(v, ['idle_timeout', 'absolute_timeout', 'grace', 'domain', 'portal']);
  if (!s) return d;
  const idleTimeoutMs = opt(s.idle_timeout, (x) => r.duration(x), d.idleTimeoutMs);
  const absoluteTimeoutMs = opt(s.absolute_timeout, (x) => r.duration(x), d.absoluteTimeoutMs);
  const graceMs = opt(s.grace, (x) => r.duration(x, { allowZero: true }), d.graceMs);
  if (idleTimeoutMs > absoluteTimeoutMs) {
    const at = s.idle_timeout ?? s.absolute_timeout ?? s.$;
    r.issue(at.node, at.path, `idle_timeout (${formatDuration(idleTimeoutMs)}) cannot be longer than absolute_timeout (${formatDuration(absoluteTimeoutMs)})`);
  }
  if (graceMs > idleTimeoutMs && s.grace) {
    r.issue(s.grace.node, s.grace.path, `grace (${formatDuration(graceMs)}) cannot be longer than idle_timeout (${formatDuration(idleTimeoutMs)})`);
  }
  const { domain, portal } = compileSessionDomain(r, s.domain, s.portal, s.$);
  return { idleTimeoutMs, absoluteTimeoutMs, graceMs, domain, portal };
}

/**
 * `session.domain` and `session.portal` (both or neither): a DNS name with at least two labels,
 * and an https URL (no path, query or credentials) whose host is the domain or under it.
 */
function compileSessionDomain(r: Reader, dv: Val | undefined, pv: Val | undefined, at: Val): Pick<CompiledConfig['session'], 'domain' | 'portal'> {
  const none = { domain: null, portal: null };
  if (!dv && !pv) return none;
  if (!dv || !pv) {
    const w = dv ?? pv ?? at;
    r.issue(w.node, w.path, 'session.domain and session.portal go together: the domain the session cookie covers, and the https URL of the host that serves the sign-in pages');
    return none;
  }
  const ds = r.str(dv, 'a domain name');
  const ps = r.str(pv, 'an https URL');
  if (ds === undefined || ps === undefined) return none;
  const h = normaliseHost(ds.startsWith('.') ? ds.slice(1) : ds);
  if (!h.ok || h.host.startsWith('[') || parseIp(h.host) || !h.host.includes('.')) {
    r.issue(dv.node, dv.path, `"${ds}" is not a domain for a cookie: write a DNS name with at least two labels, such as example.org`);
    return none;
  }
  const domain = h.host;
  let u: URL;
  try {
    u = new URL(ps);
  } catch {
    r.issue(pv.node, pv.path, `"${ps}" is not a URL: write the portal as https://auth.${domain}`);
    return none;
  }
  if (u.protocol !== 'https:') {
    r.issue(pv.node, pv.path, `the portal must be an https URL (the session cookie is Secure): https://${u.host || 'auth.' + domain}`);
    return none;
  }
  if (u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) {
    r.issue(pv.node, pv.path, `the portal is an origin only (scheme and host, optionally a port): https://${u.host}`);
    return none;
  }
  const host = u.hostname.toLowerCase();
  if (!hostUnderDomain(host, domain)) {
    r.issue(pv.node, pv.path, `the portal's host "${host}" is not ${domain} or under it: the session cookie would not reach it`);
    return none;
  }
  return { domain, portal: { origin: u.origin, host } };
}

/**
 * `totp:`; where a first factor may be enrolled is `totp.enrol` or, shared with passkeys, the
 * top-level `enrol:` (one of the two).
 */
function compileTotp(r: Reader, v: Val | undefined, networks: ReadonlyMap<string, CidrSet>, topEnrol?: Val): TotpConfig {
  const d: TotpConfig = { issuer: 'portcullis', period: 30, digits: 6, algorithm: 'SHA1', skew: 1, enrolNetworks: CidrSet.empty, enrolPrompt: false, always: false };
  const enrolOf = (ev: Val, where: string): { set: CidrSet; prompt: boolean } => {
    const e = r.object(ev, ['networks', 'prompt']);
    const set = e?.networks ? (compileNetworkRefs(r, e.networks, networks, where, null)?.set ?? CidrSet.empty) : CidrSet.empty;
    return { set, prompt: e?.prompt ? (r.bool(e.prompt) ?? false) : false };
  };
  if (!v) {
    if (!topEnrol) return d;
    const e = enrolOf(topEnrol, 'enrol');
    return { ...d, enrolNetworks: e.set, enrolPrompt: e.prompt };
  }
  const t = r.object(v, ['issuer', 'period', 'digits', 'algorithm', 'skew', 'enrol', 'always']);
  if (!t) return d;
  if (t.enrol && topEnrol) r.issue(topEnrol.node, topEnrol.path, 'set either enrol or totp.enrol, not both');
  const issuer = opt(
    t.issuer,
    (x) => {
      const s = r.name(x, 'an issuer name');
      if (s === undefined) return undefined;
      if (s.includes(':')) return r.issue(x.node, x.path, 'the issuer cannot contain ":" (authenticator apps read it as the label separator)');
      if (s.length > 64) return r.issue(x.node, x.path, 'the issuer is limited to 64 characters');
      return s;
    },
    d.issuer,
  );
  const enrolVal = t.enrol ?? topEnrol;
  const enrol = enrolVal ? enrolOf(enrolVal, t.enrol ? 'totp.enrol' : 'enrol') : { set: d.enrolNetworks, prompt: false };
  const enrolNetworks = enrol.set;
  return {
    issuer,
    period: opt(t.period, (x) => r.int(x, 15, 120), d.period),
    digits: opt(t.digits, (x) => r.oneOf(x, [6, 8] as const), d.digits),
    algorithm: opt(t.algorithm, (x) => r.oneOf(x, ['SHA1', 'SHA256', 'SHA512'] as const), d.algorithm),
    skew: opt(t.skew, (x) => r.int(x, 0, 2), d.skew),
    enrolNetworks,
    enrolPrompt: enrol.prompt,
    always: opt(t.always, (x) => r.bool(x), false),
  };
}

function compilePasswordPolicy(r: Reader, v: Val | undefined): PasswordPolicy {
  const d: PasswordPolicy = { minLength: 8, blocklist: 'common', minStrength: 3, onWeak: 'deny' };
  if (!v) return d;
  const p = r.object(v, ['min_length', 'blocklist', 'min_strength', 'on_weak']);
  if (!p) return d;
  const minLength = opt(
    p.min_length,
    (x) => {
      if (isScalar(x.node) && typeof x.node.value === 'number' && Number.isInteger(x.node.value) && x.node.value < 8) {
        return r.issue(x.node, x.path, `min_length ${x.node.value} is below 8, the minimum NIST SP 800-63B allows for memorised secrets`);
      }
      return r.int(x, 8, 64);
    },
    d.minLength,
  );
  return {
    minLength,
    blocklist: opt(p.blocklist, (x) => r.oneOf(x, ['common', 'none'] as const), d.blocklist),
    minStrength: opt(p.min_strength, (x) => r.oneOf(x, [0, 1, 2, 3, 4] as const), d.minStrength),
    onWeak: opt(p.on_weak, (x) => r.oneOf(x, ['deny', 'change', 'flag'] as const), d.onWeak),
  };
}

/** Counts the stores track exactly (distinct members are capped at 1000 per key in memory). */
const MAX_COUNT = 1000;

function compileLoginLimits(r: Reader, v: Val | undefined): LoginLimits {
  const m = 60_000;
  const d: LoginLimits = {
    perIp: { maxFailures: 20, windowMs: 15 * m, blockMs: 15 * m },
    perUser: { maxFailures: 5, windowMs: 15 * m, lockoutMs: 15 * m, ceiling: { maxFailures: 100, windowMs: 24 * 60 * m } },
    spray: { distinctUsers: 10, windowMs: 10 * m, blockMs: 60 * m },
    samePassword: { accounts: 20, windowMs: 60 * m, blockMs: 24 * 60 * m },
    mfa: { maxFailures: 5, windowMs: 15 * m },
    ipv6Prefix: 64,
    // One hashing thread per slot, at the lowest priority (src/auth/hash-pool.ts): they only get
    // CPU time the event loop leaves, so more threads than cores add memory (64 MiB each in
    // flight), not speed, and on a 2-core machine 1, 2 and 4 threads measured the same under a
    // login flood. At least 2, so that two people signing in at the same moment are not refused.
    maxConcurrentHashes: Math.min(4, Math.max(2, availableParallelism())),
  };
  if (!v) return d;
  const l = r.object(v, ['per_ip', 'per_user', 'spray', 'same_password', 'mfa', 'ipv6_prefix', 'hash_concurrency']);
  if (!l) return d;
  const count = (x: Val | undefined, dflt: number) => opt(x, (y) => r.int(y, 1, MAX_COUNT), dflt);
  const dur = (x: Val | undefined, dflt: number) => opt(x, (y) => r.duration(y), dflt);
  const section = <K extends string>(x: Val | undefined, keys: readonly K[]) => (x ? r.object(x, keys) : null) ?? ({} as Partial<Fields<K>>);

  const ip = section(l.per_ip, ['max_failures', 'window', 'block']);
  const user = section(l.per_user, ['max_failures', 'window', 'lockout', 'ceiling']);
  const ceiling = section(user.ceiling, ['max_failures', 'window']);
  const spray = section(l.spray, ['distinct_users', 'window', 'block']);
  const same = section(l.same_password, ['accounts', 'window', 'block']);
  const mfa = section(l.mfa, ['max_failures', 'window']);
  return {
    perIp: { maxFailures: count(ip.max_failures, d.perIp.maxFailures), windowMs: dur(ip.window, d.perIp.windowMs), blockMs: dur(ip.block, d.perIp.blockMs) },
    perUser: {
      maxFailures: count(user.max_failures, d.perUser.maxFailures),
      windowMs: dur(user.window, d.perUser.windowMs),
      lockoutMs: dur(user.lockout, d.perUser.lockoutMs),
      ceiling: {
        maxFailures: count(ceiling.max_failures, d.perUser.ceiling.maxFailures),
        windowMs: dur(ceiling.window, d.perUser.ceiling.windowMs),
      },
    },
    spray: {
      distinctUsers: count(spray.distinct_users, d.spray.distinctUsers),
      windowMs: dur(spray.window, d.spray.windowMs),
      blockMs: dur(spray.block, d.spray.blockMs),
    },
    samePassword: {
      // one account is a user retyping an old password, never a spray
      accounts: opt(same.accounts, (y) => r.int(y, 2, MAX_COUNT), d.samePassword.accounts),
      windowMs: dur(same.window, d.samePassword.windowMs),
      blockMs: dur(same.block, d.samePassword.blockMs),
    },
    mfa: { maxFailures: count(mfa.max_failures, d.mfa.maxFailures), windowMs: dur(mfa.window, d.mfa.windowMs) },
    ipv6Prefix: opt(l.ipv6_prefix, (x) => r.int(x, IPV6_PREFIX_MIN, 128), d.ipv6Prefix),
    maxConcurrentHashes: opt(l.hash_concurrency, (x) => r.int(x, 1, 64), d.maxConcurrentHashes),
  };
}

function compileLockdown(r: Reader, v: Val | undefined, networks: ReadonlyMap<string, CidrSet>): CompiledConfig['lockdown'] {
  const d = { networks: CidrSet.empty, networkNames: [] as string[] };
  if (!v) return d;
  const l = r.object(v, ['networks']);
  if (!l?.networks) return d;
  const refs = compileNetworkRefs(r, l.networks, networks, 'lockdown', null);
  return refs ? { networks: refs.set, networkNames: refs.names } : d;
}

/** `attack: { threshold: N | factor: N, cooldown: 30m }`: exactly one of threshold and factor. */
function compileAttack(r: Reader, v: Val): AttackConfig | null {
  const a = r.object(v, ['threshold', 'factor', 'cooldown']);
  if (!a) return null;
  if ((a.threshold === undefined) === (a.factor === undefined)) {
    const at = a.factor ?? a.$;
    r.issue(at.node, at.path, a.threshold === undefined ? 'give "threshold" (failed sign-ins per minute) or "factor" (times the baseline of the last day)' : 'give "threshold" or "factor", not both');
    return null;
  }
  const threshold = a.threshold ? r.int(a.threshold, 1, 1_000_000) : undefined;
  const factor = a.factor ? r.int(a.factor, 2, 1000) : undefined;
  const cooldownMs = opt(a.cooldown, (x) => r.duration(x), 30 * 60_000);
  if (threshold === undefined && factor === undefined) return null;
  return { threshold: threshold ?? null, factor: factor ?? null, cooldownMs };
}

function compileNotify(r: Reader, v: Val | undefined, cwd: string, env: NodeJS.ProcessEnv): NotifyConfig {
  const allEvents = new FrozenSet<string>(NOTIFY_EVENTS);
  const d: NotifyConfig = { webhook: null, smtp: null, events: allEvents };
  if (!v) return d;
  const n = r.object(v, ['webhook', 'smtp', 'events']);
  if (!n) return d;
  let webhook: string | null = null;
  if (n.webhook && !r.isNull(n.webhook)) {
    const w = n.webhook;
    const sec = readSecret(r, w, 'an https:// URL', cwd, env);
    const s = sec?.value;
    const u = s === undefined ? undefined : checkUrl(r, w, s, ['https:', 'http:'], secretShown(sec!, 'webhook URL'));
    if (s !== undefined && u) {
      if (u.username || u.password || s.includes('@')) r.issue(w.node, w.path, 'the webhook URL cannot carry credentials (user:password@); put a token in the path or query');
      else if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) r.issue(w.node, w.path, 'the webhook carries user names and addresses; use https:// (plain http:// only to a loopback address)');
      else webhook = s;
    }
  }
  let smtp: NotifyConfig['smtp'] = null;
  if (n.smtp && !r.isNull(n.smtp)) smtp = compileSmtp(r, n.smtp, cwd, env);
  let events: ReadonlySet<string> = allEvents;
  if (n.events) {
    const items = r.list(n.events, 'event names');
    if (items) {
      const chosen: string[] = [];
      for (const item of items) {
        const e = r.oneOf(item, NOTIFY_EVENTS);
        if (e === undefined) continue;
        if (chosen.includes(e)) r.issue(item.node, item.path, `"${e}" is listed twice`);
        else chosen.push(e);
      }
      events = new FrozenSet(chosen);
    }
  }
  return { webhook, smtp, events };
}

const LOOPBACK = CidrSet.parse(['127.0.0.0/8', '::1/128']);

function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || LOOPBACK.contains(hostname.replace(/^\[(.*)\]$/, '$1'));
}

function compileSmtp(r: Reader, v: Val, cwd: string, env: NodeJS.ProcessEnv): NotifyConfig['smtp'] {
  const s = r.object(v, ['url', 'from', 'to'], ['url', 'from', 'to']);
  if (!s) return null;
  let url = '';
  if (s.url) {
    const sec = readSecret(r, s.url, 'an smtp:// or smtps:// URL', cwd, env);
    const text = sec?.value;
    const u = text === undefined ? undefined : checkUrl(r, s.url, text, ['smtp:', 'smtps:'], secretShown(sec!, 'SMTP URL'));
    if (u && text !== undefined) {
      if (u.pathname !== '' && u.pathname !== '/') r.issue(s.url.node, s.url.path, `an SMTP URL has no path, found "${u.pathname}"`);
      else url = text;
    }
  }
  const email = (x: Val): string | undefined => {
    const a = r.str(x, 'an e-mail address');
    if (a === undefined) return undefined;
    if (a.length > 254 || !EMAIL.test(a)) return r.issue(x.node, x.path, `"${a}" is not a plain e-mail address (name@example.org)`);
    return a;
  };
  const from = s.from ? email(s.from) ?? '' : '';
  const to: string[] = [];
  if (s.to) {
    for (const item of r.list(s.to, 'e-mail addresses', { nonEmpty: 'needs at least one recipient' }) ?? []) {
      const a = email(item);
      if (a !== undefined) to.push(a);
    }
  }
  return { url, from, to };
}

function compileAudit(r: Reader, v: Val | undefined, cwd: string, dataDir: string): CompiledConfig['audit'] {
  const d = { file: join(dataDir, 'audit.jsonl') };
  if (!v) return d;
  const a = r.object(v, ['file']);
  if (!a?.file) return d;
  if (r.isNull(a.file)) return { file: null };
  return { file: opt(a.file, (x) => r.filePath(x, cwd), d.file) };
}

/** `shutdown: { drain: 10s, grace: 30s }`; 0s is allowed for either (no drain, no grace). */
function compileShutdown(r: Reader, v: Val | undefined): CompiledConfig['shutdown'] {
  const d = { drainMs: 10_000, graceMs: 30_000 };
  if (!v) return d;
  const o = r.object(v, ['drain', 'grace']);
  if (!o) return d;
  const max = 10 * 60_000;
  const bounded = (x: Val): number | undefined => {
    const ms = r.duration(x, { allowZero: true });
    if (ms !== undefined && ms > max) return r.issue(x.node, x.path, `at most ${formatDuration(max)}: an orchestrator kills a process that takes longer`);
    return ms;
  };
  return { drainMs: opt(o.drain, bounded, d.drainMs), graceMs: opt(o.grace, bounded, d.graceMs) };
}

function compileUpstreamTimeouts(r: Reader, v: Val | undefined): CompiledConfig['upstreamTimeouts'] {
  const d = { connectMs: 5_000, headersMs: 60_000, idleMs: 5 * 60_000 };
  if (!v) return d;
  const u = r.object(v, ['connect', 'headers', 'idle']);
  if (!u) return d;
  return {
    connectMs: opt(u.connect, (x) => r.duration(x), d.connectMs),
    headersMs: opt(u.headers, (x) => r.duration(x), d.headersMs),
    idleMs: opt(u.idle, (x) => r.duration(x), d.idleMs),
  };
}

// ---------------------------------------------------------------------------------------------
// Apps and rules

function compileApps(r: Reader, v: Val, networks: ReadonlyMap<string, CidrSet>): CompiledApp[] {
  const items = r.list(v, 'apps', { nonEmpty: 'at least one app is needed' });
  if (!items) return [];
  const apps: CompiledApp[] = [];
  const names = new Map<string, string>();
  const hostOwners = new Map<string, { app: string; path: string }>();
  for (const item of items) {
    const app = compileApp(r, item, networks);
    if (!app) continue;
    const { compiled, nameVal, hostVals } = app;
    const prevName = names.get(compiled.name);
    if (prevName !== undefined) r.issue(nameVal.node, nameVal.path, `app name "${compiled.name}" is already used by ${prevName}`);
    else if (compiled.name) names.set(compiled.name, item.path);
    compiled.hosts.forEach((h, i) => {
      const owner = hostOwners.get(h);
      const hv = hostVals[i]!;
      if (owner) r.issue(hv.node, hv.path, `host "${h}" is already served by app "${owner.app}" (${owner.path})`);
      else hostOwners.set(h, { app: compiled.name, path: item.path });
    });
    apps.push(compiled);
  }
  return apps;
}

function compileApp(
  r: Reader,
  v: Val,
  networks: ReadonlyMap<string, CidrSet>,
): { compiled: CompiledApp; nameVal: Val; hostVals: Val[] } | null {
  const a = r.object(v, ['name', 'hosts', 'upstream', 'websocket', 'case_insensitive_paths', 'rules', 'basic_auth'], ['name', 'hosts', 'upstream', 'rules']);
  if (!a) return null;
  const nameVal = a.name ?? v;
  const name = opt(
    a.name,
    (x) => {
      const s = r.str(x, 'an app name');
      if (s === undefined) return undefined;
      if (!APP_NAME.test(s) || s.length > MAX_NAME_LENGTH) {
        return r.issue(x.node, x.path, `"${s}" is not a valid app name: lower-case letters, digits and "-", starting with a letter or digit, at most ${MAX_NAME_LENGTH} characters`);
      }
      return s;
    },
    '',
  );

  const hosts: string[] = [];
  const hostVals: Val[] = [];
  if (a.hosts) {
    for (const item of r.list(a.hosts, 'host names', { nonEmpty: 'an app needs at least one host' }) ?? []) {
      const s = r.str(item, 'a host name');
      if (s === undefined) continue;
      const h = normaliseHost(s);
      if (!h.ok) {
        r.issue(item.node, item.path, h.error);
        continue;
      }
      if (hosts.includes(h.host)) {
        r.issue(item.node, item.path, `host "${h.host}" is listed twice`);
        continue;
      }
      hosts.push(h.host);
      hostVals.push(item);
    }
  }

  // on an issue the placeholder is never used: a config with issues is not built
  const upstream = (a.upstream && compileUpstream(r, a.upstream)) || { kind: 'builtin' as const, name: 'whoami' as const };
  const websocket = opt(a.websocket, (x) => r.bool(x), false);
  // IIS-hosted apps (Outlook on the web, ECP, RD Web) treat /ECP and /ecp alike: their rules must too,
  // or a deny on /ecp/** is dodged by changing the letter case
  const ci = opt(a.case_insensitive_paths, (x) => r.bool(x), false);

  const rules: CompiledRule[] = [];
  if (a.rules) {
    (r.list(a.rules, 'rules') ?? []).forEach((item, index) => {
      const rule = compileRule(r, item, index, networks, ci);
      if (rule) rules.push(rule);
    });
  }

  let basicAuthPaths: PathMatcher[] = [];
  if (a.basic_auth) {
    const b = r.object(a.basic_auth, ['paths'], ['paths']);
    if (b?.paths) basicAuthPaths = compilePaths(r, b.paths, undefined, ci) ?? [];
  }

  return {
    compiled: { name, hosts, upstream, websocket, rules, basicAuthPaths, caseInsensitivePaths: ci, pos: r.pos(v.node) },
    nameVal,
    hostVals,
  };
}

function compileUpstream(r: Reader, v: Val): CompiledApp['upstream'] | undefined {
  const s = r.str(v, 'builtin:whoami or an http:// or https:// URL');
  if (s === undefined) return undefined;
  if (s === 'builtin:whoami') return { kind: 'builtin', name: 'whoami' };
  if (s.startsWith('builtin:')) return r.issue(v.node, v.path, `unknown built-in upstream "${s}"; the only one is builtin:whoami`);
  const u = checkUrl(r, v, s, ['http:', 'https:']);
  if (!u) return undefined;
  if (u.username || u.password || s.includes('@')) {
    return r.issue(v.node, v.path, 'the upstream URL cannot carry credentials (user:password@); the gateway forwards identity in headers');
  }
  if (s.includes('?')) return r.issue(v.node, v.path, 'the upstream URL cannot have a query string');
  if (u.pathname !== '/') {
    return r.issue(v.node, v.path, `the upstream URL cannot have a path ("${u.pathname}"): the app receives exactly the path that was authorised`);
  }
  const url = new FrozenURL(u.href);
  return { kind: 'http', url, origin: url.origin };
}

const RULE_KEYS = ['paths', 'methods', 'networks', 'groups', 'policy'] as const;

function compileRule(r: Reader, v: Val, index: number, networks: ReadonlyMap<string, CidrSet>, caseInsensitive: boolean): CompiledRule | null {
  const f = r.object(v, RULE_KEYS, ['policy']);
  if (!f) return null;
  const emptyList = (key: string) => `an empty ${key} list would never match; remove the key to match any ${key === 'paths' ? 'path' : key.replace(/s$/, '')}`;
  const policy = f.policy ? r.oneOf(f.policy, POLICIES) : undefined;
  const paths = f.paths ? compilePaths(r, f.paths, emptyList('paths'), caseInsensitive) : null;
  const methods = f.methods ? compileMethods(r, f.methods, emptyList('methods')) : null;
  const refs = f.networks ? compileNetworkRefs(r, f.networks, networks, 'rule', emptyList('networks')) : null;
  const groups = f.groups ? compileGroups(r, f.groups, emptyList('groups')) : null;
  if (policy === 'bypass' && f.groups && f.policy) {
    r.issue(f.policy.node, f.policy.path, 'a groups condition is only known after sign-in, so it cannot bypass; use password or mfa, or drop groups');
  }
  if (!policy || paths === undefined || methods === undefined || refs === undefined || groups === undefined) return null;

  const conds: string[] = [];
  if (paths) conds.push(`paths: [${paths.map((p) => p.source).join(', ')}]`);
  if (methods) conds.push(`methods: [${[...methods].join(', ')}]`);
  if (refs) conds.push(`networks: [${refs.names.join(', ')}]`);
  if (groups) conds.push(`groups: [${groups.join(', ')}]`);
  return {
    index,
    pos: r.pos(v.node),
    policy,
    paths,
    methods: methods ? new FrozenSet(methods) : null,
    networks: refs ? refs.set : null,
    networkNames: refs ? refs.names : null,
    groups,
    label: `${v.path} {${conds.join(', ')}} -> ${policy}`,
  };
}

function compilePaths(r: Reader, v: Val, emptyList?: string, caseInsensitive = false): PathMatcher[] | undefined {
  const items = r.list(v, 'path patterns', emptyList ? { nonEmpty: emptyList } : { nonEmpty: 'needs at least one path pattern' });
  if (!items) return undefined;
  const out: PathMatcher[] = [];
  let failed = false;
  for (const item of items) {
    const s = r.str(item, 'a path pattern');
    const p = s === undefined ? undefined : compilePathPattern(s, { caseInsensitive });
    if (p && !p.ok) r.issue(item.node, item.path, p.error);
    if (p?.ok) out.push(p.matcher);
    else failed = true;
  }
  return failed ? undefined : out;
}

function compileMethods(r: Reader, v: Val, emptyList: string): string[] | undefined {
  const items = r.list(v, 'HTTP methods', { nonEmpty: emptyList });
  if (!items) return undefined;
  const out: string[] = [];
  let failed = false;
  for (const item of items) {
    const s = r.str(item, 'an HTTP method');
    let why: string | null = null;
    if (s === undefined) why = '';
    else if (!HTTP_TOKEN.test(s)) why = `"${s}" is not an HTTP method`;
    else if (s !== s.toUpperCase()) why = `"${s}": HTTP methods are case-sensitive and "${s}" is not "${s.toUpperCase()}"; write ${s.toUpperCase()}`;
    else if (REFUSED_METHODS[s]) why = REFUSED_METHODS[s]!;
    else if (out.includes(s)) why = `${s} is listed twice`;
    if (why !== null) {
      if (why) r.issue(item.node, item.path, why);
      failed = true;
    } else out.push(s!);
  }
  return failed ? undefined : out;
}

function compileGroups(r: Reader, v: Val, emptyList: string): string[] | undefined {
  const items = r.list(v, 'group names', { nonEmpty: emptyList });
  if (!items) return undefined;
  const out: string[] = [];
  let failed = false;
  for (const item of items) {
    const s = r.str(item, 'a group name');
    let why: string | null = null;
    if (s === undefined) why = '';
    else if (!/^[^\s,\u0000-\u001f\u007f]+$/.test(s)) why = `"${s}" is not a valid group name (no spaces, commas or control characters)`;
    else if (out.includes(s)) why = `group "${s}" is listed twice`;
    if (why !== null) {
      if (why) r.issue(item.node, item.path, why);
      failed = true;
    } else out.push(s!);
  }
  return failed ? undefined : out;
}

// ---- ldap (issue 12) ----

const LDAP_DEFAULTS: Record<LdapConfig['implementation'], { userFilter: string | null; groupFilter: string | null; attributes: LdapConfig['attributes'] }> = {
  // as Authelia's: the name is a sAMAccountName or a userPrincipalName; groups nested through
  // LDAP_MATCHING_RULE_IN_CHAIN, evaluated by the domain controller
  activedirectory: {
    userFilter: '(&(|(sAMAccountName={username})(userPrincipalName={username}))(objectCategory=person)(objectClass=user))',
    groupFilter: '(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={dn}))',
    attributes: { username: 'sAMAccountName', email: 'mail', name: 'displayName', groups: 'memberOf', id: 'objectGUID' },
  },
  // groupOfNames searched by member (nested groups followed by the gateway, bounded)
  openldap: {
    userFilter: '(&(objectClass=person)(uid={username}))',
    groupFilter: '(&(objectClass=groupOfNames)(member={dn}))',
    attributes: { username: 'uid', email: 'mail', name: 'displayName', groups: 'memberOf', id: 'entryUUID' },
  },
  custom: {
    userFilter: null,
    groupFilter: null,
    attributes: { username: 'uid', email: 'mail', name: 'displayName', groups: 'memberOf', id: 'entryUUID' },
  },
};

/** An attribute description: a name or an OID, options allowed (RFC 4512). */
const LDAP_ATTR = /^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)(?:;[A-Za-z0-9-]+)*$/;

/** Why `f` is not an RFC 4515 filter shape (balanced, parenthesised, no NUL), or null. */
export function ldapFilterProblem(f: string): string | null {
  if (!f.startsWith('(') || !f.endsWith(')')) return 'a filter is written in parentheses, e.g. (uid={username})';
  let depth = 0;
  for (let i = 0; i < f.length; i++) {
    const c = f[i];
    if (c === '\\') {
      if (!/^[0-9a-fA-F]{2}$/.test(f.slice(i + 1, i + 3))) return 'a backslash in a filter starts a two-digit hex escape (\\2a)';
      i += 2;
    } else if (c === '(') depth++;
    else if (c === ')' && --depth < 0) return 'unbalanced parentheses';
    else if (c === '\u0000') return 'a filter cannot contain NUL';
    if (depth === 0 && i < f.length - 1) return 'a filter is one parenthesised expression';
  }
  return depth === 0 ? null : 'unbalanced parentheses';
}

function compileLdap(
  r: Reader,
  v: Val,
  cwd: string,
  env: NodeJS.ProcessEnv,
  checkFiles: boolean,
  limitsAt: Val | undefined,
  limits: LoginLimits,
): LdapConfig | null {
  const keys = ['implementation', 'url', 'start_tls', 'ca_file', 'insecure', 'bind_dn', 'bind_password', 'base_dn', 'user_filter', 'group_filter', 'attributes', 'lockout_threshold', 'timeout', 'cache'] as const;
  const o = r.object(v, keys, ['url', 'bind_dn', 'bind_password', 'base_dn']);
  if (!o) return null;
  const n0 = r.issues.length;
  const implementation = opt(o.implementation, (x) => r.oneOf(x, ['activedirectory', 'openldap', 'custom'] as const), 'openldap' as LdapConfig['implementation']);
  const d = LDAP_DEFAULTS[implementation];
  const startTls = opt(o.start_tls, (x) => r.bool(x), false);
  const insecure = opt(o.insecure, (x) => r.bool(x), false);
  const urlVals = o.url ? (isSeq(o.url.node) ? r.list(o.url, 'ldap:// or ldaps:// URLs', { nonEmpty: 'list at least one directory URL' }) ?? [] : [o.url]) : [];
  const urls: string[] = [];
  for (const u of urlVals) {
    const s = r.name(u, 'an ldap:// or ldaps:// URL');
    if (s === undefined) continue;
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      r.issue(u.node, u.path, `"${s}" is not a URL; write ldaps://HOST[:PORT] or ldap://HOST[:PORT]`);
      continue;
    }
    if (url.protocol !== 'ldap:' && url.protocol !== 'ldaps:') {
      r.issue(u.node, u.path, `"${s}": the directory is reached over ldaps:// or ldap://`);
      continue;
    }
    if (url.username || url.password || (url.pathname && url.pathname !== '/') || url.search || url.hash || !url.hostname) {
      r.issue(u.node, u.path, `"${s}": write only the scheme, host and port; the bind DN and base DN have their own keys`);
      continue;
    }
    if (url.protocol === 'ldaps:' && startTls) {
      r.issue(u.node, u.path, `"${s}" is already TLS (ldaps://); start_tls applies to ldap:// URLs`);
      continue;
    }
    if (url.protocol === 'ldap:' && !startTls && !insecure) {
      r.issue(u.node, u.path, `"${s}" would send passwords in clear text; use ldaps://, set start_tls: true, or (on a trusted link only) insecure: true`);
      continue;
    }
    urls.push(`${url.protocol}//${url.host}`);
  }
  let caFile: string | null = null;
  if (o.ca_file && !r.isNull(o.ca_file)) {
    const p = r.filePath(o.ca_file, cwd);
    if (p !== undefined) {
      const why = checkFiles ? unreadableFile(p) : null;
      if (why) r.issue(o.ca_file.node, o.ca_file.path, `cannot read the CA file ${p}: ${why}`);
      else if (checkFiles && !/-----BEGIN CERTIFICATE-----/.test(readFileSync(p, 'utf8'))) r.issue(o.ca_file.node, o.ca_file.path, `${p} holds no PEM certificate`);
      caFile = p;
    }
  }
  const bindDn = o.bind_dn ? r.name(o.bind_dn, 'the service account DN') : undefined;
  const secret = o.bind_password ? readSecret(r, o.bind_password, 'the service account password', cwd, env) : undefined;
  if (secret && secret.value === '' && o.bind_password) r.issue(o.bind_password.node, o.bind_password.path, 'an empty password is an unauthenticated bind; give the service account password');
  const baseDn = o.base_dn ? r.name(o.base_dn, 'the base DN') : undefined;
  const filter = (x: Val | undefined, dflt: string | null, placeholder: string, what: string): string | null => {
    if (!x || r.isNull(x)) {
      if (dflt === null && what === 'user_filter') r.issue(v.node, v.path, `implementation: ${implementation} has no default user_filter; write one, e.g. (uid={username})`);
      return dflt;
    }
    const s = r.name(x, 'an LDAP filter');
    if (s === undefined) return null;
    const why = ldapFilterProblem(s.replace(/\{(username|dn)\}/g, 'x'));
    if (why) return r.issue(x.node, x.path, why) ?? null;
    if (!s.includes(placeholder)) return r.issue(x.node, x.path, `the filter must contain ${placeholder}`) ?? null;
    return s;
  };
  const userFilter = filter(o.user_filter, d.userFilter, '{username}', 'user_filter');
  const groupFilter = filter(o.group_filter, d.groupFilter, '{dn}', 'group_filter');
  const attributes = { ...d.attributes };
  if (o.attributes) {
    const a = r.object(o.attributes, ['username', 'email', 'name', 'groups', 'id'] as const);
    if (a) {
      for (const k of ['username', 'email', 'name', 'groups', 'id'] as const) {
        const x = a[k];
        if (!x) continue;
        const s = r.name(x, 'an attribute name');
        if (s === undefined) continue;
        if (!LDAP_ATTR.test(s)) r.issue(x.node, x.path, `"${s}" is not an LDAP attribute name`);
        else attributes[k] = s;
      }
    }
  }
  const lockoutThreshold = opt(o.lockout_threshold, (x) => r.int(x, 2, MAX_COUNT), 10);
  const timeoutMs = opt(o.timeout, (x) => r.duration(x), 5000);
  const cacheMs = opt(o.cache, (x) => r.duration(x, { allowZero: true }), 60_000);
  if (o.cache && cacheMs > 60 * 60_000) r.issue(o.cache.node, o.cache.path, 'at most 1h: a user removed from a group keeps it for as long as it is cached');

  // the directory's lockout is reached through the gateway only if a per-user counter admits
  // that many binds: every counter that admits binds for one account must stay below it
  const at = (path: string[]): Val | undefined => {
    let cur = limitsAt;
    for (const k of path) {
      if (!cur || !isMap(cur.node)) return undefined;
      const pair = cur.node.items.find((p) => isScalar(p.key) && p.key.value === k);
      if (!pair || !pair.value) return undefined;
      cur = { node: pair.value as ParsedNode, path: childPath(cur.path, k) };
    }
    return cur;
  };
  const thresholdAt = o.lockout_threshold ?? v;
  const userAt = at(['per_user', 'max_failures']);
  if (limits.perUser.maxFailures >= lockoutThreshold) {
    const where = userAt ?? thresholdAt;
    r.issue(
      where.node,
      userAt ? userAt.path : thresholdAt.path,
      `login_limits.per_user.max_failures (${limits.perUser.maxFailures}) must be below ldap.lockout_threshold (${lockoutThreshold}): otherwise an attacker signing in through the gateway locks directory accounts`,
    );
  }
  const ceilingAt = at(['per_user', 'ceiling', 'max_failures']);
  if (ceilingAt && limits.perUser.ceiling.maxFailures >= lockoutThreshold) {
    r.issue(
      ceilingAt.node,
      ceilingAt.path,
      `login_limits.per_user.ceiling.max_failures (${limits.perUser.ceiling.maxFailures}) must be below ldap.lockout_threshold (${lockoutThreshold}): the ceiling admits that many binds per account`,
    );
  } else if (!ceilingAt && limits.perUser.ceiling.maxFailures >= lockoutThreshold) {
    // the ceiling's default (100 a day) is meant for the gateway's own hashes; with a directory
    // it is held below the lockout: (LoginLimits is not frozen yet)
    (limits.perUser.ceiling as { maxFailures: number }).maxFailures = lockoutThreshold - 1;
  }
  if (r.issues.length > n0 || bindDn === undefined || !secret || baseDn === undefined || userFilter === null || urls.length === 0) return null;
  return { implementation, urls, startTls, caFile, insecure, bindDn, bindPassword: secret.value, baseDn, userFilter, groupFilter, attributes, lockoutThreshold, timeoutMs, cacheMs };
}
