/**
 * Separators and dots in Unicode compatibility form. Found by the property test of path
 * normalisation (test/property/path.property.test.ts), which reads every accepted path the ways an
 * app might.
 *
 * The attack: `/public/%ef%bc%8e%ef%bc%8e/admin` decodes to `/public/．．/admin` (U+FF0E, the
 * fullwidth full stop). To the gateway that is a harmless segment under /public/, so a
 * `/public/**` bypass rule lets it through; an app or library that applies Unicode compatibility
 * normalisation (NFKC) to the path, or a Windows program that converts it to a code page with
 * best-fit mapping, sees `/public/../admin`, which is /admin. The same goes for the fullwidth
 * solidus `／` and reverse solidus `＼` (new separators) and the two-dot leader `‥` (one character,
 * `..` after NFKC); on an IIS app, `ecp．` is `ecp.`, which Windows reads as `ecp`.
 *
 * Peer advisories: Python CVE-2019-9636 (urlsplit: NFKC turned compatibility characters of the
 * netloc into separators, so a URL parsed to another host than it was checked for); Orange Tsai's
 * "WorstFit" research and CVE-2024-4577 (PHP-CGI on Windows: best-fit mapping turned a soft hyphen
 * into `-` after the check had passed).
 *
 * The safe answer: refuse (400) a path in which NFKC makes a separator or a dot segment, for every
 * app; for IIS apps apply the Windows-alias checks to the NFKC form too. Ordinary non-ASCII paths,
 * and `…` (which becomes `...`, not a dot segment), are untouched.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { normaliseRequestTarget } from '../../src/net/path.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';

let up: Upstream;
let gw: TestGateway;

before(async () => {
  up = await startUpstream();
  gw = await startTestGateway(`
apps:
  - name: site
    hosts: ["site.test"]
    upstream: "${up.url}"
    rules:
      - { paths: ["/public/**"], policy: bypass }
      - { policy: deny }
  - name: owa
    hosts: ["owa.test"]
    upstream: "${up.url}"
    case_insensitive_paths: true
    rules:
      - { paths: ["/ecp/**"], policy: deny }
      - { policy: bypass }
`);
});

after(async () => {
  await gw?.close();
  await up?.close();
});

const ESCAPES = [
  ['/public/%ef%bc%8e%ef%bc%8e/admin', 'fullwidth ．．'],
  ['/public/.%ef%bc%8e/admin', 'a dot and a fullwidth dot'],
  ['/public/%e2%80%a5/admin', 'the two-dot leader ‥'],
  ['/public/%ef%bc%8e', 'a fullwidth ． segment'],
  ['/public/x%ef%bc%8f..%ef%bc%8fadmin', 'fullwidth ／'],
  ['/public/x%ef%bc%bcadmin', 'fullwidth ＼'],
] as const;

test('compatibility forms of separators and dot segments are refused, before any rule', async () => {
  const before = up.requests.length;
  for (const [p, what] of ESCAPES) {
    const r = await rawHttp(gw.port, get(p, 'site.test'));
    assert.equal(r.status, 400, `${what}: ${p}`);
  }
  assert.equal(up.requests.length, before, 'none reached the app');
});

test('ordinary non-ASCII paths still pass', async () => {
  for (const p of ['/public/caf%c3%a9', '/public/%e2%80%a6', '/public/%ef%bd%81', '/public/%e6%96%87%e6%9b%b8/x']) {
    assert.equal((await rawHttp(gw.port, get(p, 'site.test'))).status, 200, p);
  }
});

test('an IIS app: a fullwidth trailing dot or colon is the ASCII one to Windows', async () => {
  for (const p of ['/ecp%ef%bc%8e/x', '/ecp%e3%80%80/x', '/owa/x.aspx%ef%bc%9a%ef%bc%9a$DATA']) {
    assert.equal((await rawHttp(gw.port, get(p, 'owa.test'))).status, 400, p);
  }
  assert.equal((await rawHttp(gw.port, get('/owa/caf%c3%a9', 'owa.test'))).status, 200);
});

test('the reasons name what was found', () => {
  const r = normaliseRequestTarget('/public/%ef%bc%8e%ef%bc%8e/admin');
  assert.deepEqual(r, { ok: false, reason: 'dot segment in path after Unicode normalisation' });
  const s = normaliseRequestTarget('/public/a%ef%bc%8fb');
  assert.deepEqual(s, { ok: false, reason: 'character in path that Unicode normalisation turns into a separator' });
});
