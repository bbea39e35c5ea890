/**
 * Path patterns of rule `paths` and `basic_auth.paths`, matched against the normalised request
 * path (no query string, no dot segments, percent-decoding as done by src/net/path.ts).
 * Matching is case-sensitive, as paths are.
 *
 * Two forms:
 * - `^...`: a JavaScript regular expression (compiled with the `u` flag), anchored exactly as
 *   written: `^/api` also matches `/api2/x`; add `$` or `/` to stop it.
 * - anything else is a glob over the whole path; it must start with `/`:
 *     `*`   any run of characters except `/` (possibly none)
 *     `**`  anything, `/` included; a trailing `/**` also matches the path without it
 *           (`/admin/**` matches `/admin`, `/admin/` and `/admin/x/y`), and `/**\/` in the
 *           middle stands for one `/` or any run of segments (`/a/**\/b` matches `/a/b`, `/a/x/y/b`)
 *     `?`   exactly one character except `/`
 *   Every other character is literal. `[`, `]`, `{`, `}` and `\` are refused so that nobody
 *   mistakes a glob for a shell pattern with character classes or alternatives: use a `^regex`.
 */
import type { PathMatcher } from './types.js';

export type PathPatternResult = { ok: true; matcher: PathMatcher } | { ok: false; error: string };

const MAX_PATTERN_LENGTH = 1024;
const RESERVED_PREFIX = '/.portcullis';

/** Compile one pattern; never throws. */
export function compilePathPattern(source: string, opts: { caseInsensitive?: boolean } = {}): PathPatternResult {
  if (typeof source !== 'string') return { ok: false, error: 'a path pattern must be a string' };
  if (source.length === 0) return { ok: false, error: 'a path pattern cannot be empty' };
  if (source.length > MAX_PATTERN_LENGTH) return { ok: false, error: `a path pattern is limited to ${MAX_PATTERN_LENGTH} characters` };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(source)) return { ok: false, error: 'a path pattern cannot contain control characters' };
  const flags = opts.caseInsensitive ? 'ui' : 'u';
  const re = source.startsWith('^') ? compileRegex(source, flags) : compileGlob(source, flags);
  if (typeof re === 'string') return { ok: false, error: re };
  return { ok: true, matcher: makeMatcher(source, re) };
}

function makeMatcher(source: string, re: RegExp): PathMatcher {
  // The RegExp stays private (no `g`/`y` flag, so `test` keeps no state between calls).
  return Object.freeze({ source, test: (path: string): boolean => typeof path === 'string' && re.test(path) });
}

function compileRegex(source: string, flags: string): RegExp | string {
  try {
    return new RegExp(source, flags);
  } catch (e) {
    const why = e instanceof Error ? e.message.replace(/^Invalid regular expression: /, '') : String(e);
    return `"${source}" is not a valid regular expression: ${why}`;
  }
}

function compileGlob(source: string, flags: string): RegExp | string {
  if (!source.startsWith('/')) {
    return `"${source}" must start with "/" (a glob over the path) or "^" (a regular expression)`;
  }
  const bad = /[[\]{}\\]/.exec(source);
  if (bad) return `"${source}" uses "${bad[0]}", which globs do not support; write a ^regex instead`;
  if (source.includes('***')) return `"${source}" has "***"; use "*" (one segment) or "**" (any depth)`;
  if (/(^|\/)\.{1,2}(\/|$)/.test(source)) {
    return `"${source}" has a "." or ".." segment, which a normalised path never contains, so it would never match`;
  }
  if (source === RESERVED_PREFIX || source.startsWith(`${RESERVED_PREFIX}/`)) {
    return `"${source}" is under ${RESERVED_PREFIX}/, which the gateway serves itself; rules never see those paths`;
  }
  let out = '^';
  for (let i = 0; i < source.length; ) {
    if (source.startsWith('/**', i) && (i + 3 === source.length || source[i + 3] === '/')) {
      if (i + 3 === source.length) {
        out += '(?:/.*)?';
        i += 3;
      } else {
        out += '/(?:.*/)?';
        i += 4;
      }
    } else if (source.startsWith('**', i)) {
      out += '.*';
      i += 2;
    } else if (source[i] === '*') {
      out += '[^/]*';
      i += 1;
    } else if (source[i] === '?') {
      out += '[^/]';
      i += 1;
    } else {
      out += escapeRegex(source[i]!);
      i += 1;
    }
  }
  return new RegExp(`${out}$`, `s${flags}`);
}

function escapeRegex(ch: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(ch) ? `\\${ch}` : ch;
}
