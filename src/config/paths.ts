/**
 * Path patterns of rule `paths` and `basic_auth.paths`, matched against the normalised request
 * path (no query string, no dot segments, percent-decoding as done by src/net/path.ts).
 * Matching is case-sensitive, as paths are (unless the app sets `case_insensitive_paths`).
 *
 * Two forms:
 * - `^...`: a regular expression, anchored exactly as written: `^/api` also matches `/api2/x`;
 *   add `$` or `/` to stop it. It must be valid both as a JavaScript regular expression (with the
 *   `u` flag) and as an RE2 one, and it is matched by RE2 (re2js), whose time is linear in the
 *   length of the path whatever the pattern: the path is chosen by the client, and rules are
 *   tested before anyone signs in, so a backtracking engine would let any client stall the
 *   gateway with a pattern such as `^/api/(\w+)*\/status$`. What RE2 cannot do in linear time,
 *   backreferences (`\1`, `\k<name>`) and lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`), is refused at
 *   load with a message saying so. Write code points as the character itself or `\xHH` (RE2 has
 *   no `\u`). `\d`, `\w`, `\b` and `\s` are ASCII classes (for `\s` JavaScript would also take
 *   Unicode spaces).
 * - anything else is a glob over the whole path; it must start with `/`:
 *     `*`   any run of characters except `/` (possibly none)
 *     `**`  anything, `/` included; a trailing `/**` also matches the path without it
 *           (`/admin/**` matches `/admin`, `/admin/` and `/admin/x/y`), and `/**\/` in the
 *           middle stands for one `/` or any run of segments (`/a/**\/b` matches `/a/b`, `/a/x/y/b`)
 *     `?`   exactly one character except `/`
 *   Every other character is literal. `[`, `]`, `{`, `}` and `\` are refused so that nobody
 *   mistakes a glob for a shell pattern with character classes or alternatives: use a `^regex`.
 *   A glob with two or more `*`/`**` is matched by RE2 too (`/**\/a/**\/b` or `/a*b*c` take
 *   polynomial time in a backtracking engine: seconds on a path of a few kilobytes); one with at
 *   most one is matched by the built-in engine, which is linear for it and several times faster.
 */
import { RE2JS } from 're2js';
import type { PathMatcher } from './types.js';

export type PathPatternResult = { ok: true; matcher: PathMatcher } | { ok: false; error: string };

const MAX_PATTERN_LENGTH = 1024;
const RESERVED_PREFIX = '/.portcullis';

/** What a compiled pattern needs: a pure, stateless test (RegExp without `g`/`y`, or RE2JS). */
interface Tester {
  test(path: string): boolean;
}

/** Compile one pattern; never throws. */
export function compilePathPattern(source: string, opts: { caseInsensitive?: boolean } = {}): PathPatternResult {
  if (typeof source !== 'string') return { ok: false, error: 'a path pattern must be a string' };
  if (source.length === 0) return { ok: false, error: 'a path pattern cannot be empty' };
  if (source.length > MAX_PATTERN_LENGTH) return { ok: false, error: `a path pattern is limited to ${MAX_PATTERN_LENGTH} characters` };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(source)) return { ok: false, error: 'a path pattern cannot contain control characters' };
  const ci = opts.caseInsensitive === true;
  const re = source.startsWith('^') ? compileRegex(source, ci) : compileGlob(source, ci);
  if (typeof re === 'string') return { ok: false, error: re };
  return { ok: true, matcher: makeMatcher(source, re) };
}

function makeMatcher(source: string, re: Tester): PathMatcher {
  // The compiled pattern stays private and keeps no state between calls.
  return Object.freeze({ source, test: (path: string): boolean => typeof path === 'string' && re.test(path) });
}

function compileRe2(pattern: string, opts: { caseInsensitive: boolean; dotAll: boolean }): RE2JS {
  return RE2JS.compile(pattern, (opts.caseInsensitive ? RE2JS.CASE_INSENSITIVE : 0) | (opts.dotAll ? RE2JS.DOTALL : 0));
}

function compileRegex(source: string, caseInsensitive: boolean): Tester | string {
  // 1. the syntax the documentation promises (and that a reader of the config knows)
  try {
    new RegExp(source, caseInsensitive ? 'ui' : 'u');
  } catch (e) {
    const why = e instanceof Error ? e.message.replace(/^Invalid regular expression: /, '') : String(e);
    return `"${source}" is not a valid regular expression: ${why}`;
  }
  // 2. what can be matched in linear time
  const unsupported = nonRegularConstruct(source);
  if (unsupported) {
    return `"${source}" uses ${unsupported}, which cannot be matched in time linear in the path; path rules are matched with RE2 so that no request can stall the gateway. Rewrite it without (or split it into several patterns)`;
  }
  try {
    return compileRe2(source, { caseInsensitive, dotAll: false });
  } catch (e) {
    const why = e instanceof Error ? e.message.replace(/^error parsing regexp: /, '') : String(e);
    const hint = /`\\u/.test(why) ? ' (RE2 has no \\u escape: write the character itself or \\xHH)' : '';
    return `"${source}" is valid JavaScript but not RE2 syntax, which path rules are matched with (linear time): ${why}${hint}`;
  }
}

/**
 * A construct of `source` (a regular expression valid in JavaScript) that no linear-time engine
 * supports: a backreference or a lookaround. Null when there is none. Knows escapes and classes.
 */
function nonRegularConstruct(source: string): string | null {
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      const n = source[i + 1];
      if (!inClass && n !== undefined && ((n >= '1' && n <= '9') || (n === 'k' && source[i + 2] === '<'))) {
        return `a backreference (\\${n}${n === 'k' ? '<...>' : ''})`;
      }
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === '(' && source[i + 1] === '?') {
      const kind = source.startsWith('(?=', i) ? 'a lookahead (?=...)' : source.startsWith('(?!', i) ? 'a negative lookahead (?!...)' : source.startsWith('(?<=', i) ? 'a lookbehind (?<=...)' : source.startsWith('(?<!', i) ? 'a negative lookbehind (?<!...)' : null;
      if (kind) return kind;
    }
  }
  return null;
}

function compileGlob(source: string, caseInsensitive: boolean): Tester | string {
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
  let unbounded = 0; // wildcards that become unbounded repetitions
  for (let i = 0; i < source.length; ) {
    if (source.startsWith('/**', i) && (i + 3 === source.length || source[i + 3] === '/')) {
      if (i + 3 === source.length) {
        out += '(?:/.*)?';
        i += 3;
      } else {
        out += '/(?:.*/)?';
        i += 4;
      }
      unbounded++;
    } else if (source.startsWith('**', i)) {
      out += '.*';
      i += 2;
      unbounded++;
    } else if (source[i] === '*') {
      out += '[^/]*';
      i += 1;
      unbounded++;
    } else if (source[i] === '?') {
      out += '[^/]';
      i += 1;
    } else {
      out += escapeRegex(source[i]!);
      i += 1;
    }
  }
  out += '$';
  // Anchored at both ends with at most one unbounded repetition, a backtracking engine tries each
  // split once: linear. Two or more nest their retries (polynomial), so those go to RE2.
  if (unbounded <= 1) return new RegExp(out, caseInsensitive ? 'sui' : 'su');
  return compileRe2(out, { caseInsensitive, dotAll: true });
}

/** Escape one literal glob character; the result means the same to JavaScript (`u` flag) and RE2. */
function escapeRegex(ch: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(ch) ? `\\${ch}` : ch;
}
