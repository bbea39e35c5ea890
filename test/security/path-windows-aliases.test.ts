/**
 * Other names for the same file on Windows, for apps behind IIS (`case_insensitive_paths: true`).
 *
 * The attack: the gateway matches rules against the path as written, IIS serves the file that
 * Windows finds under that name, and Windows finds one file under many names. Besides letter case
 * (test/security/path-case.test.ts), Win32 drops trailing dots and spaces from every name, so
 * `/ecp./x`, `/ecp%20/x`, `/ecp%2e/x` and `/ecp%20..%20/x` all reach /ecp/x, and a deny on
 * `/ecp/**` is dodged with one extra character. Two older aliases belong to the same family:
 * `file::$DATA` is the file's NTFS data stream (IIS once served a script's source that way), and
 * `LONGDI~1` is the 8.3 short name of `longdirectoryname` on volumes that keep short names.
 *
 * Peer advisories: Microsoft MS98-003 / CVE-1999-0278 (IIS served an ASP page's source for
 * `page.asp::$DATA`); the IIS tilde short-name disclosure (Soroush Dalili, 2012); Apache Tomcat
 * on Windows, CVE-2017-12615 (`x.jsp%20` and `x.jsp::$DATA` were not `.jsp` to the servlet
 * mapping, but were x.jsp to Windows).
 *
 * The safe answer ("refuse rather than rewrite", as in src/net/path.ts): for an IIS app, a path
 * with a segment ending in a dot or a space in any spelling, a `:` or a `~` followed by a digit is
 * refused with 400 before any rule, and never reaches the app. Apps not on Windows are unchanged:
 * there `/ecp.` is simply another name, which the app itself judges.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { normaliseRequestTarget } from '../../src/net/path.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';
import { runCommand } from '../helpers/cli.js';

const CONFIG = (upstream: string) => `
apps:
  - name: owa
    hosts: ["owa.test"]
    upstream: "${upstream}"
    case_insensitive_paths: true
    rules:
      - { paths: ["/ecp/**"], policy: deny }
      - { policy: bypass }
  - name: unix
    hosts: ["unix.test"]
    upstream: "${upstream}"
    rules:
      - { paths: ["/ecp/**"], policy: deny }
      - { policy: bypass }
`;

/** Paths IIS serves as something else than their text says. */
const ALIASES = [
  '/ecp./x',
  '/ecp%20/x',
  '/ecp%2e/x',
  '/ecp%2E/x',
  '/ecp%20..%20/x',
  '/ecp../x',
  '/ECP.%20./x',
  '/ecp.',
  '/ecp%20',
  '/ecp/x.aspx.',
  '/ecp/default.aspx::$DATA',
  '/ecp::$INDEX_ALLOCATION/x',
  '/owa/logon.aspx%3a%3a$DATA',
  '/ECPLON~1/x',
  '/owa/PROGRA~2/x',
  '/...',
];

/** Ordinary IIS paths that must keep working. */
const ORDINARY = ['/owa/', '/owa/auth/logon.aspx', '/owa/a.b/c', '/owa/x%20y/z', '/owa/.well-known/x', '/owa/~user/', '/owa/a~b', '/owa/?q=a.&r=%20'];

let up: Upstream;
let gw: TestGateway;

before(async () => {
  up = await startUpstream();
  gw = await startTestGateway(CONFIG(up.url));
});

after(async () => {
  await gw?.close();
  await up?.close();
});

test('an IIS app: every Windows alias of a path is refused with 400 and never reaches the app', async () => {
  const before = up.requests.length;
  for (const p of ALIASES) {
    const r = await rawHttp(gw.port, get(p, 'owa.test'));
    assert.equal(r.status, 400, p);
  }
  assert.equal(up.requests.length, before, 'none reached the app');
  for (const p of ORDINARY) {
    assert.equal((await rawHttp(gw.port, get(p, 'owa.test'))).status, 200, p);
  }
  assert.equal((await rawHttp(gw.port, get('/ecp/x', 'owa.test'))).status, 403, 'the rule itself still holds');
});

test('an app not on Windows is unchanged: those are other names, judged by the rules and the app', async () => {
  for (const p of ['/ecp./x', '/ecp%20/x', '/owa/a::$DATA', '/ECPLON~1/x']) {
    assert.equal((await rawHttp(gw.port, get(p, 'unix.test'))).status, 200, p);
  }
  assert.equal((await rawHttp(gw.port, get('/ecp/x', 'unix.test'))).status, 403);
});

test('normaliseRequestTarget: the windows option, and nothing else changes without it', () => {
  for (const p of ALIASES) {
    const w = normaliseRequestTarget(p, { windows: true });
    assert.equal(w.ok, false, p);
    if (!w.ok) assert.match(w.reason, /dot or a space|NTFS stream|short \(8\.3\)|dot segment/, p);
  }
  for (const p of ORDINARY) {
    const w = normaliseRequestTarget(p, { windows: true });
    assert.deepEqual(w, normaliseRequestTarget(p), p);
    assert.equal(w.ok, true, p);
  }
  for (const p of ALIASES) {
    assert.equal(normaliseRequestTarget(p).ok, true, `${p} is accepted for other apps`);
  }
});

test('portcullis explain says the same as the gateway', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pc-explain-win-'));
  try {
    const cfg = join(dir, 'p.yaml');
    await writeFile(join(dir, 'users.yaml'), 'users: {}\n');
    await writeFile(cfg, `users_file: ${JSON.stringify(join(dir, 'users.yaml'))}\ndata_dir: ${JSON.stringify(join(dir, 'data'))}\n${CONFIG('http://127.0.0.1:9')}`);
    const iis = await runCommand(['explain', '--config', cfg, '--url', 'https://owa.test/ecp%2e/x', '--ip', '192.0.2.7']);
    assert.equal(iis.code, 0, iis.err);
    assert.match(iis.out, /refused with 400 before any rule: path segment ending in a dot or a space/);
    const unix = await runCommand(['explain', '--config', cfg, '--url', 'https://unix.test/ecp%2e/x', '--ip', '192.0.2.7']);
    assert.match(unix.out, /decision: bypass/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
