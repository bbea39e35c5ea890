/**
 * Attack: lock real people out of Windows by spraying wrong passwords through the gateway.
 *
 * A directory locks an account after `lockout_threshold` failed binds (here slapd's ppolicy,
 * pwdMaxFailure 10, every failure recorded as a `pwdFailureTime` value we can count). An attacker
 * who can reach the sign-in page sends many wrong passwords, in parallel, from many source
 * addresses, at several accounts, repeating some, and under several names for the same account
 * (`alice` and `alice@example.org`: the user filter accepts the uid or the e-mail address, so the
 * gateway's per-name counters are two, while the directory's account is one).
 *
 * What must hold: no account ever collects more than `lockout_threshold - 1` failed binds, none is
 * locked, and alice still signs in from the office, where she has signed in before.
 *
 * The gateway's defences, in order: its throttles decide before any bind (per-user buckets,
 * familiar and unfamiliar networks apart); a repeat of a wrong password is answered without a
 * bind; and the per-account bind budget (keyed by the directory's entryUUID, shared by every
 * name the account answers to) admits at most `lockout_threshold - 1` failed binds, fewer from
 * unfamiliar networks so the owner keeps room for her own typos.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { PortalClient } from '../helpers/portal.js';
import { BASE_DN, SERVICE_DN, SERVICE_PW, slapdMissing, startSlapd, type Slapd } from '../helpers/slapd.js';

const missing = slapdMissing();
const OFFICE = '127.0.0.1';
const THRESHOLD = 10;

let slapd: Slapd;
let up: Upstream;
let gw: TestGateway;

before(async () => {
  if (missing) return;
  slapd = await startSlapd();
  up = await startUpstream();
  gw = await startTestGateway(
    `
networks:
  office: ["${OFFICE}/32"]
login_limits: { hash_concurrency: 8 }
ldap:
  implementation: openldap
  url: "${slapd.url}"
  insecure: true
  bind_dn: "${SERVICE_DN}"
  bind_password: "${SERVICE_PW}"
  base_dn: "${BASE_DN}"
  user_filter: "(&(objectClass=person)(|(uid={username})(mail={username})))"
  lockout_threshold: ${THRESHOLD}
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    rules:
      - { policy: password }
`,
    { users: [] },
  );
});

after(async () => {
  await gw?.close();
  await up?.close();
  await slapd?.close();
});

test('spraying through the gateway never brings a directory account to its lockout', { skip: missing ?? false }, async (t) => {
  // alice has signed in from the office before: a familiar network for her
  assert.equal((await new PortalClient(gw.port, 'mail.test', { localAddress: OFFICE }).login('alice', 'Wonderland-Rabbit-1865', '/')).status, 303);

  // the attack: every request from a fresh source address (so per-source limits never bite),
  // 16 distinct wrong passwords plus repeats per name, two names per account, 8 in flight
  const names = [
    ['alice', 'alice'],
    ['alice', 'alice@example.org'],
    ['alice', 'ALICE@example.org'],
    ['bob', 'bob'],
    ['bob', 'bob@example.org'],
    ['carol', 'carol'],
  ] as const;
  const attempts: Array<{ name: string; password: string }> = [];
  for (let i = 0; i < 16; i++) for (const [, name] of names) attempts.push({ name, password: `guess-${i}-Summer2026!` });
  for (let i = 0; i < 4; i++) for (const [, name] of names) attempts.push({ name, password: 'guess-0-Summer2026!' }); // repeats
  let n = 0;
  const statuses = new Map<number, number>();
  const worker = async () => {
    while (n < attempts.length) {
      const a = attempts[n]!;
      const k = n++;
      const from = `127.${10 + Math.floor(k / 250)}.${k % 250}.${1 + (k % 7)}`;
      const r = await new PortalClient(gw.port, 'mail.test', { localAddress: from }).login(a.name, a.password, '/');
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  assert.equal(statuses.get(303) ?? 0, 0, 'no guess signed in');

  for (const uid of ['alice', 'bob', 'carol']) {
    const failures = await slapd.failures(uid);
    assert.ok(failures <= THRESHOLD - 1, `${uid}: ${failures} failed binds reached the directory (at most ${THRESHOLD - 1})`);
    assert.equal(await slapd.locked(uid), false, `${uid} is not locked in the directory`);
  }
  const aliceFailures = await slapd.failures('alice');
  t.diagnostic(`failed binds in the directory: alice ${aliceFailures}, bob ${await slapd.failures('bob')}, carol ${await slapd.failures('carol')}; answers ${JSON.stringify([...statuses])}`);
  assert.ok(aliceFailures > 0, 'the attack did reach the directory (the test measures something)');

  // the owner, at the office, still signs in (and her success clears the directory's count)
  const office = await new PortalClient(gw.port, 'mail.test', { localAddress: OFFICE }).login('alice', 'Wonderland-Rabbit-1865', '/');
  assert.equal(office.status, 303);
  assert.equal(await slapd.failures('alice'), 0);
});
