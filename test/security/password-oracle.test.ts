/**
 * A right password that leads nowhere is answered exactly as a wrong one.
 *
 * The attack: in the 2017 replay with the `mfa` set-up (users without an authenticator, enrolment
 * only from the office), the 40 correct guesses got 403 "a new authenticator cannot be enrolled
 * from this network" while the 19,960 wrong ones got 401. The account stayed closed, but the
 * password was confirmed, and usable wherever the allowlist is looser (VPN, another service).
 * Spray tools read the same oracle from Entra's conditional-access errors (AADSTS50076/53003
 * after a correct password: MSOLSpray, o365spray report such accounts as "valid").
 *
 * The safe answer: wherever a correct password cannot lead anywhere from this network (a second
 * factor needed and none can be enrolled here, a weak password under `on_weak: deny`, a disabled
 * account, no rule admitting this user) the status, headers and body are those of a wrong
 * password, the attempt counts like one, the real reason goes to the audit
 * (`password_refused_correct`), and the owner and the admin are told. Where enrolment is allowed,
 * the user still gets the enrolment page.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { attachNotifier, type Notifier } from '../../src/audit/notify.js';
import { startPortalApp, type InjectResponse, type PortalApp } from '../helpers/portal-app.js';
import { hiddenField } from '../helpers/portal.js';
import { editUsersFile, setDisabled } from '../../src/auth/users.js';

const OFFICE = '192.0.2.10';
const VPN = '198.51.100.20';
const PW = { frank: 'granite lantern meadow 58', weak: 'Password1', erin: 'quiet orchard signal 12', sales: 'copper whistle forest 31' };

let pa: PortalApp;
let notifier: Notifier;
const posted: Array<{ event: { event: string; user?: string; reason?: string } }> = [];

before(async () => {
  pa = await startPortalApp(
    `
networks: { office: ["192.0.2.0/24"], vpn: ["198.51.100.0/24"] }
totp: { enrol: { networks: [office] } }
password_policy: { on_weak: deny }
notify: { webhook: "http://127.0.0.1:9/hook", events: [password_refused_correct] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { networks: [office], policy: password }
      - { networks: [vpn], groups: [staff], policy: mfa }
      - { policy: deny }
  - name: vault
    hosts: ["vault.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { networks: [office, vpn], policy: mfa }
      - { policy: deny }
`,
    {
      users: [
        { name: 'frank', password: PW.frank, groups: ['staff'], email: 'frank@example.org' },
        { name: 'weak', password: PW.weak, groups: ['staff'] },
        { name: 'erin', password: PW.erin, groups: ['staff'], disabled: true },
        { name: 'sales', password: PW.sales, groups: ['sales'] },
      ],
    },
  );
  notifier = attachNotifier(pa.rt, {
    fetch: (async (_url: string, init: { body: string }) => {
      posted.push(JSON.parse(init.body));
      return new Response(null, { status: 204 });
    }) as unknown as typeof fetch,
  });
});

after(async () => {
  await notifier?.close();
  await pa?.close();
});

beforeEach(() => {
  pa.clock.advance(60 * 60_000);
  pa.events.length = 0;
});

/** Status, headers (but date and length) and body with the CSRF token and echoed name taken out. */
function shape(r: InjectResponse, user: string) {
  const csrf = hiddenField(r.body, 'csrf') ?? '';
  const headers = Object.entries(r.headers)
    .filter(([k]) => k !== 'date' && k !== 'content-length' && k !== 'set-cookie')
    .map(([k, v]) => `${k}: ${String(v)}`)
    .sort();
  return { status: r.status, headers, body: r.body.replaceAll(csrf, '<csrf>').replace(`value="${user}"`, 'value="<user>"') };
}

const cases: Array<[string, string, string, string, string]> = [
  ['a second factor is needed and none can be enrolled from here (vpn)', VPN, 'frank', PW.frank, 'a second factor is required and none can be enrolled from this network'],
  ['the password is weak and on_weak is deny (office)', OFFICE, 'weak', PW.weak, 'password below policy (on_weak: deny)'],
  ['the account is disabled (office)', OFFICE, 'erin', PW.erin, 'user disabled'],
  ['no rule admits this user from here: not in the group (vpn)', VPN, 'sales', PW.sales, 'no rule admits this user from this network'],
];

