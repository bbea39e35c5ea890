/**
 * Regular-expression denial of service (ReDoS) through path rules.
 *
 * The attack: an administrator writes a path rule such as `^/api/(\w+)*\/status$`. In a
 * backtracking engine (JavaScript's RegExp) a path that almost matches, `/api/aaa…a!`, makes it
 * try every way of splitting the a's between the repetitions: 2^n steps. The review measured
 * 7.1 s for a 39-byte path, during which the single event loop served nobody (a health check
 * waited 5.3 s). Paths are tested before anyone signs in and, as rules were evaluated, before the
 * network condition, so any client anywhere could send it, over and over. Globs were exposed too:
 * `/**\/a/**\/b/**\/c` or `/a*b*c*d` compile to regexes with several `.*`, polynomial in a
 * backtracking engine (a minute for `/**\/a/**\/b/**\/c/**\/d` on a 5 KB path).
 *
 * Peer advisories: path-to-regexp CVE-2024-45296 (GHSA-9wv6-86v2-598j), where route patterns
 * written by the developer compiled to backtracking regexes that a request path could stall; the
 * Cloudflare outage of 2 July 2019 (one WAF rule with `.*(?:.*=.*)` pinned every CPU).
 *
 * The safe answer: path patterns are matched in time linear in the path. `^regex` rules and globs
 * with two or more wildcards run on RE2 (re2js); a glob with at most one wildcard stays on the
 * built-in engine, which is linear for it. What RE2 cannot do in linear time (backreferences,
 * lookaround) is refused at load with file:line:col and the key. And `decide` tests the method and
 * network conditions, which the client cannot shape, before the path, without changing which
 * rule matches or what `explain` prints.
 *
 * No test here asserts an absolute duration: they compare the cost of a hostile input with that of
 * an ordinary one, or of a longer hostile input with a shorter one, with generous ratios.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePathPattern } from '../../src/config/paths.js';
import { formatIssues, loadConfigText } from '../../src/config/load.js';
import type { CompiledApp, PathMatcher } from '../../src/config/types.js';
import { decide, explain, type DecisionInput } from '../../src/policy/decide.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';

const EVIL_RULE = '^/api/(\\w+)*/status$';
/** The 39-byte path of the review: 33 word characters that almost reach `/status`. */
const EVIL_PATH = `/api/${'a'.repeat(33)}!`;
const PLAIN_PATH = '/api/users/status';

function matcher(pattern: string, caseInsensitive = false): PathMatcher {
  const r = compilePathPattern(pattern, { caseInsensitive });
  if (!r.ok) assert.fail(`${pattern}: ${r.error}`);
  return r.matcher;
}

/**
 * Milliseconds per call of `fn`: the fastest of several batches (the minimum shrugs off garbage
 * collection, JIT tiering and a busy machine). A batch runs until it has taken 2 ms, so a slow
 * call (a backtracking blow-up) is run only a handful of times.
 */
function perCall(fn: () => void, batches = 7): number {
  fn(); // warm up
  let best = Infinity;
  for (let b = 0; b < batches; b++) {
    let reps = 0;
    const t0 = performance.now();
    let elapsed = 0;
    do {
      fn();
      reps++;
      elapsed = performance.now() - t0;
    } while (elapsed < 2 && reps < 5000);
    best = Math.min(best, elapsed / reps);
  }
  return best;
}

test('the review pattern answers the 39-byte path as fast as an ordinary one, and still means what it says', () => {
  const m = matcher(EVIL_RULE);
  assert.equal(m.test('/api/users/status'), true);
  assert.equal(m.test('/api/status'), false, '(\\w+)* may be empty, but then two slashes are needed');
  assert.equal(m.test('/api//status'), true);
  assert.equal(m.test(EVIL_PATH), false);
  assert.equal(EVIL_PATH.length, 39);

  const plain = perCall(() => m.test(PLAIN_PATH));
  // one call first: a backtracking engine takes seconds here, and a thousand would take hours
  const t0 = performance.now();
  m.test(EVIL_PATH);
  const once = performance.now() - t0;
  assert.ok(once < Math.max(1000 * plain, 50), `one hostile call took ${once.toFixed(1)} ms, an ordinary one ${plain.toFixed(4)} ms`);
  const t1 = performance.now();
  for (let i = 0; i < 1000; i++) m.test(EVIL_PATH);
  const evil = (performance.now() - t1) / 1000;
  assert.ok(evil < 50 * plain + 0.05, `hostile ${evil.toFixed(4)} ms per call vs ordinary ${plain.toFixed(4)} ms`);
});

