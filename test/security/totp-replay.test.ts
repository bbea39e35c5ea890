/**
 * TOTP replay: the same code used twice.
 *
 * The attack: a six-digit code is valid for its whole time step (and the skew either side), so
 * anyone who sees it (over a shoulder, in a phishing proxy, in a screen share, in a log) and has
 * the password can use it again within that minute or so. Worse, two sessions can race: the
 * attacker submits the code the victim is typing at the same moment, and a check-then-record
 * verifier lets both through. RFC 6238 §5.2: "The verifier MUST NOT accept the second attempt of
 * the OTP after the successful validation has been issued for the first OTP". Peers that missed
 * it: 61131/nginx-http-auth-totp#4 ("The same code is accepted multiple times", an nginx auth
 * module), nextcloud/twofactor_totp#245 ("Replay attacks"), WordPress/two-factor#517, and the
 * race pointed out in logto-io/logto#9109 (check and record in two non-atomic steps).
 *
 * The safe answer: a time step is claimed once per user, atomically (check-and-set in one step
 * of the rate store, shared by every instance), before a session is issued; raced from two
 * sessions, exactly one gets in and the other is refused as a replay (audited `totp_replayed`);
 * the same code later within its window, in any session, is refused too. (The enrolment code's
 * step is claimed the same way: test/security/credential-paths.test.ts; the store's claim
 * primitive is tested in test/unit/memory-store.test.ts and, across two instances on one Redis,
 * test/unit/redis-store.test.ts.)
 *
 * Moved here from test/e2e/signin.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ManualClock } from '../../src/clock.js';
import { generateCode } from '../../src/auth/totp.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway, type TestUser } from '../helpers/gateway.js';
import { PortalClient, hiddenField } from '../helpers/portal.js';

const OFFICE = '127.0.0.1';
const HOME = '127.0.0.2';
const PROXY = '127.0.0.3';

const PW = { dave: 'walnut harbour cinder ribbon 5521' } as const;
const USERS: TestUser[] = [{ name: 'dave', password: PW.dave, groups: ['staff'] }];

/** dave's hardware token (20 bytes, base32; replay is tracked per user). */
const DAVE_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

const clock = new ManualClock(Date.UTC(2026, 0, 5, 9, 0, 0));
let up: Upstream;
let gw: TestGateway;

// the configuration of test/e2e/signin.test.ts, where this test came from
function config(upstream: string): string {
  return `
trusted_proxies: ["${PROXY}/32"]
networks:
  office: ["${OFFICE}/32"]
  home: ["${HOME}/32"]
totp: { issuer: "Test Mail", enrol: { networks: [office] } }
apps:
  - name: vault
    hosts: ["vault.test"]
    upstream: "${upstream}"
    rules:
      - { networks: [office, home], policy: mfa }
      - { policy: deny }
`;
}

before(async () => {
  up = await startUpstream();
  gw = await startTestGateway(config(up.url), { users: USERS, clock });
  const rt = gw.gw.rt;
  await rt.stores.state.setTotp('dave', { secret: rt.box.seal(DAVE_SECRET, 'totp:dave'), enrolledAt: clock.now(), source: 'provisioned' });
});

after(async () => {
  await gw?.close();
  await up?.close();
});

/** Move the clock three time steps on, so the next code is one nobody has used yet. */
function freshStep(): void {
  clock.advance(3 * gw.gw.rt.config.totp.period * 1000);
}

function codeFor(secret: string, at = clock.now()): string {
  const t = gw.gw.rt.config.totp;
  return generateCode(secret, { time: at, period: t.period, digits: t.digits, algorithm: t.algorithm });
}

function client(from: string = OFFICE, host = 'vault.test'): PortalClient {
  return new PortalClient(gw.port, host, { localAddress: from });
}

async function auditEvents(): Promise<AuditEvent[]> {
  const text = await readFile(join(gw.dir.dir, 'data', 'audit.jsonl'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditEvent);
}

/** The audit file is appended asynchronously; poll it (briefly) until `pred` matches a line. */
async function waitForAudit(pred: (e: AuditEvent) => boolean): Promise<AuditEvent> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const hit = (await auditEvents()).find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) assert.fail('no matching audit event was written');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a code is accepted once per user: raced from two parallel sessions, the second is refused as a replay', async () => {
  const a = client(OFFICE, 'vault.test');
  const b = client(OFFICE, 'vault.test');
  assert.equal((await a.login('dave', PW.dave, '/inbox')).headers.location, '/.portcullis/mfa');
  assert.equal((await b.login('dave', PW.dave, '/inbox')).headers.location, '/.portcullis/mfa');
  const ta = hiddenField((await a.get('/.portcullis/mfa')).body, 'csrf')!;
  const tb = hiddenField((await b.get('/.portcullis/mfa')).body, 'csrf')!;
  freshStep();
  const code = codeFor(DAVE_SECRET);
  const [ra, rb] = await Promise.all([a.post('/.portcullis/mfa', { csrf: ta, code }), b.post('/.portcullis/mfa', { csrf: tb, code })]);
  assert.deepEqual([ra.status, rb.status].sort(), [303, 401], 'exactly one session gets in');
  const loser = ra.status === 401 ? ra : rb;
  assert.match(loser.body, /That code is not valid/);
  await waitForAudit((e) => e.event === 'totp_replayed' && e.user === 'dave' && e.outcome === 'denied');

  // the same code in a third session, later within its window, is still refused
  const c = client(OFFICE, 'vault.test');
  await c.login('dave', PW.dave, '/inbox');
  clock.advance(1000);
  assert.equal((await c.submit('/.portcullis/mfa', { code })).status, 401);
  assert.equal((await c.get('/inbox')).status, 401);
});
