/**
 * Loading the configuration: one YAML file in, a deep-frozen `CompiledConfig` or every issue
 * (`FILE:LINE:COL key.path: message`) out. A running gateway keeps its old config when a new
 * one has issues; it never runs a half-valid one.
 *
 * The YAML is read as YAML 1.2 (core schema: `yes`/`no`/`on`/`off` are text, not booleans), with
 * no merge keys (`<<`), duplicate keys refused and every parser warning treated as an error.
 * When the YAML itself is malformed, only the syntax errors are reported: checking the keys of a
 * mis-parsed tree would add confusing noise.
 *
 * Keys (snake_case) and defaults. Relative paths resolve against the working directory.
 *
 *   listen: "127.0.0.1:8080"           IP literal and port ([::1]:8080 for IPv6)
 *   tls: { cert: FILE, key: FILE }     optional; both must be readable files
 *   trusted_proxies: []                strict CIDRs; a range covering every address is refused
 *   proxy_protocol: false              needs trusted_proxies
 *   admin: { listen: "127.0.0.1:9090", token_file: DATA_DIR/admin.token }
 *   data_dir: "./data"
 *   store: memory                      or redis://[user:pass@]host[:port][/db] (rediss:// for TLS)
 *                                      (a secret: see below)
 *   networks: {}                       NAME: [CIDR, ...]; NAME matches ^[a-z0-9][a-z0-9_-]*$
 *   users_file: "./config/users.yaml"
 *   session: { idle_timeout: 30m, absolute_timeout: 12h }
 *   totp: { issuer: portcullis, period: 30, digits: 6, algorithm: SHA1, skew: 1,
 *           enrol: { networks: [] } }          period 15..120, digits 6|8, SHA1|SHA256|SHA512, skew 0..2
 *   password_policy: { min_length: 8, blocklist: common, min_strength: 3, on_weak: deny }
 *   login_limits:
 *     per_ip:   { max_failures: 20, window: 15m, block: 15m }
 *     per_user: { max_failures: 5,  window: 15m, lockout: 15m, ceiling: { max_failures: 100, window: 24h } }
 *     spray:    { distinct_users: 10, window: 10m, block: 1h }
 *     same_password: { accounts: 20, window: 1h, block: 24h }   accounts 2..1000
 *     mfa:      { max_failures: 5, window: 15m }
 *     ipv6_prefix: 64                              32..128
 *   lockdown: { networks: [] }                     who may still reach apps during lockdown
 *   attack: { threshold: 300, cooldown: 30m }      optional (absent: no attack posture); or
 *           { factor: 10, cooldown: 30m }          threshold 1..1000000 failures/min, factor 2..1000
 *   notify: { webhook: null, events: [new_network_login, locked_out, weak_password, password_refused_correct] }
 *   audit: { file: DATA_DIR/audit.jsonl }          null disables the audit file
 *   apps: (required, at least one)
 *     - name, hosts, upstream, rules (required); websocket: false; case_insensitive_paths: false
 *       (IIS apps: rules and basic_auth paths match in any letter case); basic_auth: { paths: [...] }
 *       rules: [{ paths, methods, networks, groups, policy }]   policy required: deny|bypass|password|mfa
 *
 * Keys this implementation adds to the SPEC's list:
 *   workers: 1                          worker processes; above 1 only with a redis store
 *   session.grace: 0s                   how long a session verified by this instance may continue
 *                                       while Redis is unreachable (at most idle_timeout)
 *   login_limits.hash_concurrency: min(4, max(2, CPUs))
 *                                       password hashes verified at once (1..64), each on a
 *                                       lowest-priority thread of its own; past it, a fast 503
 *   upstream_timeouts: { connect: 5s, headers: 60s, idle: 5m }
 *   notify.smtp: { url: "smtp://host:587", from: ADDRESS, to: [ADDRESS, ...] }   (smtps:// for TLS)
 *
 * Secrets: `store`, `notify.webhook` and `notify.smtp.url` may be written as text, as
 * `{ file: PATH }` (the file's content, trailing line breaks removed) or as `{ env: NAME }`;
 * resolved at load (and again at every reload), never echoed in messages.
 *
 *   shutdown: { drain: 10s, grace: 30s }  SIGTERM: /readyz answers 503 at once and the listener
 *                                       serves on for `drain`; then it stops accepting, and
 *                                       requests in flight get up to `grace` to finish
 *
 * Path patterns (rule `paths`, `basic_auth.paths`) are described in paths.ts.
 */
import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument, type YAMLError } from 'yaml';
import { PortcullisError } from '../errors.js';
import { compileDocument } from './compile.js';
import type { CompiledConfig, ConfigIssue } from './types.js';

