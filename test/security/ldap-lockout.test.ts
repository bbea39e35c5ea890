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
import { test, before, after, type TestContext } from 'node:test';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { PortalClient } from '../helpers/portal.js';
import { ownerReserve } from '../../src/auth/credential.js';
import { slapdMissing, startSlapd, type Slapd, ldapYaml, UID_OR_MAIL_FILTER } from '../helpers/slapd.js';

const missing = slapdMissing();
const OFFICE = '127.0.0.1';
const THRESHOLD = 10;

const REDIS = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const KEY = randomBytes(32).toString('base64');

let slapd: Slapd;
let up: Upstream;
const open: TestGateway[] = [];

function config(store: string): string {
  return `
${store}
networks:
  office: ["${OFFICE}/32"]
login_limits: { hash_concurrency: 8 }
${ldapYaml(slapd.url, UID_OR_MAIL_FILTER, `lockout_threshold: ${THRESHOLD}`)}
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    rules:
      - { policy: password }
`;
}

before(async () => {
  if (missing) return;
  up = await startUpstream();
});

after(async () => {
  for (const g of open) await g.close();
  await up?.close();
});

/**
 * alice signs in at the office, then the attack runs against `gateways` (requests spread over
 * them), then the directory is inspected and alice signs in at the office again.
 */
async function sprayAndCount(t: TestContext, gateways: TestGateway[]): Promise<void> {
  const at = (k: number, from: string) => new PortalClient(gateways[k % gateways.length]!.port, 'mail.test', { localAddress: from });
  // alice has signed in from the office before: a familiar network for her
  assert.equal((await at(0, OFFICE).login('alice', 'Wonderland-Rabbit-1865', '/')).status, 303);

  // the attack: every request from a fresh source address (so per-source limits never bite),
  // 16 distinct wrong passwords plus repeats per name, two names per account, 8 in flight
  const names = ['alice', 'alice@example.org', 'ALICE@example.org', 'bob', 'bob@example.org', 'carol'];
  const attempts: Array<{ name: string; password: string }> = [];
  for (let i = 0; i < 16; i++) for (const name of names) attempts.push({ name, password: `guess-${i}-${names.indexOf(name)}-Summer2026!` });
  for (let i = 0; i < 4; i++) for (const name of names) attempts.push({ name, password: `guess-0-${names.indexOf(name)}-Summer2026!` }); // repeats
  let n = 0;
  const statuses = new Map<number, number>();
  const worker = async () => {
    while (n < attempts.length) {
      const a = attempts[n]!;
      const k = n++;
      const from = `127.${10 + Math.floor(k / 250)}.${k % 250}.${1 + (k % 7)}`;
      const r = await at(k, from).login(a.name, a.password, '/');
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  assert.equal(statuses.get(303) ?? 0, 0, 'no guess signed in');

  for (const uid of ['alice', 'bob', 'carol']) {
    const failures = await slapd.failures(uid);
    assert.ok(failures <= THRESHOLD - 1, `${uid}: ${failures} failed binds reached the directory (at most ${THRESHOLD - 1})`);
    // every guess came from a network unfamiliar to the account: the owner's reserve is untouched
    const cap = THRESHOLD - 1 - ownerReserve(THRESHOLD);
    assert.ok(failures <= cap, `${uid}: ${failures} failed binds from unfamiliar networks (at most ${cap}, the rest kept for the owner)`);
    assert.equal(await slapd.locked(uid), false, `${uid} is not locked in the directory`);
  }
  const aliceFailures = await slapd.failures('alice');
  t.diagnostic(`failed binds in the directory: alice ${aliceFailures}, bob ${await slapd.failures('bob')}, carol ${await slapd.failures('carol')}; answers ${JSON.stringify([...statuses])}`);
  assert.ok(aliceFailures > 0, 'the attack did reach the directory (the test measures something)');
  // what stopped the guesses (audit reasons, counted)
  const reasons = new Map<string, number>();
  for (const g of gateways) {
    const text = await readFile(join(g.dir.dir, 'data', 'audit.jsonl'), 'utf8').catch(() => '');
    for (const line of text.split('\n').filter(Boolean)) {
      const e = JSON.parse(line) as { event: string; reason?: string };
      if (e.event !== 'login_failed') continue;
      const r = (e.reason ?? '').replace(/\d+/g, 'N');
      reasons.set(r, (reasons.get(r) ?? 0) + 1);
    }
  }
  t.diagnostic(`why refused: ${JSON.stringify([...reasons])}`);

  // the owner, at the office, still signs in (and her success clears the directory's count)
  const office = await at(1, OFFICE).login('alice', 'Wonderland-Rabbit-1865', '/');
  assert.equal(office.status, 303);
  assert.equal(await slapd.failures('alice'), 0);
}

test('spraying through the gateway never brings a directory account to its lockout', { skip: missing ?? false }, async (t) => {
  slapd = await startSlapd();
  try {
    const gw = await startTestGateway(config(''), { users: [] });
    open.push(gw);
    await sprayAndCount(t, [gw]);
  } finally {
    await slapd.close();
  }
});

test('two instances sharing Redis: the bind budget holds across them (reserved atomically in the store)', { skip: missing ?? false }, async (t) => {
  slapd = await startSlapd();
  try {
    const url = `${REDIS}${REDIS.includes('?') ? '&' : '?'}prefix=ldaplock${randomBytes(4).toString('hex')}:`;
    const env = { ...process.env, PORTCULLIS_SECRET_KEY: KEY };
    const a = await startTestGateway(config(`store: "${url}"`), { users: [], env });
    open.push(a);
    const b = await startTestGateway(config(`store: "${url}"`), { users: [], env });
    open.push(b);
    await sprayAndCount(t, [a, b]);
  } finally {
    await slapd.close();
  }
});
