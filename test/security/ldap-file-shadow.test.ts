/**
 * Attack (review finding F2): a directory user shadowing a users-file user. The users file is a
 * case-sensitive map, the directory's search ignores case: with a break-glass file user `alice`
 * and a directory entry uid=alice, typing `Alice` used to reach the directory alice, whose
 * session then reached the apps as `Remote-User: alice` (the break-glass admin's name) and whose
 * sign-in wrote its network into the FILE user's familiar networks.
 *
 * Now a typed name that equals a file user's name ignoring case never goes to the directory, and
 * a directory entry whose name is a file user's (found by mail, say) is refused: the same
 * generic failure as a wrong password, the real reason in the audit. The file user is unaffected.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { echoOf, startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { PortalClient } from '../helpers/portal.js';
import { slapdMissing, startSlapd, type Slapd, ldapYaml, UID_OR_MAIL_FILTER } from '../helpers/slapd.js';

const missing = slapdMissing();
const HOME = '127.0.1.2';
const FILE_PW = 'break glass admin password 42';
const DIR_PW = 'Wonderland-Rabbit-1865';
let slapd: Slapd;
let up: Upstream;
let gw: TestGateway;

before(async () => {
  if (missing) return;
  slapd = await startSlapd();
  up = await startUpstream();
  gw = await startTestGateway(`
networks:
  home: ["${HOME}/32"]
${ldapYaml(slapd.url, UID_OR_MAIL_FILTER)}
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    rules:
      - { policy: password }
`, { users: [{ name: 'alice', password: FILE_PW, groups: ['admins'] }] });
});
after(async () => {
  await gw?.close();
  await up?.close();
  await slapd?.close();
});

async function auditReasons(): Promise<string[]> {
  const text = await readFile(join(gw.dir.dir, 'data', 'audit.jsonl'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { event: string; reason?: string }).filter((e) => e.event === 'login_failed').map((e) => e.reason ?? '');
}

test('a directory user never signs in under a users-file user\'s name', { skip: missing ?? false }, async (t) => {
  const rt = gw.gw.rt;
  const dirBinds = await slapd.failures('alice');
  // `Alice` (case) and `alice@example.org` (the directory entry uid=alice found by mail) with the
  // directory password: both refused as a wrong password would be
  let k = 0;
  for (const typed of ['Alice', 'ALICE', 'alice@example.org']) {
    const c = new PortalClient(gw.port, 'mail.test', { localAddress: `127.0.2.${++k}` });
    const r = await c.login(typed, DIR_PW, '/');
    t.diagnostic(`${typed} with the directory password: ${r.status}`);
    assert.equal(r.status, 401, `${typed} is refused`);
  }
  // a name that differs only in case was never sent to the directory (no search, no bind)
  assert.equal(await slapd.failures('alice'), dirBinds);
  assert.deepEqual(await rt.stores.state.knownNetworks('alice'), [], 'no directory sign-in touched the file user alice');
  let reasons: string[] = [];
  for (let i = 0; i < 50 && reasons.length < 3; i++) {
    reasons = await auditReasons();
    if (reasons.length < 3) await new Promise((r) => setTimeout(r, 20));
  }
  t.diagnostic(`audit: ${JSON.stringify(reasons)}`);
  assert.ok(reasons.some((r) => /differs only in case from the users-file user alice/.test(r)), 'the case variant is audited as such');
  assert.ok(reasons.some((r) => /has the name of a users-file user/.test(r)), 'the colliding directory entry is audited as such');

  // the break-glass file user still signs in, and the app sees her
  const c = new PortalClient(gw.port, 'mail.test', { localAddress: HOME });
  assert.equal((await c.login('alice', FILE_PW, '/')).status, 303);
  assert.equal(echoOf(await c.get('/')).headers['remote-user'], 'alice');
});
