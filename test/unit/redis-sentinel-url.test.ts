/**
 * `store: redis-sentinel://...` as an operator writes it: the Sentinel list, the master name, the
 * database, the Redis password in the userinfo and the Sentinels' own password as a parameter;
 * every mistake is refused at its line with a message that never repeats a password, inline or
 * from `{ file }` / `{ env }`.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { loadConfigText, formatIssues, type LoadResult } from '../../src/config/index.js';
import { describeSentinelUrl, isSentinelUrl, parseSentinelUrl } from '../../src/store/redis-url.js';

const APPS = 'apps:\n  - name: demo\n    hosts: [localhost]\n    upstream: builtin:whoami\n    rules: [{ policy: mfa }]\n';

function compile(store: string, env: NodeJS.ProcessEnv = {}): LoadResult {
  return loadConfigText(`store: ${store}\nworkers: 2\n${APPS}`, 'p.yaml', { checkFiles: false, env });
}

function refused(store: string, env: NodeJS.ProcessEnv = {}): string {
  const r = compile(store, env);
  assert.equal(r.ok, false, `expected ${store} to be refused`);
  if (r.ok) return '';
  // (a refused store also brings "workers above 1 need a shared store")
  const mine = r.issues.filter((i) => i.path === 'store');
  assert.equal(mine.length, 1, formatIssues(r.issues));
  return mine[0]!.message;
}

describe('redis-sentinel:// URLs', () => {
  it('parse hosts (default port 26379, IPv6 in brackets), master, db, passwords and prefix', () => {
    assert.deepEqual(parseSentinelUrl('redis-sentinel://h1:26380,h2,[::1]:26381/mymaster'), {
      sentinels: [
        { host: 'h1', port: 26380 },
        { host: 'h2', port: 26379 },
        { host: '::1', port: 26381 },
      ],
      name: 'mymaster',
      db: 0,
    });
    assert.deepEqual(parseSentinelUrl('redis-sentinel://app:p%40ss%2Fw@10.0.0.1:26379,10.0.0.2:26379/cache-1/15?prefix=gw1:&sentinel_password=s%26p&sentinel_username=sen'), {
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: '10.0.0.2', port: 26379 },
      ],
      name: 'cache-1',
      db: 15,
      username: 'app',
      password: 'p@ss/w',
      sentinelUsername: 'sen',
      sentinelPassword: 's&p',
      prefix: 'gw1:',
    });
    assert.equal(parseSentinelUrl('redis-sentinel://:pw@h1/m').password, 'pw');
    assert.equal(parseSentinelUrl('redis-sentinel://:pw@h1/m').username, undefined);
    assert.equal(describeSentinelUrl(parseSentinelUrl('redis-sentinel://:pw@h1,[::1]/m/3?sentinel_password=x')), 'redis-sentinel://h1:26379,[::1]:26379/m/3');
    assert.ok(isSentinelUrl('REDIS-SENTINEL://h/m'));
    assert.ok(!isSentinelUrl('redis://h/0'));
  });

  it('refuse what cannot be meant, naming the part and never the password', () => {
    const cases: Array<[string, RegExp]> = [
      ['redis-sentinel://:pw@h1:26379,h2:26379', /names the monitored master/],
      ['redis-sentinel://:pw@h1:26379,,h2/m', /Sentinel 2 is empty/],
      ['redis-sentinel://:pw@h1:99999/m', /port must be a number/],
      ['redis-sentinel://:pw@h_1/m', /not a host name/],
      ['redis-sentinel://:pw@[zz]/m', /IPv6/],
      ['redis-sentinel://:pw@h1/m/x', /database number/],
      ['redis-sentinel://:pw@h1/m/1/2', /\/MASTER or \/MASTER\/DB/],
      ['redis-sentinel://:pw@h1/m a', /master name/],
      ['redis-sentinel://:pw@h1/m?db=2', /takes only the parameters/],
      ['redis-sentinel://:pw@h1/m?prefix=a%20b', /key prefix/],
      ['redis-sentinel://:pw@h1/m?prefix=a&prefix=b', /given twice/],
      ['redis-sentinel://:pw@h1/m#x', /fragment/],
      ['redis-sentinel://:p%zz@h1/m', /percent-encoding/],
    ];
    for (const [u, re] of cases) {
      assert.throws(() => parseSentinelUrl(u), (e: Error) => re.test(e.message) && !e.message.includes('pw'), u);
    }
  });

  it('compile as a shared store (workers > 1 allowed), from inline text, a file or the environment', () => {
    const url = 'redis-sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379/mymaster/2?prefix=gw:';
    const r = compile(`"${url}"`);
    if (!r.ok) assert.fail(formatIssues(r.issues));
    assert.deepEqual(r.config.store, { kind: 'redis', url });
    const e = compile('{ env: PC_STORE }', { PC_STORE: url });
    if (!e.ok) assert.fail(formatIssues(e.issues));
    assert.deepEqual(e.config.store, { kind: 'redis', url });
  });

  it('config errors point at store: and do not echo a password', () => {
    const m1 = refused('"redis-sentinel://:hunter2-pw@h1:26379,h2:x/mymaster"');
    assert.match(m1, /Sentinel 2 "h2:x": the port/);
    assert.doesNotMatch(m1, /hunter2/);
    const m2 = refused('{ env: PC_STORE }', { PC_STORE: 'redis-sentinel://:hunter2-pw@h1/m?bogus=1' });
    assert.match(m2, /from environment variable PC_STORE: a Sentinel URL takes only the parameters/);
    assert.doesNotMatch(m2, /hunter2/);
    assert.match(refused('"redis-sentinel://h1/m\\r\\nFLUSHALL"'), /line break/);
  });
});
