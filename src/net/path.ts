/**
 * Request-target normalisation for policy matching.
 *
 * The policy is "refuse rather than rewrite": a target is either accepted as it is, with a
 * decoded form that rules are matched against, or refused. It is never cleaned up, because
 * every rewrite (collapsing `//`, resolving `..`, decoding `%2f`) is a place where the gateway
 * and the app behind it can disagree about which resource was asked for: the classic
 * access-control bypasses (`/public/../admin`, `/public/%2e%2e/admin`, `/public/..;/admin`,
 * `/public%2fadmin`, `//admin`) all live in that disagreement. Since the app receives
 * exactly the bytes that were authorised, and those bytes contain no dot segment, no empty
 * segment, no path parameter and no encoded separator, every reasonable decoder reaches the
 * same path as the policy did.
 *
 * Refused:
 * - anything but origin-form (`/...`): absolute-form, authority-form, `*`;
 * - raw space, control characters, DEL, non-ASCII, `\`, `#`, `;` in the path;
 * - invalid percent escapes (`%`, `%4`, `%zz`, `%u002e`);
 * - escapes that decode to `/`, `\`, `;`, NUL or any other control character (C0, DEL, C1);
 * - decoded bytes that are not valid UTF-8 (overlong `%c0%af`, lone surrogates, truncations);
 * - characters that Unicode normalisation (NFKC) turns into `/` or `\` (fullwidth `%ef%bc%8f`),
 *   and segments it turns into `.` or `..` (fullwidth `%ef%bc%8e`, two-dot leader `%e2%80%a5`);
 * - `.` and `..` segments in any spelling (`.`, `%2e`, `.%2E`, ...);
 * - empty segments (`//`, `/a//b`); a single trailing `/` is fine;
 * - double-encoded separators, dots, controls, `;` and `%` (`%252e`, `%252f`, `%2500`), which
 *   an app that decodes twice would turn into the very characters refused above;
 * - paths longer than {@link MAX_PATH_LENGTH}.
 * The query string is not interpreted (policy does not look at it) and is forwarded untouched;
 * it is only required to be printable ASCII without `#`.
 *
 * For apps on Windows (IIS: `apps[].case_insensitive_paths`, option `windows`), also refused,
 * since Windows reaches the same file by other names than the one the rules were matched against:
 * - a segment ending in a dot or a space, in any spelling (`/ecp./x`, `/ecp%20/x`, `/ecp%2e/x`,
 *   `/ecp%20..%20/x`): Windows drops trailing dots and spaces from every name, so all of these
 *   are `/ecp/x` to IIS;
 * - `:` anywhere in the path: `name::$DATA` is the file's NTFS data stream (IIS once served a
 *   script's source that way) and ASP.NET refuses `:` in a path anyway;
 * - `~` followed by a digit: an 8.3 short name (`/LONGDI~1/` for `/longdirectoryname/`), which
 *   Windows resolves on volumes that keep short names.
 */

export type PathResult =
  | {
      ok: true;
      /** Percent-decoded path, for policy matching. */
      path: string;
      /** The path exactly as received; this is what the app gets. */
      rawPath: string;
      /** The query string including its leading `?`, or `''`. */
      query: string;
    }
  | { ok: false; reason: string };

/** Longest accepted path (without the query), in bytes. */
export const MAX_PATH_LENGTH = 8192;

const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;
const QUESTION = 0x3f;
const HASH = 0x23;
const SEMICOLON = 0x3b;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const TILDE = 0x7e;
const SPACE = 0x20;

/**
 * Per printable-ASCII code: 0 = ordinary path character, otherwise needs attention.
 * Built once; indexing a typed array is the cheapest per-character test there is.
 */
