/**
 * Request-target normalisation: the gateway authorises a decoded path and forwards the raw one,
 * so every target on which the gateway and an app could disagree about the resource must be
 * refused, never rewritten. Each vector below is a known access-control bypass shape.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { MAX_PATH_LENGTH, normaliseRequestTarget } from '../../src/net/path.js';

function accepted(target: string) {
  const r = normaliseRequestTarget(target);
  assert.ok(r.ok, `${JSON.stringify(target)} should be accepted, got ${r.ok ? '' : r.reason}`);
  return r;
}

function refused(target: string): string {
  const r = normaliseRequestTarget(target);
  assert.equal(r.ok, false, `${JSON.stringify(target)} should be refused`);
  return r.ok ? '' : r.reason;
}

describe('normaliseRequestTarget: clean targets pass unchanged', () => {
  it('keeps path, raw path and query exactly as sent', () => {
    assert.deepEqual(normaliseRequestTarget('/'), { ok: true, path: '/', rawPath: '/', query: '' });
    assert.deepEqual(normaliseRequestTarget('/owa/auth/logon.aspx?replaceCurrent=1&url=https%3a%2f%2fmail%2fowa'), {
      ok: true,
      path: '/owa/auth/logon.aspx',
      rawPath: '/owa/auth/logon.aspx',
      query: '?replaceCurrent=1&url=https%3a%2f%2fmail%2fowa',
    });
    assert.deepEqual(normaliseRequestTarget('/a/b/?'), { ok: true, path: '/a/b/', rawPath: '/a/b/', query: '?' });
  });

  it('preserves case and accepts a single trailing slash', () => {
    assert.equal(accepted('/OWA/Auth/').path, '/OWA/Auth/');
    assert.equal(accepted('/a/B/c/').rawPath, '/a/B/c/');
  });

  it('accepts names that merely contain dots', () => {
    for (const t of ['/.portcullis/login', '/.well-known/caldav', '/a/.../b', '/a/..b', '/a/b..', '/file.tar.gz', '/.x/..y/z.']) {
      assert.equal(accepted(t).path, t);
    }
  });

  it('accepts the characters browsers leave unencoded in paths', () => {
    const t = "/a-b_c~d!$&'()*+,=:@|^[]{}\"<>`/x";
    assert.equal(accepted(t).path, t);
  });

  it('decodes escapes for matching and forwards the raw path', () => {
    const r = accepted('/files/r%C3%A9sum%C3%A9%20v2.pdf?dl=1');
    assert.equal(r.path, '/files/résumé v2.pdf');
    assert.equal(r.rawPath, '/files/r%C3%A9sum%C3%A9%20v2.pdf');
    assert.equal(r.query, '?dl=1');
    // an encoded `?` or `#` is part of a segment name, not a delimiter
    assert.equal(accepted('/a%3Fb%23c').path, '/a?b#c');
    // a lone encoded `%` is an ordinary character
    assert.equal(accepted('/100%25').path, '/100%');
    assert.equal(accepted('/50%25off').path, '/50%off');
  });

  it('does not touch the query string beyond checking it is printable', () => {
    const q = '?a=..%2f..%2f&b=%00&c=//x;y\\z';
    assert.equal(accepted(`/x${q}`).query, q);
  });
});

describe('normaliseRequestTarget: traversal is refused in every spelling', () => {
  it('refuses dot segments, raw or encoded', () => {
    for (const t of [
      '/public/../app',
      '/public/..',
      '/..',
      '/./x',
      '/a/.',
      '/.',
      '/%2e%2e/app',
      '/%2E%2E/app',
      '/public/%2e%2e/app',
      '/public/.%2e/app',
      '/public/%2e./app',
      '/%2e/x',
      '/public/%2e%2e',
      '/public/%2e%2e?x=1',
    ]) {
      assert.match(refused(t), /dot segment/, t);
    }
  });

  it('refuses encoded separators, backslashes and NUL', () => {
    assert.match(refused('/public%2fadmin'), /encoded slash/);
    assert.match(refused('/public%2Fadmin'), /encoded slash/);
    assert.match(refused('/public%5c..%5cadmin'), /encoded backslash/);
    assert.match(refused('/public%5Cadmin'), /encoded backslash/);
    assert.match(refused('/admin%00.css'), /control/);
    assert.match(refused('/admin%0a'), /control/);
    assert.match(refused('/admin%0D%0ASet-Cookie:x'), /control/);
    assert.match(refused('/admin%7f'), /control/);
    assert.match(refused('/admin%c2%85'), /control/); // U+0085, a C1 control
    assert.match(refused('/admin%e2%80%a8'), /control/); // U+2028 line separator
  });

  it('refuses raw backslashes, spaces, controls, fragments and non-ASCII', () => {
    assert.match(refused('/public\\..\\admin'), /backslash/);
    assert.match(refused('/a b'), /space/);
    assert.match(refused('/a\tb'), /control/);
    assert.match(refused('/a\u0000'), /control/);
    assert.match(refused('/a\u007f'), /control/);
    assert.match(refused('/a#frag'), /fragment/);
    assert.match(refused('/a?b#frag'), /fragment/);
    assert.match(refused('/caf\u00e9'), /non-ASCII/);
    assert.match(refused('/\u2215admin'), /non-ASCII/);
  });

  it('refuses empty segments', () => {
    for (const t of ['//', '//admin', '/a//b', '/a/b//', '///x']) assert.match(refused(t), /empty path segment/, t);
  });

  it('refuses path parameters (Tomcat `..;/`), raw or encoded', () => {
    assert.match(refused('/public/..;/admin'), /semicolon/);
    assert.match(refused('/app;jsessionid=ABC'), /semicolon/);
    assert.match(refused('/public/%2e%2e%3b/admin'), /semicolon/);
    assert.match(refused('/admin%3Bx'), /semicolon/);
  });

  it('refuses invalid percent escapes', () => {
    for (const t of ['/a%', '/a%2', '/a%zz', '/a%g0', '/%u002e%u002e/x', '/a%2?x', '/a%%41']) {
      assert.match(refused(t), /invalid percent escape/, t);
    }
  });

  it('refuses escapes that are not UTF-8, including overlong separators', () => {
    assert.match(refused('/%c0%af..%c0%afadmin'), /UTF-8/); // overlong `/` (IIS 2001)
    assert.match(refused('/%c0%ae%c0%ae/admin'), /UTF-8/); // overlong `.`
    assert.match(refused('/%ff'), /UTF-8/);
    assert.match(refused('/%e2%82'), /UTF-8/); // truncated sequence
    assert.match(refused('/%ed%a0%80'), /UTF-8/); // UTF-16 surrogate
  });

  it('refuses double encoding of what would be refused encoded once', () => {
    for (const t of ['/public/%252e%252e/admin', '/public%252fadmin', '/a%255c', '/a%2500', '/a%253b', '/a%2525', '/a%25c0%25af', '/a%25%32%65']) {
      assert.match(refused(t), /double-encoded/, t);
    }
  });

  it('refuses anything but origin-form', () => {
    assert.match(refused('*'), /asterisk/);
    assert.match(refused('http://evil.example/admin'), /absolute path/);
    assert.match(refused('mail.example.org:443'), /absolute path/);
    assert.match(refused(''), /empty/);
  });

  it('refuses non-printable query strings', () => {
    assert.match(refused('/a?b c'), /space in query/);
    assert.match(refused('/a?b\r\nX-Injected: 1'), /control character in query/);
    assert.match(refused('/a?\u00e9'), /non-ASCII/);
  });
});

describe('normaliseRequestTarget: bounds', () => {
  it(`accepts paths up to ${MAX_PATH_LENGTH} bytes and refuses longer ones`, () => {
    const max = '/' + 'a'.repeat(MAX_PATH_LENGTH - 1);
    assert.equal(accepted(max).path, max);
    assert.equal(accepted(`${max}?${'q'.repeat(20000)}`).rawPath, max);
    assert.match(refused(`${max}a`), /too long/);
    assert.match(refused(`${max}a?x`), /too long/);
    assert.match(refused('/' + 'a'.repeat(1 << 20)), /too long/);
  });

  it('is fast on the common clean path', () => {
    const t = '/owa/service.svc?action=GetFolder&EP=1&ID=-39&AC=1';
    const start = process.hrtime.bigint();
    for (let i = 0; i < 200_000; i++) normaliseRequestTarget(t);
    const perCallNs = Number(process.hrtime.bigint() - start) / 200_000;
    // generous bound (machines vary); the scan is typically well under a microsecond
    assert.ok(perCallNs < 5_000, `took ${perCallNs.toFixed(0)} ns per call`);
  });
});
