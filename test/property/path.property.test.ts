/**
 * Property tests for request-target normalisation (src/net/path.ts), the parser every client
 * feeds first: rules are matched against its decoded path and the app receives its raw path,
 * so any disagreement between the two is an access-control bypass.
 *
 * Inputs are built from the pieces the bypass catalogue is made of (dots, slashes, `%2e`, `%2f`,
 * `%5c`, `%25`, `;`, `\`, overlong UTF-8, fullwidth dots and slashes, Windows trailing dots,
 * spaces, `::$DATA`) and from arbitrary code points. numRuns is bounded so the file takes seconds.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { posix } from 'node:path';
import fc from 'fast-check';
import { MAX_PATH_LENGTH, normaliseRequestTarget, type PathResult } from '../../src/net/path.js';

const RUNS = Number(process.env.PROPERTY_RUNS ?? 4000);

/** The tokens path bypasses are made of. */
const PIECES = [
  '/', '/', '/', '.', '..', '...', 'a', 'b', 'A', 'x.y', 'admin', 'public', '~1', '~', ':', '::$DATA', '$', '+', '!', '@', '=', '&', '-', '_',
  '%2e', '%2E', '%2f', '%2F', '%5c', '%5C', '%25', '%252e', '%252f', '%25%32%65', '%25%32%66', '%32', '%65', '%66', '%3b', '%3a', '%3A',
  '%20', '%09', '%00', '%0a', '%0d', '%7f', '%80', '%c0%ae', '%c0%af', '%e0%80%ae', '%c2%a0', '%e2%80%a8', '%ef%bc%8e', '%ef%bc%8f',
  '%ed%a0%80', '%f0%9f%98%80', '%c3%a9', '%e2%80%8b', '%u002e', '%', '%%', '%2', '%zz', ';', '\\', ' ', '\t', '#', '?', '?a=1', '?x=%2e&y=/..',
  'é', '\u0000', '\u2028', '．', '／', '\uFEFF',
  '%e2%80%a5', '%e3%80%80', '%ef%bd%9e1', '%ef%bc%9a',
];

/** A segment of a few pieces (a piece may itself hold a `/`), then a few segments joined by `/`. */
const segment = fc.array(fc.constantFrom(...PIECES), { maxLength: 4 }).map((a) => a.join(''));
const pieces = fc.array(segment, { minLength: 1, maxLength: 5 }).map((a) => a.join('/'));
/** A target under `/public/` built from pieces, or anything at all. */
const target = fc.oneof(
  { weight: 5, arbitrary: pieces.map((s) => `/public/${s}`) },
  { weight: 3, arbitrary: pieces.map((s) => `/${s}`) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 40 }).map((s) => `/public/${s}`) },
);
const windows = fc.boolean();

function check(t: string, w: boolean): PathResult {
  let r: PathResult;
  try {
    r = normaliseRequestTarget(t, { windows: w });
  } catch (e) {
    assert.fail(`threw on ${JSON.stringify(t)}: ${String(e)}`);
  }
  return r;
}

/** Every reading an app behind the gateway might give the decoded path. */
function readings(path: string, rawPath: string): string[] {
  const out = [path];
  out.push(posix.normalize(path)); // a file server resolving dot segments
  out.push(new URL(rawPath, 'http://h').pathname); // WHATWG URL (browsers, Node, undici)
  out.push(posix.normalize(decodeURIComponent(new URL(rawPath, 'http://h').pathname)));
  try {
    out.push(posix.normalize(decodeURIComponent(path))); // an app that decodes a second time
  } catch {
    /* not decodable twice: such an app answers 400 */
  }
  out.push(posix.normalize(path.replace(/\\/g, '/'))); // Windows separators
  out.push(posix.normalize(path.normalize('NFKC'))); // compatibility normalisation (fullwidth ．／)
  return out;
}

const under = (p: string, prefix: string) => p === prefix.slice(0, -1) || p.startsWith(prefix);

describe('normaliseRequestTarget (property)', () => {
  it('never throws, and answers in the documented shape', () => {
    fc.assert(
      fc.property(target, windows, (t, w) => {
        const r = check(t, w);
        if (r.ok) {
          assert.equal(typeof r.path, 'string');
          assert.equal(r.rawPath + r.query, t, 'raw path and query are the target, split');
          assert.ok(r.query === '' || r.query.startsWith('?'));
          assert.ok(r.rawPath.length <= MAX_PATH_LENGTH);
        } else {
          assert.equal(typeof r.reason, 'string');
          assert.ok(r.reason.length > 0);
          assert.deepEqual(Object.keys(r).sort(), ['ok', 'reason']);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('an accepted path decodes exactly like decodeURIComponent, segment for segment, with nothing to resolve', () => {
    fc.assert(
      fc.property(target, windows, (t, w) => {
        const r = check(t, w);
        if (!r.ok) return;
        assert.equal(decodeURIComponent(r.rawPath), r.path);
        const raw = r.rawPath.split('/');
        const dec = r.path.split('/');
        assert.equal(dec.length, raw.length, 'no separator appears or disappears in decoding');
        dec.forEach((seg, i) => {
          assert.equal(seg, decodeURIComponent(raw[i]!));
          assert.ok(seg !== '.' && seg !== '..', 'no dot segment');
          assert.ok(seg !== '' || i === 0 || i === dec.length - 1, 'no empty segment but the root and a trailing slash');
        });
        // eslint-disable-next-line no-control-regex
        assert.doesNotMatch(r.path, /[\u0000-\u001f\u007f-\u009f\u2028\u2029\\;]/);
        assert.equal(posix.normalize(r.path), r.path, 'nothing left for a resolver to change');
        if (w) {
          for (const p of [r.path, r.path.normalize('NFKC')]) assert.doesNotMatch(p, /:|~[0-9]|[. ](\/|$)/, 'no name Windows reads as another');
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('a path accepted under /public/ stays under /public/ however the app reads it', () => {
    fc.assert(
      fc.property(pieces, windows, (s, w) => {
        const t = `/public/${s}`;
        const r = check(t, w);
        if (!r.ok) return;
        for (const reading of readings(r.path, r.rawPath)) {
          assert.ok(under(reading, '/public/'), `${JSON.stringify(t)} was accepted, yet reads as ${JSON.stringify(reading)}`);
        }
        if (w) {
          // what Windows opens: best-fit (approximated by NFKC), trailing dots and spaces of every name dropped
          for (const p of [r.path, r.path.normalize('NFKC')]) {
            const win = p.split('/').map((seg) => seg.replace(/[. ]+$/, '')).join('/');
            assert.ok(under(posix.normalize(win).toLowerCase(), '/public/'), `${JSON.stringify(t)} is ${win} on Windows`);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('is idempotent: the accepted path, encoded again, normalises to itself', () => {
    fc.assert(
      fc.property(target, windows, (t, w) => {
        const r = check(t, w);
        if (!r.ok) return;
        const again = r.path.split('/').map(encodeURIComponent).join('/');
        const r2 = check(again, w);
        assert.ok(r2.ok, `${JSON.stringify(again)} (from ${JSON.stringify(t)}) was refused: ${r2.ok ? '' : r2.reason}`);
        assert.equal(r2.path, r.path);
        // and the raw target itself is a fixed point
        assert.deepEqual(check(r.rawPath + r.query, w), r);
      }),
      { numRuns: RUNS },
    );
  });

  it('the windows option only ever refuses more', () => {
    fc.assert(
      fc.property(target, (t) => {
        const plain = check(t, false);
        const win = check(t, true);
        if (win.ok) assert.deepEqual(win, plain);
      }),
      { numRuns: RUNS },
    );
  });
});