const CLASS = new Uint8Array(128);
const C_REFUSE = 1;
const C_SPECIAL = 2; // `/`, `%`, `?`, `.`
for (let c = 0; c < 128; c++) CLASS[c] = c <= 0x20 || c === 0x7f ? C_REFUSE : 0;
CLASS[BACKSLASH] = C_REFUSE;
CLASS[HASH] = C_REFUSE;
CLASS[SEMICOLON] = C_REFUSE;
CLASS[SLASH] = C_SPECIAL;
CLASS[PERCENT] = C_SPECIAL;
CLASS[QUESTION] = C_SPECIAL;
CLASS[DOT] = C_SPECIAL;

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function refuse(reason: string): PathResult {
  return { ok: false, reason };
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20; // fold A-F to a-f
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

function rawCharReason(c: number): string {
  if (c === 0x20) return 'space in path';
  if (c < 0x20 || c === 0x7f) return 'control character in path';
  if (c > 0x7f) return 'non-ASCII character in path';
  if (c === BACKSLASH) return 'backslash in path';
  if (c === HASH) return 'fragment in request target';
  return 'semicolon (path parameter) in path';
}

export interface NormaliseOptions {
  /** The app runs on Windows (IIS): refuse the names Windows treats as another (see above). */
  windows?: boolean;
}

/**
 * Validate an origin-form request target and split it into a decoded path (for policy
 * matching), the raw path (forwarded as is) and the query string (forwarded as is).
 * Never throws.
 */
export function normaliseRequestTarget(target: string, opts: NormaliseOptions = {}): PathResult {
  const r = normaliseTarget(target);
  if (r.ok && opts.windows === true) {
    // Windows' best-fit mapping sees compatibility forms as ASCII (`ecp．` is `ecp.`); a path
    // without escapes is ASCII (raw non-ASCII is refused), so it has none
    const nf = r.path === r.rawPath ? r.path : r.path.normalize('NFKC');
    const why = windowsAlias(r.path) ?? (nf === r.path ? null : windowsAlias(nf));
    if (why !== null) return refuse(why);
  }
  return r;
}

/**
 * Why Windows would take `path` (decoded, already free of dot and empty segments) for another
 * name, or null: a segment ending in `.` or ` `, a `:` (NTFS stream), a `~` and digit (8.3 name).
 */
function windowsAlias(path: string): string | null {
  const n = path.length;
  for (let i = 1; i < n; i++) {
    const c = path.charCodeAt(i);
    if (c === COLON) return 'colon in path (an NTFS stream name on Windows)';
    if (c === TILDE) {
      const d = i + 1 < n ? path.charCodeAt(i + 1) : 0;
      if (d >= 0x30 && d <= 0x39) return 'short (8.3) file name in path';
      continue;
    }
    if ((c === DOT || c === SPACE) && (i + 1 === n || path.charCodeAt(i + 1) === SLASH)) {
      return 'path segment ending in a dot or a space (Windows ignores them)';
    }
  }
  return null;
}

function normaliseTarget(target: string): PathResult {
  if (typeof target !== 'string' || target.length === 0) return refuse('empty request target');
  if (target.charCodeAt(0) !== SLASH) {
    return refuse(target === '*' ? 'asterisk-form request target' : 'request target is not an absolute path');
  }
  const len = target.length;
  // never scan further than one character past the longest acceptable path
  const scanEnd = len > MAX_PATH_LENGTH ? MAX_PATH_LENGTH + 1 : len;
  let segStart = 1; // index of the first character of the current segment
  let onlyDots = true; // the current segment so far consists of dots only (an empty one too)
  let hasPercent = false;
  let i = 1;
  for (; i < scanEnd; i++) {
    const c = target.charCodeAt(i);
    if (c >= 128) return refuse(rawCharReason(c));
    const k = CLASS[c]!;
    if (k === 0) {
      onlyDots = false;
      continue;
    }
    if (k === C_REFUSE) return refuse(rawCharReason(c));
    if (c === DOT) continue;
    if (c === SLASH) {
      if (i === segStart) return refuse('empty path segment');
      if (onlyDots && i - segStart <= 2) return refuse('dot segment in path');
      segStart = i + 1;
      onlyDots = true;
      continue;
    }
    if (c === QUESTION) break;
    // `%`: two hex digits must follow; what they encode is checked on the decoded form
    if (i + 2 >= len || hexValue(target.charCodeAt(i + 1)) < 0 || hexValue(target.charCodeAt(i + 2)) < 0) {
      return refuse('invalid percent escape');
    }
    hasPercent = true;
    onlyDots = false;
    i += 2;
  }
  const pathEnd = i;
  if (pathEnd > MAX_PATH_LENGTH) return refuse('path too long');
  // the last segment (empty after a trailing `/`, which is fine)
  if (onlyDots && pathEnd > segStart && pathEnd - segStart <= 2) return refuse('dot segment in path');

  let query = '';
  if (pathEnd < len) {
    for (let j = pathEnd + 1; j < len; j++) {
      const c = target.charCodeAt(j);
      if (c <= 0x20 || c >= 0x7f) return refuse(c === 0x20 ? 'space in query' : c > 0x7f ? 'non-ASCII character in query' : 'control character in query');
      if (c === HASH) return refuse('fragment in request target');
    }
    query = target.slice(pathEnd);
  }
  const rawPath = pathEnd === len ? target : target.slice(0, pathEnd);
  if (!hasPercent) return { ok: true, path: rawPath, rawPath, query };
  return decodePath(rawPath, query);
}

/** The slow path: the raw path is known to be printable ASCII with well-formed escapes. */
function decodePath(rawPath: string, query: string): PathResult {
  const n = rawPath.length;
  const bytes = Buffer.allocUnsafe(n);
  let o = 0;
  let nonAscii = false;
  for (let i = 0; i < n; i++) {
    const c = rawPath.charCodeAt(i);
    if (c !== PERCENT) {
      bytes[o++] = c;
      continue;
    }
    const b = (hexValue(rawPath.charCodeAt(i + 1)) << 4) | hexValue(rawPath.charCodeAt(i + 2));
    i += 2;
    if (b === SLASH) return refuse('encoded slash in path');
    if (b === BACKSLASH) return refuse('encoded backslash in path');
    if (b === SEMICOLON) return refuse('encoded semicolon in path');
    if (b < 0x20 || b === 0x7f) return refuse('encoded control character in path');
    if (b === PERCENT && isDangerousEscape(rawPath, i + 1)) return refuse('double-encoded character in path');
    if (b >= 0x80) nonAscii = true;
    bytes[o++] = b;
  }
  let path: string;
  if (nonAscii) {
    try {
      path = fatalUtf8.decode(bytes.subarray(0, o));
    } catch {
      return refuse('invalid UTF-8 in path');
    }
    // C1 controls (U+0080..U+009F) and the Unicode line/paragraph separators are controls too
    for (let i = 0; i < path.length; i++) {
      const c = path.charCodeAt(i);
      if ((c >= 0x80 && c <= 0x9f) || c === 0x2028 || c === 0x2029) return refuse('encoded control character in path');
    }
    const why = compatibilityAlias(path);
    if (why !== null) return refuse(why);
  } else {
    path = bytes.toString('latin1', 0, o);
  }
  // dot segments, now that `%2e` is a dot (an encoded `/` was refused, so segments line up)
  let segStart = 1;
  for (let i = 1; i <= path.length; i++) {
    if (i < path.length && path.charCodeAt(i) !== SLASH) continue;
    const segLen = i - segStart;
    if (
      (segLen === 1 && path.charCodeAt(segStart) === DOT) ||
      (segLen === 2 && path.charCodeAt(segStart) === DOT && path.charCodeAt(segStart + 1) === DOT)
    ) {
      return refuse('dot segment in path');
    }
    segStart = i + 1;
  }
  return { ok: true, path, rawPath, query };
}

/**
 * Compatibility forms of the characters refused above: fullwidth `／` and `＼`, fullwidth dots
 * `．．`, the two-dot leader `‥`. Unicode normalisation (NFKC, as some frameworks apply to paths)
 * and Windows' best-fit mapping to code pages turn them into `/`, `\` and `..`, so an app could
 * resolve `/public/．．/admin` to /admin after the gateway matched it under /public/.
 */
function compatibilityAlias(path: string): string | null {
  const nf = path.normalize('NFKC');
  if (nf === path) return null;
  if (nf.includes('\\') || nf.split('/').length !== path.split('/').length) {
    return 'character in path that Unicode normalisation turns into a separator';
  }
  for (const seg of nf.split('/')) if (seg === '.' || seg === '..') return 'dot segment in path after Unicode normalisation';
  return null;
}

/**
 * After a `%25` (an encoded `%`) at `at`: would a second decoding see an escape for a
 * separator, a dot, a control character, `;` or `%`?
 */
function isDangerousEscape(raw: string, at: number): boolean {
  const h1 = nextHexDigit(raw, at);
  if (h1.value < 0) return false;
  const h2 = nextHexDigit(raw, h1.next);
  if (h2.value < 0) return false;
  const b = (h1.value << 4) | h2.value;
  return b < 0x20 || b === 0x7f || b === SLASH || b === BACKSLASH || b === DOT || b === SEMICOLON || b === PERCENT || b >= 0x80;
}

/** The hex digit at `at` as a second decoding would see it: either literal, or itself encoded (`%3x`, `%4x`, `%6x`). */
function nextHexDigit(raw: string, at: number): { value: number; next: number } {
  if (at >= raw.length) return { value: -1, next: at };
  const c = raw.charCodeAt(at);
  if (c !== PERCENT) return { value: hexValue(c), next: at + 1 };
  const b = (hexValue(raw.charCodeAt(at + 1)) << 4) | hexValue(raw.charCodeAt(at + 2));
  return { value: hexValue(b), next: at + 3 };
}
