/**
 * Property-based tests (fast-check) for the two cookie parsers an attacker feeds: the Set-Cookie
 * lines an app behind the gateway writes, and the Cookie header a client sends. Example-based
 * tests only find the spellings someone thought of; the failures that reached other gateways came
 * from the ones nobody did (a space before `=`, a tab, a no-break space, a `__HOST-` prefix, a
 * nameless `=name=value` cookie: PortSwigger's "Cookie Chaos", 2025, and "Cookie Bugs", 2023).
 *
 * Properties:
 * - whatever Set-Cookie line the filter lets through, no reading of it (RFC 6265bis as browsers
 *   store it, the legacy "no `=` means a name" reading, and a lenient server that trims every
 *   Unicode space and ignores case) yields a cookie that the gateway's own parser, or a lenient
 *   one, would take for a gateway cookie;
 * - ordinary app cookies (any token name outside the gateway's `portcullis` namespace) pass;
 * - the Cookie parser never throws, whatever the bytes; a session cookie present once is read
 *   (trimmed of spaces and tabs); present twice or more, in any spacing, it gives no session.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { clientResponseHeaders, setsGatewayCookie } from '../../src/proxy/headers.js';
import { readSessionCookie } from '../../src/http/request-context.js';

/** Every cookie the gateway sets anywhere (session, portal CSRF, admin console; https and http). */
const GATEWAY_COOKIES = ['__Host-portcullis', 'portcullis_dev_session', '__Host-portcullis-csrf', 'portcullis_dev_csrf', '__Host-portcullis-admin', 'portcullis_admin'];
const RUNS = { numRuns: 2000 };

/** What a browser following RFC 6265bis §5.7 stores for a Set-Cookie line, or null (ignored). */
function browserStores(line: string): { name: string; value: string } | null {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(line)) return null;
  const semi = line.indexOf(';');
  const pair = semi < 0 ? line : line.slice(0, semi);
  const eq = pair.indexOf('=');
  const trim = (s: string) => s.replace(/^[ \t]+|[ \t]+$/g, '');
  const name = eq < 0 ? '' : trim(pair.slice(0, eq));
  const value = trim(eq < 0 ? pair : pair.slice(eq + 1));
  if (name === '' && value === '') return null;
  return { name, value };
}

/** The Cookie header pieces a client would send back for a stored line, under each reading. */
function sentBack(line: string): string[] {
  const out: string[] = [];
  const c = browserStores(line);
  if (c) out.push(c.name === '' ? c.value : `${c.name}=${c.value}`);
  // legacy clients: a pair without `=` is a name with an empty value
  const pair = line.split(';')[0]!;
  if (!pair.includes('=')) out.push(`${pair.trim()}=`);
  // clients that keep the raw bytes
  out.push(pair);
  return out;
}

/** Names a lenient server would see in a Cookie header: every Unicode space trimmed, lower case. */
function lenientNames(header: string): string[] {
  return header.split(';').map((p) => {
    const eq = p.indexOf('=');
    return (eq < 0 ? p : p.slice(0, eq)).trim().toLowerCase();
  });
}

const SPACES = fc.constantFrom(' ', '\t', '\u00a0', '\u2000', '\u3000', '\ufeff', '\u0085', '\u000b', '\u000c', '"', '$', '.');
const pad = fc.array(SPACES, { maxLength: 3 }).map((a) => a.join(''));
/** What browsers trim around a name: an empty name stays empty with it. */
const wsp = fc.array(fc.constantFrom(' ', '\t'), { maxLength: 3 }).map((a) => a.join(''));

/** A gateway cookie name as an app might spell it: any case, any prefix, any padding. */
const gatewayish = fc
  .record({
    base: fc.constantFrom(...GATEWAY_COOKIES.map((n) => n.replace(/^__Host-/, ''))),
    prefix: fc.constantFrom('', '__Host-', '__Secure-', '__host-', '__SECURE-', '__Secure-__Host-'),
    flips: fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }),
    before: pad,
    after: pad,
  })
  .map(({ base, prefix, flips, before, after }) => {
    const n = [...(prefix + base)].map((ch, i) => (flips[i] ? ch.toUpperCase() : ch)).join('');
    return before + n + after;
  });

const value = fc.stringMatching(/^[A-Za-z0-9_-]{0,12}$/);
const attrs = fc.constantFrom('', '; Path=/', '; Secure; Path=/', '; HttpOnly; SameSite=Lax', '; Domain=example.org');

/** A Set-Cookie line that tries to set a gateway cookie, in one of the shapes browsers accept. */
const hostileLine = fc.oneof(
  fc.tuple(gatewayish, pad, value, attrs).map(([n, p, v, a]) => `${n}${p}=${v}${a}`),
  fc.tuple(gatewayish, attrs).map(([n, a]) => `${n}${a}`),
  fc.tuple(wsp, gatewayish, value, attrs).map(([p, n, v, a]) => `${p}=${n}=${v}${a}`),
  fc.tuple(wsp, gatewayish, attrs).map(([p, n, a]) => `${p}=${n}${a}`),
);