export type LoadResult = { ok: true; config: CompiledConfig } | { ok: false; issues: ConfigIssue[] };

export interface LoadOptions {
  /** Directory relative paths resolve against (default: `process.cwd()`). */
  cwd?: string;
  /** Check that files the config names (TLS certificate and key) are readable (default: true). */
  checkFiles?: boolean;
  /** Where `{ env: NAME }` secrets are looked up (default: `process.env`). */
  env?: NodeJS.ProcessEnv;
}

/** Refuse files this large outright: a configuration is a few kilobytes. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/** Parse and compile configuration text. `file` is used in messages and made absolute for `config.file`. */
export function loadConfigText(text: string, file: string, opts: LoadOptions = {}): LoadResult {
  if (text.length > MAX_CONFIG_BYTES) {
    return { ok: false, issues: [{ file, line: 1, col: 1, path: '', message: `the file is larger than ${MAX_CONFIG_BYTES} bytes` }] };
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter,
    schema: 'core',
    merge: false,
    uniqueKeys: false, // duplicates are reported by the compiler, with their key path
    prettyErrors: true,
    strict: true,
    intAsBigInt: false,
    logLevel: 'error', // not 'silent', which would also drop the multiple-documents error
  });
  const syntax = [...doc.errors, ...doc.warnings].map((e) => yamlIssue(e, file, lineCounter));
  if (syntax.length > 0) return { ok: false, issues: sortIssues(syntax) };
  return compileDocument(doc, lineCounter, {
    file,
    cwd: opts.cwd ?? process.cwd(),
    checkFiles: opts.checkFiles !== false,
    ...(opts.env ? { env: opts.env } : {}),
  });
}

/** Read and compile a configuration file; a file that cannot be read is one issue at 1:1. */
export async function loadConfigFile(file: string, opts: LoadOptions = {}): Promise<LoadResult> {
  let text: string;
  try {
    const buf = await readFile(file);
    if (buf.length > MAX_CONFIG_BYTES) {
      return { ok: false, issues: [{ file, line: 1, col: 1, path: '', message: `the file is larger than ${MAX_CONFIG_BYTES} bytes` }] };
    }
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch (e) {
    return { ok: false, issues: [{ file, line: 1, col: 1, path: '', message: `cannot read the configuration: ${describeReadError(e)}` }] };
  }
  return loadConfigText(text, file, opts);
}

/**
 * One issue a line: `FILE:LINE:COL key.path: message` (the key path is left out at the top level).
 * Control characters quoted from the file (a CR/LF inside a URL, say) are shown escaped, so each
 * issue stays on one line and nothing from the file reaches the terminal raw.
 */
export function formatIssues(issues: readonly ConfigIssue[]): string {
  return issues.map((i) => `${i.file}:${i.line}:${i.col} ${i.path ? `${escapeControls(i.path)}: ` : ''}${escapeControls(i.message)}`).join('\n');
}

function escapeControls(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
    return named[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

/** A configuration that was refused, carrying every issue. */
export class ConfigError extends PortcullisError {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    const n = issues.length;
    super('PC_CONFIG_INVALID', `the configuration is invalid (${n} issue${n === 1 ? '' : 's'}):\n${formatIssues(issues)}`);
    this.name = 'ConfigError';
    this.issues = Object.freeze([...issues]);
  }
}

/** Load a configuration file or throw a `ConfigError` listing every issue. */
export async function loadConfigOrThrow(file: string, opts: LoadOptions = {}): Promise<CompiledConfig> {
  const result = await loadConfigFile(file, opts);
  if (!result.ok) throw new ConfigError(result.issues);
  return result.config;
}

function yamlIssue(e: YAMLError, file: string, lc: LineCounter): ConfigIssue {
  const lp = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
  // prettyErrors appends "at line L, column C:" and a source excerpt; the position is reported separately
  const message =
    e.code === 'MULTIPLE_DOCS'
      ? 'the file holds more than one document (a second "---"); a configuration is a single document'
      : e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '').trim();
  return { file, line: Math.max(1, lp.line), col: Math.max(1, lp.col), path: '', message: `YAML: ${message}` };
}

function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  return issues.sort((a, b) => a.line - b.line || a.col - b.col);
}

function describeReadError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOENT') return 'no such file';
  if (err?.code === 'EACCES') return 'permission denied';
  if (err?.code === 'EISDIR') return 'it is a directory';
  if (e instanceof TypeError) return 'it is not valid UTF-8 text';
  return e instanceof Error ? e.message : String(e);
}