describe('a right password that leads nowhere looks like a wrong one', () => {
  for (const [why, ip, user, right, reason] of cases) {
    it(why, async () => {
      const c = pa.client('mail.test', ip);
      const good = await c.login(user, right, '/');
      const bad = await c.login(user, `${right}-not`, '/');
      assert.equal(good.status, 401, good.body);
      assert.deepEqual(shape(good, user), shape(bad, user));
      assert.equal(c.cookie('portcullis_dev_session'), undefined, 'no session');
      const refused = pa.events.find((e) => e.event === 'password_refused_correct' && e.user === user);
      assert.ok(refused, 'the real reason is in the audit');
      assert.equal(refused.reason, reason);
      assert.equal(refused.ip, ip);
    });
  }

  it('a repeat costs the same whether the password was right or wrong: neither is hashed again', async () => {
    const hasher = pa.rt.hasher;
    const real = hasher.verify.bind(hasher);
    let calls = 0;
    hasher.verify = async (h, p) => {
      calls++;
      return real(h, p);
    };
    try {
      const c = pa.client('mail.test', '198.51.100.77');
      for (const pw of [PW.frank, 'frank-wrong-1']) {
        calls = 0;
        for (let i = 0; i < 3; i++) assert.equal((await c.login('frank', pw, '/')).status, 401);
        assert.equal(calls, 1, `${pw === PW.frank ? 'right' : 'wrong'} password: hashed ${calls} times in 3 tries`);
      }
    } finally {
      hasher.verify = real;
    }
  });

  it('the owner and the admin are told (password_refused_correct)', async () => {
    await notifier.whenIdle();
    const told = posted.filter((p) => p.event.event === 'password_refused_correct').map((p) => p.event.user);
    assert.ok(told.includes('frank'), `notified: ${told.join(', ')}`);
  });

  it('it counts as a failure: the same right password does not get unlimited tries', async () => {
    const before = (await pa.rt.throttle.listBlocks()).length;
    const c = pa.client('mail.test', VPN);
    // five distinct wrong guesses and the right one: the bucket locks at the fifth distinct failure
    for (let i = 0; i < 4; i++) await c.login('frank', `guess-${i}`, '/');
    await c.login('frank', PW.frank, '/');
    assert.ok((await pa.rt.throttle.listBlocks()).length > before, 'the unfamiliar bucket is locked');
  });
});

describe('where the password can lead somewhere, it does', () => {
  it('frank from the office, where a password is enough, signs in', async () => {
    const c = pa.client('mail.test', OFFICE);
    const r = await c.login('frank', PW.frank, '/');
    assert.equal(r.status, 303);
    assert.equal(r.location, '/');
  });

  it('frank at the office on an mfa app, where enrolment is allowed, gets the enrolment page', async () => {
    const c = pa.client('vault.test', OFFICE);
    const r = await c.login('frank', PW.frank, '/');
    assert.equal(r.status, 303);
    assert.equal(r.location, '/.portcullis/enrol');
  });

  it('a right password refused while the account was disabled is checked again once it is enabled', async () => {
    const c = pa.client('mail.test', OFFICE);
    assert.equal((await c.login('erin', PW.erin, '/')).status, 401, 'disabled: refused like a wrong password');
    assert.equal((await c.login('erin', PW.erin, '/')).status, 401, 'and the repeat is answered without a hash');
    await editUsersFile(pa.usersFile, (doc) => setDisabled(doc, 'erin', false));
    await pa.rt.reloadUsers();
    const r = await c.login('erin', PW.erin, '/');
    assert.equal(r.status, 303, 'enabled again: the same password from the same address signs in at once');
    await editUsersFile(pa.usersFile, (doc) => setDisabled(doc, 'erin', true));
    await pa.rt.reloadUsers();
  });

  it('the same from the vpn is refused as a wrong password', async () => {
    const c = pa.client('vault.test', VPN);
    assert.equal((await c.login('frank', PW.frank, '/')).status, 401);
  });
});
