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
 * Every key, its type, default and an example: src/config/schema.ts, written once; the section
 * compilers take their defaults from it and docs/configuration.md is generated from it (the hand
 * copy that used to stand here had drifted: it listed four notify events of the nine).
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
