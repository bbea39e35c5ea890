/**
 * Property tests for path patterns (src/config/paths.ts). Since the ReDoS fix, a pattern runs on
 * one of two engines: globs with at most one wildcard on the built-in RegExp, `^regex` rules and
 * other globs on RE2. A rule must mean the same whichever engine runs it, so:
 *
 * - every glob agrees with a reference matcher written from the documented glob semantics, in
 *   both letter-case modes (this covers both engines and the glob-to-regex translation);
 * - every `^regex` drawn from the syntax both engines accept agrees with JavaScript's reading of
 *   it (the syntax the documentation promised before RE2), in both letter-case modes.
 *
 * Paths mix ASCII with the characters where engines tend to differ: `ſ` and `K` (which fold to
 * s and k), `é`/`É`, and an astral code point.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { compilePathPattern } from '../../src/config/paths.js';

const RUNS = Number(process.env.PROPERTY_RUNS ?? 1500);

const PATH_CHARS = ['/', '/', 'a', 'b', 'A', 'B', '.', 's', 'S', '\u017f', 'k', 'K', '\u212a', 'é', 'É', '😀', '-', '_', '1'];
const path = fc.array(fc.constantFrom(...PATH_CHARS), { maxLength: 12 }).map((a) => `/${a.join('')}`);

// ---- globs -----------------------------------------------------------------------------------

const GLOB_PIECES = ['/', 'a', 'b', 'A', '.', 's', 'K', '\u017f', 'é', '😀', '-', '*', '*', '**', '?', '/**', '/**/'];
const glob = fc.array(fc.constantFrom(...GLOB_PIECES), { maxLength: 8 }).map((a) => `/${a.join('')}`);

type Tok = { t: 'lit'; c: string } | { t: 'one' } | { t: 'seg' } | { t: 'any' } | { t: 'tail' } | { t: 'mid' };

/** The glob syntax of the documentation, token by token. */
function tokens(g: string): Tok[] {
  const out: Tok[] = [];
  const cps = [...g];
  for (let i = 0; i < cps.length; ) {
    const at = (s: string) => cps.slice(i, i + s.length).join('') === s;
    if (at('/**') && (i + 3 === cps.length || cps[i + 3] === '/')) {
      if (i + 3 === cps.length) {
        out.push({ t: 'tail' });
        i += 3;
      } else {
        out.push({ t: 'mid' });
        i += 4;
      }
    } else if (at('**')) {
      out.push({ t: 'any' });
      i += 2;
    } else if (cps[i] === '*') {
      out.push({ t: 'seg' });
      i += 1;
    } else if (cps[i] === '?') {
      out.push({ t: 'one' });
      i += 1;
    } else {
      out.push({ t: 'lit', c: cps[i]! });
      i += 1;
    }
  }
  return out;
}

/** Simple case folding for the characters used here. */
function fold(c: string): string {
  if (c === '\u017f') return 's';
  if (c === '\u212a') return 'k';
  return c.toLowerCase();
}

/** Reference glob matcher: memoised search over (token, position), code point by code point. */
function globMatches(g: string, p: string, ci: boolean): boolean {
  const toks = tokens(g);
  const s = [...p];
  const memo = new Map<number, boolean>();
  const eq = (a: string, b: string) => (ci ? fold(a) === fold(b) : a === b);
  const go = (ti: number, pi: number): boolean => {
    const key = ti * 1000 + pi;
    const hit = memo.get(key);
    if (hit !== undefined) return hit;
    let r: boolean;
    if (ti === toks.length) r = pi === s.length;
    else {
      const tok = toks[ti]!;
      switch (tok.t) {
        case 'lit':
          r = pi < s.length && eq(tok.c, s[pi]!) && go(ti + 1, pi + 1);
          break;
        case 'one':
          r = pi < s.length && s[pi] !== '/' && go(ti + 1, pi + 1);
          break;
        case 'seg': {
          r = false;
          for (let j = pi; j <= s.length && !r; j++) {
            if (j > pi && s[j - 1] === '/') break;
            r = go(ti + 1, j);
          }
          break;
        }
        case 'any':
          r = false;
          for (let j = pi; j <= s.length && !r; j++) r = go(ti + 1, j);
          break;
        case 'tail': // always the last token: nothing, or "/" and anything
          r = pi === s.length || s[pi] === '/';
          break;
        case 'mid': // "/" or "/" anything "/"
          r = false;
          if (pi < s.length && s[pi] === '/') {
            r = go(ti + 1, pi + 1);
            for (let j = pi + 1; j < s.length && !r; j++) if (s[j] === '/') r = go(ti + 1, j + 1);
          }
          break;
      }
    }
    memo.set(key, r);
    return r;
  };
  return go(0, 0);
}

// ---- regexes ---------------------------------------------------------------------------------

const ATOMS = ['a', 'b', 'A', 's', 'k', '/', '\\.', '-', 'é', '\u017f', '\u212a', '.', '[ab]', '[^/]', '[a-z]', '[A-Z]', '[^a]', '\\d', '\\D', '\\w', '\\W', '😀'];
const regexNode: fc.Arbitrary<string> = fc.letrec<{ node: string }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(...ATOMS),
    fc.tuple(tie('node'), tie('node')).map(([x, y]) => x + y),
    fc.tuple(tie('node'), tie('node')).map(([x, y]) => `(?:${x}|${y})`),
    tie('node').map((x) => `(${x})`),
    fc.tuple(tie('node'), fc.constantFrom('*', '+', '?', '{1,3}', '*?', '+?', '{2}')).map(([x, q]) => `(?:${x})${q}`),
  ),
})).node;
const regex = fc.tuple(regexNode, fc.boolean()).map(([n, end]) => `^/${n}${end ? '$' : ''}`);

describe('path patterns (property)', () => {
  it('globs match exactly as documented, on whichever engine runs them', () => {
    fc.assert(
      fc.property(glob, path, fc.boolean(), (g, p, ci) => {
        const c = compilePathPattern(g, { caseInsensitive: ci });
        if (!c.ok) return; // refused globs (dot segments, "***") are tested elsewhere
        assert.equal(c.matcher.test(p), globMatches(g, p, ci), `glob ${g} ${ci ? '(any case) ' : ''}on ${p}`);
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('a ^regex means on RE2 what it means to JavaScript', () => {
    fc.assert(
      fc.property(regex, path, fc.boolean(), (r, p, ci) => {
        const c = compilePathPattern(r, { caseInsensitive: ci });
        assert.ok(c.ok, `${r}: ${c.ok ? '' : c.error}`);
        const js = new RegExp(r, ci ? 'ui' : 'u');
        assert.equal(c.matcher.test(p), js.test(p), `${r} ${ci ? '(any case) ' : ''}on ${p}`);
      }),
      { numRuns: RUNS * 2 },
    );
  });
});