test('cost grows linearly with the hostile path, not exponentially (regex) or polynomially (globs)', () => {
  const cases: Array<{ pattern: string; ci?: boolean; path: (n: number) => string; short: number; long: number }> = [
    // exponential in a backtracking engine: 2^n
    { pattern: EVIL_RULE, path: (n) => `/api/${'a'.repeat(n)}!`, short: 16, long: 24 },
    { pattern: '^/(a|aa)+$', path: (n) => `/${'a'.repeat(n)}b`, short: 20, long: 30 },
    // polynomial: n^k for k wildcards
    { pattern: '/**/a/**/b/**/c/**/d', path: (n) => `/a/b/c${'/a/b/c'.repeat(n)}/x`, short: 10, long: 80 },
    { pattern: '/a*b*c*d*e', path: (n) => `/a${'bcd'.repeat(n)}`, short: 20, long: 160 },
    { pattern: '/**a**a**a**b', ci: true, path: (n) => `/${'a'.repeat(n)}`, short: 20, long: 160 },
  ];
  for (const c of cases) {
    const m = matcher(c.pattern, c.ci);
    assert.equal(m.test(c.path(c.short)), false, `${c.pattern} should not match the hostile path`);
    const shortPath = c.path(c.short);
    const longPath = c.path(c.long);
    perCall(() => m.test(shortPath), 1); // both inputs through the JIT before measuring
    perCall(() => m.test(longPath), 1);
    const short = perCall(() => m.test(shortPath));
    const long = perCall(() => m.test(longPath));
    const lengthRatio = longPath.length / shortPath.length;
    // linear: about lengthRatio; allow 10 times that (noise, caches) and a floor for tiny timings
    assert.ok(
      long < 10 * lengthRatio * short + 0.05,
      `${c.pattern}: ${long.toFixed(4)} ms on ${longPath.length} bytes vs ${short.toFixed(4)} ms on ${shortPath.length}`,
    );
  }
});

test('patterns RE2 cannot run in linear time are refused at load, naming file:line:col and the key', () => {
  const yaml = (pattern: string) => `apps:
  - name: api
    hosts: [api.test]
    upstream: builtin:whoami
    rules:
      - { paths: ["/ok"], policy: bypass }
      - paths:
          - "/fine/**"
          - ${JSON.stringify(pattern)}
        policy: deny
`;
  const cases: Array<[string, RegExp]> = [
    ['^/(a+)\\1$', /uses a backreference \(\\1\), which cannot be matched in time linear in the path/],
    ['^/(?<n>a+)/\\k<n>$', /uses a backreference \(\\k<\.\.\.>\)/],
    ['^/admin(?!/public)', /uses a negative lookahead \(\?!\.\.\.\)/],
    ['^/x(?=y)', /uses a lookahead \(\?=\.\.\.\)/],
    ['^/(?<=a)b', /uses a lookbehind \(\?<=\.\.\.\)/],
    ['^/(?<!a)b', /uses a negative lookbehind/],
    ['^/\\u0041', /not RE2 syntax.*\\xHH/],
    ['^/(unclosed', /not a valid regular expression/],
  ];
  for (const [pattern, message] of cases) {
    const r = loadConfigText(yaml(pattern), 'portcullis.yaml', { checkFiles: false });
    assert.equal(r.ok, false, pattern);
    if (r.ok) continue;
    assert.equal(r.issues.length, 1, formatIssues(r.issues));
    const text = formatIssues(r.issues);
    assert.match(text, /^portcullis\.yaml:9:13 apps\[0\]\.rules\[1\]\.paths\[1\]: /, text);
    assert.match(text, message, text);
  }
  // what both engines read alike is accepted: groups, classes, named groups, bounded repetition
  for (const ok of ['^/api/v[0-9]+/', '^/(?<v>v1|v2)/x$', '^/a{2,5}$', '^/\\/x', '^/[(?=]', '^/\\(?=x']) {
    assert.equal(compilePathPattern(ok).ok, true, ok);
  }
});

test('case-insensitive apps keep case-insensitive regexes and globs, on both engines', () => {
  const cases: Array<[string, string[], string[]]> = [
    ['^/ecp(/|$)', ['/ecp/', '/ECP', '/Ecp/x'], ['/ecpx', '/owa']],
    ['/ecp/**', ['/ECP', '/eCp/x/y'], ['/ecpx']],
    ['/ecp/*/**', ['/ECP/a/b', '/eCp/x'], ['/ecp']],
  ];
  for (const [pattern, yes, no] of cases) {
    const ci = matcher(pattern, true);
    const cs = matcher(pattern, false);
    for (const p of yes) assert.equal(ci.test(p), true, `${pattern} ~ ${p}`);
    for (const p of no) assert.equal(ci.test(p), false, `${pattern} !~ ${p}`);
    assert.equal(cs.test(yes.find((p) => p !== p.toLowerCase())!), false, `${pattern} is case-sensitive without the flag`);
  }
});

/** The compiled app of `rules`, with every path matcher counting its calls. */
function countingApp(rules: string): { app: CompiledApp; calls: () => number } {
  const r = loadConfigText(
    `networks: { office: ["10.0.0.0/8"] }
apps:
  - name: api
    hosts: [api.test]
    upstream: builtin:whoami
    rules:
${rules}`,
    'p.yaml',
    { checkFiles: false },
  );
  if (!r.ok) assert.fail(formatIssues(r.issues));
  const app = r.config.apps[0]!;
  let n = 0;
  const spy = (m: PathMatcher): PathMatcher => ({ source: m.source, test: (p) => (n++, m.test(p)) });
  return { app: { ...app, rules: app.rules.map((x) => ({ ...x, paths: x.paths?.map(spy) ?? null })) }, calls: () => n };
}