test('no Set-Cookie line the filter lets through can be read back as a gateway cookie', () => {
  const lowerGateway = new Set(GATEWAY_COOKIES.map((n) => n.toLowerCase()));
  const check = (line: string) => {
    const kept = clientResponseHeaders({ 'set-cookie': [line] }, 'portcullis_dev_session')['set-cookie'] !== undefined;
    assert.equal(kept, !setsGatewayCookie(line, 'portcullis_dev_session'));
    if (!kept) return;
    for (const piece of sentBack(line)) {
      const header = `theme=dark; ${piece}`;
      for (const name of GATEWAY_COOKIES) {
        assert.equal(readSessionCookie(header, name), undefined, `${JSON.stringify(line)} is read back as ${name}`);
      }
      for (const n of lenientNames(header)) assert.ok(!lowerGateway.has(n), `${JSON.stringify(line)} is read as ${n} by a lenient parser`);
    }
  };
  fc.assert(fc.property(hostileLine, check), RUNS);
  // and arbitrary text, hostile or not, under the same property
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 60 }), check), RUNS);
  fc.assert(
    fc.property(fc.tuple(fc.string({ unit: 'binary', maxLength: 6 }), gatewayish, fc.string({ unit: 'binary', maxLength: 6 })), ([a, n, b]) => check(`${a}${n}${b}`)),
    RUNS,
  );
});

test('every spelling of a gateway cookie name is dropped', () => {
  fc.assert(
    fc.property(hostileLine, (line) => {
      const stored = browserStores(line);
      // lines a browser ignores altogether need not be dropped; every other one must be
      if (stored === null) return;
      assert.ok(setsGatewayCookie(line, 'portcullis_dev_session'), JSON.stringify(line));
    }),
    RUNS,
  );
});

test('ordinary app cookies pass the filter unchanged', () => {
  const name = fc
    .stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}$/)
    .filter((n) => !/portcullis/i.test(n));
  fc.assert(
    fc.property(name, value, attrs, (n, v, a) => {
      const line = `${n}=${v}${a}`;
      assert.deepEqual(clientResponseHeaders({ 'set-cookie': [line] }, '__Host-portcullis')['set-cookie'], [line]);
    }),
    RUNS,
  );
});

test('the Cookie parser never throws and returns a string or nothing, whatever the bytes', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 200 }), fc.constantFrom(...GATEWAY_COOKIES), (header, name) => {
      const v = readSessionCookie(header, name);
      assert.ok(v === undefined || typeof v === 'string');
      const w = readSessionCookie([header, header], name);
      assert.ok(w === undefined || typeof w === 'string');
    }),
    RUNS,
  );
});

const otherName = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/).filter((n) => !/portcullis/i.test(n));
const ows = fc.array(fc.constantFrom(' ', '\t'), { maxLength: 2 }).map((a) => a.join(''));
const sessionValue = fc.stringMatching(/^[A-Za-z0-9_-]{0,43}$/);

/** A Cookie header with `name` at the given positions among other cookies, in any spacing. */
function cookieHeader(others: Array<[string, string]>, mine: Array<[number, string]>, spaces: string[], name: string): string {
  const pairs = others.map(([n, v]) => `${n}=${v}`);
  mine.forEach(([at, v], i) => {
    const s = spaces[i % Math.max(1, spaces.length)] ?? '';
    pairs.splice(Math.min(at, pairs.length), 0, `${s}${name}${s}=${s}${v}${s}`);
  });
  return pairs.join(spaces[0] === undefined ? '; ' : `;${spaces[0]}`);
}

test('a session cookie present once is read; present twice or more there is no session', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...GATEWAY_COOKIES),
      fc.array(fc.tuple(otherName, value), { maxLength: 5 }),
      fc.array(fc.tuple(fc.nat(6), sessionValue), { minLength: 1, maxLength: 4 }),
      fc.array(ows, { minLength: 1, maxLength: 4 }),
      (name, others, mine, spaces) => {
        const header = cookieHeader(others, mine, spaces, name);
        const got = readSessionCookie(header, name);
        if (mine.length === 1) assert.equal(got, mine[0]![1], header);
        else assert.equal(got, undefined, `${header}: the name ${mine.length} times gives no session`);
        // split across two Cookie header lines (node joins them with "; "): the same answer
        const cut = header.indexOf(';');
        if (cut > 0) assert.equal(readSessionCookie([header.slice(0, cut), header.slice(cut + 1)], name), got);
      },
    ),
    RUNS,
  );
});
