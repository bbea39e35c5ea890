/**
 * Review note on F1: a bind that was sent and never answered (a timeout: the directory frozen
 * mid-bind) may still be counted by the directory once it wakes up. It must stay in the
 * account's bind budget, never be taken back (only a connection that failed before anything was
 * sent is). Here the directory is frozen for exactly the bind; the budget (1 bind at
 * lockout_threshold 2) is then spent by the unanswered bind, and the next guess is answered
 * without a bind.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCoreRuntime, type CoreRuntime } from '../helpers/core-runtime.js';
import { firstFactor } from '../../src/auth/login.js';
import { isPortcullisError } from '../../src/errors.js';
import { bindUnanswered } from '../../src/directory/ldap.js';
import { BASE_DN, slapdMissing, startSlapd, type Slapd, ldapYaml } from '../helpers/slapd.js';

const missing = slapdMissing();
let slapd: Slapd;
let core: CoreRuntime;

/** A runtime on the fixture's directory with `lockout_threshold` and the given `login_limits`. */
function directoryRuntime(threshold: number, limits: string): Promise<CoreRuntime> {
  return startCoreRuntime(`
networks:
  office: ["127.0.0.1/32"]
login_limits: ${limits}
${ldapYaml(slapd.url, `lockout_threshold: ${threshold}`, 'timeout: 500ms')}
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { policy: password }
`, { users: [] });
}

/** The directory freezes for each bind alone (the search before it is answered); returns the undo. */
function freezeDuringBinds(dir: NonNullable<CoreRuntime['rt']['directory']>): () => void {
  const bind = dir.bind.bind(dir);
  dir.bind = async (dn, pw) => {
    await slapd.freeze();
    try {
      return await bind(dn, pw);
    } finally {
      slapd.thaw();
    }
  };
  return () => {
    dir.bind = bind;
  };
}

before(async () => {
  if (missing) return;
  slapd = await startSlapd();
  core = await directoryRuntime(2, '{ hash_concurrency: 16, per_user: { max_failures: 1, ceiling: { max_failures: 1 } } }');
});
after(async () => {
  await core?.rt.directory?.close();
  await core?.close();
  await slapd?.close();
});

test('an unanswered bind stays in the bind budget', { skip: missing ?? false }, async (t) => {
  const rt = core.rt;
  const dir = rt.directory!;
  const app = core.app('mail');
  const thaw = freezeDuringBinds(dir);
  let ip = 0;
  const attempt = (password: string) => firstFactor(rt, rt.config, { app, ip: `10.${++ip}.0.1`, username: 'alice', password, rd: null });
  // the right password, so the directory (once thawed) counts nothing itself: what is left is the gateway's own budget
  const e = await attempt('Wonderland-Rabbit-1865').then(() => null, (err: unknown) => err);
  assert.ok(isPortcullisError(e, 'PC_DIRECTORY_UNAVAILABLE') && bindUnanswered(e), String(e));
  thaw();
  const before = await slapd.failures('alice');
  const r = await attempt('a wrong guess 1');
  const after = await slapd.failures('alice');
  t.diagnostic(`next attempt: ${r.kind}; failed binds in the directory ${before} -> ${after}`);
  assert.equal(r.kind, 'fail');
  assert.equal(after, before, 'no bind: the unanswered bind spent the budget');
  // a connection refused before anything was sent is not an unanswered bind
  await slapd.stop();
  try {
    const e = await dir.bind(`uid=alice,ou=people,${BASE_DN}`, 'x').then(() => null, (err: unknown) => err);
    assert.ok(isPortcullisError(e, 'PC_DIRECTORY_UNAVAILABLE') && !bindUnanswered(e), String(e));
  } finally {
    await slapd.start();
  }
});

test('after an unanswered bind the same (right) password is bound again once the directory answers, not taken for a repeat', { skip: missing ?? false }, async () => {
  // review note: the unanswered bind's budget entry was keyed by the password, so a retry of the
  // right password was answered "the same wrong password again" (and remembered as wrong) for 24 h
  const wide = await directoryRuntime(10, '{ hash_concurrency: 16 }');
  try {
    const rt = wide.rt;
    const dir = rt.directory!;
    const app = wide.app('mail');
    const thaw = freezeDuringBinds(dir);
    const attempt = (ip: string) => firstFactor(rt, rt.config, { app, ip, username: 'bob', password: 'Can-We-Fix-It-2024', rd: null });
    const e = await attempt('10.7.0.1').then(() => null, (err: unknown) => err);
    assert.ok(isPortcullisError(e, 'PC_DIRECTORY_UNAVAILABLE') && bindUnanswered(e), String(e));
    thaw();
    const again = await attempt('10.7.0.1');
    assert.notEqual(again.kind, 'fail', 'the right password, bound again once the directory answers, signs in');
  } finally {
    await wide.rt.directory?.close();
    await wide.close();
  }
});