test('decide tests method and network before the path; the verdict and the explanation are unchanged', () => {
  const { app, calls } = countingApp(`      - { paths: ["${EVIL_RULE.replace(/\\/g, '\\\\')}"], networks: [office], policy: password }
      - { paths: ["/admin/**"], methods: [POST], policy: deny }
      - { paths: ["/public/**"], policy: bypass }
      - { methods: [GET], policy: bypass }
      - { policy: deny }
`);
  const d = decide(app, { method: 'GET', path: EVIL_PATH, ip: '192.0.2.7', subject: null });
  assert.equal(d.policy, 'bypass');
  assert.equal(d.rule?.index, 3);
  // only /public/**, which has no other condition, looked at the path
  assert.equal(calls(), 1, 'a client outside the network, or with another method, never reaches that rule\'s path test');
  const before = calls();
  decide(app, { method: 'GET', path: '/admin/x', ip: '192.0.2.7', subject: null });
  assert.equal(calls() - before, 1, 'GET is not POST: the /admin/** pattern is not run');

  // the same verdicts as with the conditions in written order
  const verdict = (input: DecisionInput) => {
    const x = decide(app, input);
    return [x.policy, x.rule?.index ?? null, x.networkDenied];
  };
  assert.deepEqual(verdict({ method: 'GET', path: '/api/x/status', ip: '10.1.2.3', subject: null }), ['password', 0, false]);
  assert.deepEqual(verdict({ method: 'PUT', path: '/api/x/status', ip: '10.1.2.3', subject: null }), ['password', 0, false]);
  assert.deepEqual(verdict({ method: 'PUT', path: '/api/x/status', ip: '192.0.2.7', subject: null }), ['deny', 4, true]);
  assert.deepEqual(verdict({ method: 'PUT', path: '/other', ip: '192.0.2.7', subject: null }), ['deny', 4, false]);
  assert.deepEqual(verdict({ method: 'POST', path: '/admin/x', ip: '10.1.2.3', subject: null }), ['deny', 1, false]);
  assert.deepEqual(verdict({ method: 'POST', path: '/public/a', ip: '192.0.2.7', subject: null }), ['bypass', 2, false]);

  // explain still names the first failing condition as written: the path before the network
  const { trace } = explain(app, { method: 'PUT', path: '/nothing', ip: '192.0.2.7', subject: null });
  assert.match(trace[0]!, /skipped, path \/nothing matches none of \[\^\/api/);
  assert.match(trace[1]!, /skipped, method PUT not in \[POST\]/);
  assert.match(trace[2]!, /skipped, path \/nothing matches none of \[\/public/);
  assert.match(trace[3]!, /skipped, method PUT not in \[GET\]/);
  assert.match(trace[4]!, /MATCH/);
  const elsewhere = explain(app, { method: 'PUT', path: '/api/x/status', ip: '192.0.2.7', subject: null }).trace;
  assert.match(elsewhere[0]!, /skipped, 192\.0\.2\.7 is not in \[office\]/);
});

describe('through the gateway', () => {
  let up: Upstream;
  let gw: TestGateway;

  before(async () => {
    up = await startUpstream();
    gw = await startTestGateway(`
apps:
  - name: api
    hosts: ["api.test"]
    upstream: "${up.url}"
    rules:
      - { paths: ["${EVIL_RULE.replace(/\\/g, '\\\\')}"], policy: deny }
      - { policy: bypass }
`);
  });

  after(async () => {
    await gw?.close();
    await up?.close();
  });

  /** Latency of a health check sent while `paths` are being requested in parallel. */
  async function healthDuring(paths: string[]): Promise<{ healthMs: number; statuses: number[] }> {
    const load = paths.map((p) => rawHttp(gw.port, get(p, 'api.test'), { timeoutMs: 120_000 }));
    const t0 = performance.now();
    const health = await rawHttp(gw.port, get('/.portcullis/healthz', 'api.test'), { timeoutMs: 120_000 });
    const healthMs = performance.now() - t0;
    assert.equal(health.status, 200);
    return { healthMs, statuses: (await Promise.all(load)).map((r) => r.status) };
  }

  test('through the gateway: hostile paths are answered and a concurrent health check is not stalled', async () => {
    await healthDuring([PLAIN_PATH]); // warm up
    const baseline = await healthDuring([PLAIN_PATH, PLAIN_PATH, PLAIN_PATH]);
    assert.deepEqual(baseline.statuses, [403, 403, 403]);
    const attacked = await healthDuring([EVIL_PATH, EVIL_PATH, EVIL_PATH]);
    assert.deepEqual(attacked.statuses, [200, 200, 200], 'the hostile path does not match the deny rule; the bypass rule lets it through');
    // generous: twenty times the baseline, and never less than one second (the stall was seconds per request)
    assert.ok(
      attacked.healthMs < Math.max(20 * baseline.healthMs, 1000),
      `health check took ${attacked.healthMs.toFixed(1)} ms under attack vs ${baseline.healthMs.toFixed(1)} ms`,
    );
  });
});
