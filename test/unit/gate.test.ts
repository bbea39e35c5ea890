/**
 * The gate, the one access decision for the proxy, WebSocket upgrades and forward-auth, through a
 * runtime like the gateway's (memory stores, a fixed clock), called as a function: what a client
 * at a given address, holding a given session or app password, gets for a request. No sockets.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gate, hostOnly, stepLocation, type GateRequest, type GateResult } from '../../src/access/gate.js';
import { addAppPassword } from '../../src/admin/operations.js';
import { ERRORS } from '../../src/errors.js';
import type { SessionRecord } from '../../src/store/ports.js';
import { startCoreRuntime, type CoreRuntime } from '../helpers/core-runtime.js';

const OFFICE = '192.0.2.10';
const VPN = '198.51.100.20';
const HOME = '203.0.113.5';

const CONFIG = `
networks: { office: ["192.0.2.0/24"], vpn: ["198.51.100.0/24"] }
lockdown: { networks: [office] }
apps:
  - name: mail
    hosts: ["mail.test", "webmail.test"]
    upstream: "http://127.0.0.1:9"
    basic_auth: { paths: ["/dav/**"] }
    rules:
      - { paths: ["/public/**"], policy: bypass }
      - { paths: ["/admin/**"], groups: [admins], policy: mfa }
      - { paths: ["/admin/**"], policy: deny }
      - { paths: ["/ecp/**"], networks: [office], policy: password }
      - { paths: ["/blocked/**"], policy: deny }
      - { networks: [office], policy: password }
      - { networks: [vpn], policy: mfa }
      - { paths: ["/dav/**"], policy: password }
  - name: wiki
    hosts: ["wiki.test"]
    upstream: "http://127.0.0.1:9"
    rules:
      - { policy: bypass }
`;

const USERS = [
  { name: 'alice', password: 'correct horse battery staple', groups: ['staff'] },
  { name: 'root', password: 'amber quarry lantern 64', groups: ['admins'] },
  { name: 'dora', password: 'silver orchard kettle 19', groups: ['staff'], disabled: true },
];

let core: CoreRuntime;
before(async () => {
  core = await startCoreRuntime(CONFIG, { users: USERS });
});
after(async () => core?.close());
beforeEach(async () => {
  core.clock.advance(60 * 60_000);
  core.events.length = 0;
  core.rt.lockdown = { on: false, since: 0, by: '' };
  await core.rt.stores.sessions.deleteAll();
});

async function ask(target: string, ip: string, o: Partial<GateRequest> = {}): Promise<GateResult> {
  return gate(core.rt, core.rt.config, {
    method: 'GET',
    target,
    host: 'mail.test',
    ip,
    proto: 'https',
    sessionId: undefined,
    authorization: undefined,
    ...o,
  });
}

async function session(user: string, o: { amr?: SessionRecord['amr']; pending?: SessionRecord['pending']; ip?: string } = {}): Promise<string> {
  const s = await core.rt.sessions.create({ user, amr: o.amr ?? ['pwd'], pending: o.pending ?? 'none', ip: o.ip ?? OFFICE });
  return s.id;
}

function errorOf(r: GateResult): { code: string; status: number } {
  assert.equal(r.kind, 'error', `expected an error, got ${JSON.stringify({ ...r, app: undefined })}`);
  const code = (r as Extract<GateResult, { kind: 'error' }>).code;
  return { code, status: ERRORS[code].status };
}

const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

describe('before any rule: host, method, path', () => {
  it('an unknown host is 421, whatever the path', async () => {
    assert.deepEqual(errorOf(await ask('/public/x', HOME, { host: 'evil.test' })), { code: 'PC_HOST_UNKNOWN', status: 421 });
    assert.deepEqual(errorOf(await ask('/', HOME, { host: undefined })), { code: 'PC_HOST_UNKNOWN', status: 421 });
    assert.equal(errorOf(await ask('/', HOME, { host: 'mail.test:99999x' })).code, 'PC_HOST_UNKNOWN');
    assert.equal(errorOf(await ask('/', HOME, { host: 'mail.test.evil.test' })).code, 'PC_HOST_UNKNOWN');
  });

  it('the host is matched without port, case or a trailing dot', async () => {
    assert.equal((await ask('/public/x', HOME, { host: 'MAIL.test:443' })).kind, 'proxy');
    assert.equal((await ask('/public/x', HOME, { host: 'webmail.test.' })).kind, 'proxy');
    assert.equal(hostOnly('[2001:db8::1]:8443'), '2001:db8::1');
    assert.equal(hostOnly('[2001:db8::1]x'), null);
  });

  it('the host picks the app and so its rules', async () => {
    const r = await ask('/anything', HOME, { host: 'wiki.test' });
    assert.equal(r.kind, 'proxy');
    assert.equal((r as Extract<GateResult, { kind: 'proxy' }>).app.name, 'wiki');
  });

  it('CONNECT and TRACE are refused outright', async () => {
    for (const method of ['CONNECT', 'TRACE']) {
      assert.deepEqual(errorOf(await ask('/public/x', OFFICE, { method })), { code: 'PC_METHOD_REFUSED', status: 405 });
    }
  });

  it('a path that cannot be normalised safely is 400, not a guess at what it meant', async () => {
    for (const target of ['/public/../admin/x', '/public/%2e%2e/admin/x', '/public%2fadmin', '//admin/x', '/public/..;/admin', 'http://mail.test/admin']) {
      assert.deepEqual(errorOf(await ask(target, HOME)), { code: 'PC_PATH_UNSAFE', status: 400 }, target);
    }
  });

  it('the portal path is reserved: 404 through the gate, in any spelling', async () => {
    for (const target of ['/.portcullis', '/.portcullis/login', '/%2eportcullis/login', '/.portcullis/mfa?rd=/']) {
      assert.deepEqual(errorOf(await ask(target, OFFICE)), { code: 'PC_NOT_FOUND', status: 404 }, target);
    }
  });
});

describe('lockdown', () => {
  it('refuses every request from outside lockdown.networks, public paths and sessions included', async () => {
    const sid = await session('alice', { ip: VPN, amr: ['pwd', 'otp'] });
    core.rt.lockdown = { on: true, since: core.clock.now(), by: 'test' };
    assert.deepEqual(errorOf(await ask('/public/x', HOME)), { code: 'PC_LOCKDOWN', status: 403 });
    assert.equal(errorOf(await ask('/inbox', VPN, { sessionId: sid })).code, 'PC_LOCKDOWN');
    const audit = core.audited('network_denied');
    assert.equal(audit.length, 2);
    assert.equal(audit[0]!.reason, 'lockdown');
  });

  it('lets lockdown.networks through to the rules as usual', async () => {
    core.rt.lockdown = { on: true, since: core.clock.now(), by: 'test' };
    assert.equal((await ask('/public/x', OFFICE)).kind, 'proxy');
    assert.equal((await ask('/inbox', OFFICE)).kind, 'signin');
  });
});

describe('bypass, deny and network_denied', () => {
  it('bypass proxies with no identity, without reading any session', async () => {
    const r = await ask('/public/x?y=1', HOME, { sessionId: 'not-even-a-session' });
    assert.equal(r.kind, 'proxy');
    const p = r as Extract<GateResult, { kind: 'proxy' }>;
    assert.equal(p.identity, null);
    assert.equal(p.rawTarget, '/public/x?y=1');
    assert.equal(p.decision.policy, 'bypass');
  });

  it('a deny rule is access_denied (403), audited as such', async () => {
    assert.deepEqual(errorOf(await ask('/blocked/x', OFFICE)), { code: 'PC_ACCESS_DENIED', status: 403 });
    assert.equal(core.audited('access_denied').length, 1);
    assert.equal(core.audited('network_denied').length, 0);
  });

  it('a path open only from another network is network_denied (403), before any sign-in', async () => {
    const r = await ask('/ecp/x', HOME);
    assert.deepEqual(errorOf(r), { code: 'PC_NETWORK_DENIED', status: 403 });
    assert.equal(core.audited('network_denied').length, 1);
  });

  it('the same path from the network it is open to asks for a sign-in', async () => {
    assert.equal((await ask('/ecp/x', OFFICE)).kind, 'signin');
  });

  it('a session does not help against a deny', async () => {
    const sid = await session('alice', { amr: ['pwd', 'otp'] });
    assert.equal(errorOf(await ask('/blocked/x', OFFICE, { sessionId: sid })).code, 'PC_ACCESS_DENIED');
    assert.equal(errorOf(await ask('/ecp/x', HOME, { sessionId: sid })).code, 'PC_NETWORK_DENIED');
  });
});

describe('sign-in, step, proxy', () => {
  it('no session: sign in, with the target to come back to', async () => {
    const r = await ask('/inbox?folder=1', OFFICE);
    assert.equal(r.kind, 'signin');
    const s = r as Extract<GateResult, { kind: 'signin' }>;
    assert.equal(s.rd, '/inbox?folder=1');
    assert.equal(s.basic, false);
  });

  it('an unknown or malformed session cookie is the same as none', async () => {
    assert.equal((await ask('/inbox', OFFICE, { sessionId: 'A'.repeat(43) })).kind, 'signin');
    assert.equal((await ask('/inbox', OFFICE, { sessionId: 'garbage' })).kind, 'signin');
  });

  it('a complete session is proxied with its user and factors', async () => {
    const sid = await session('alice');
    const r = await ask('/inbox', OFFICE, { sessionId: sid });
    assert.equal(r.kind, 'proxy');
    const p = r as Extract<GateResult, { kind: 'proxy' }>;
    assert.equal(p.identity?.user.name, 'alice');
    assert.deepEqual(p.identity?.amr, ['pwd']);
    assert.ok(p.identity?.session);
  });

  it('a session with a step pending goes to that step, not to the app', async () => {
    for (const pending of ['mfa', 'enrol', 'password'] as const) {
      const sid = await session('alice', { pending });
      const r = await ask('/inbox', OFFICE, { sessionId: sid });
      assert.deepEqual({ kind: r.kind, location: (r as Extract<GateResult, { kind: 'step' }>).location }, { kind: 'step', location: stepLocation(pending) });
    }
    assert.equal(stepLocation('mfa'), '/.portcullis/mfa');
    assert.equal(stepLocation('enrol'), '/.portcullis/enrol');
    assert.equal(stepLocation('password'), '/.portcullis/password');
  });

  it('the session of a user since disabled or removed is ended, and the request must sign in', async () => {
    const sid = await session('dora');
    assert.equal((await ask('/inbox', OFFICE, { sessionId: sid })).kind, 'signin');
    assert.equal((await core.rt.stores.sessions.list('dora')).length, 0);

    const ghost = await session('ghost');
    assert.equal((await ask('/inbox', OFFICE, { sessionId: ghost })).kind, 'signin');
    assert.equal((await core.rt.stores.sessions.list('ghost')).length, 0);
  });

  it('an mfa rule steps a one-factor session up, back to the same target', async () => {
    const sid = await session('alice', { ip: VPN });
    const r = await ask('/inbox?x=a&b=c', VPN, { sessionId: sid });
    assert.equal(r.kind, 'step');
    assert.equal((r as Extract<GateResult, { kind: 'step' }>).location, `/.portcullis/mfa?rd=${encodeURIComponent('/inbox?x=a&b=c')}`);
  });

  it('a two-factor session passes the mfa rule', async () => {
    const sid = await session('alice', { ip: VPN, amr: ['pwd', 'otp'] });
    assert.equal((await ask('/inbox', VPN, { sessionId: sid })).kind, 'proxy');
  });

  it('a session from the office carried to a network with no rule is refused as a network matter', async () => {
    const sid = await session('alice', { amr: ['pwd', 'otp'] });
    assert.equal(errorOf(await ask('/inbox', HOME, { sessionId: sid })).code, 'PC_NETWORK_DENIED');
  });
});

describe('groups rules after sign-in', () => {
  it('anonymous: a groups rule asks for a sign-in first, even from a network the rule does not restrict', async () => {
    assert.equal((await ask('/admin/x', HOME)).kind, 'signin');
  });

  it('a user outside the group falls to the next rule (here a deny), audited with their name', async () => {
    const sid = await session('alice', { amr: ['pwd', 'otp'] });
    assert.equal(errorOf(await ask('/admin/x', OFFICE, { sessionId: sid })).code, 'PC_ACCESS_DENIED');
    assert.equal(core.audited('access_denied')[0]?.user, 'alice');
  });

  it('a user in the group with one factor is stepped up; with two, proxied', async () => {
    const one = await session('root');
    const r = await ask('/admin/x', OFFICE, { sessionId: one });
    assert.equal(r.kind, 'step');
    assert.equal((r as Extract<GateResult, { kind: 'step' }>).location, `/.portcullis/mfa?rd=${encodeURIComponent('/admin/x')}`);
    const two = await session('root', { amr: ['pwd', 'otp'] });
    const p = await ask('/admin/x', HOME, { sessionId: two });
    assert.equal(p.kind, 'proxy');
    assert.equal((p as Extract<GateResult, { kind: 'proxy' }>).decision.policy, 'mfa');
  });
});

describe('HTTP Basic (app passwords) on basic_auth paths', () => {
  let appPassword = '';
  before(async () => {
    appPassword = (await addAppPassword(core.rt, 'alice', 'phone', { ip: '127.0.0.1' })).password;
  });

  it('without credentials: a sign-in that asks for Basic', async () => {
    const r = await ask('/dav/cal', HOME);
    assert.equal(r.kind, 'signin');
    assert.equal((r as Extract<GateResult, { kind: 'signin' }>).basic, true);
  });

  it('the right app password is proxied as the user, one factor, no session', async () => {
    const r = await ask('/dav/cal', HOME, { authorization: basic('alice', appPassword) });
    assert.equal(r.kind, 'proxy');
    const p = r as Extract<GateResult, { kind: 'proxy' }>;
    assert.equal(p.identity?.user.name, 'alice');
    assert.deepEqual(p.identity?.amr, ['pwd']);
    assert.equal(p.identity?.session, null);
  });

  it('a wrong app password, the account password or an unknown user is challenged again, and audited', async () => {
    for (const auth of [basic('alice', 'wrong'), basic('alice', USERS[0]!.password), basic('nobody', appPassword), 'Basic !!!']) {
      const r = await ask('/dav/cal', HOME, { authorization: auth });
      assert.equal(r.kind, 'signin', auth);
      assert.equal((r as Extract<GateResult, { kind: 'signin' }>).basic, true);
    }
    assert.equal(core.audited('login_failed').length, 3);
  });

  it('Basic credentials on a path outside basic_auth are not looked at', async () => {
    const r = await ask('/inbox', OFFICE, { authorization: basic('alice', appPassword) });
    assert.equal(r.kind, 'signin');
    assert.equal((r as Extract<GateResult, { kind: 'signin' }>).basic, false);
    assert.equal(core.events.length, 0);
  });

  it('an app password cannot satisfy an mfa rule', async () => {
    const r = await ask('/dav/cal', VPN, { authorization: basic('alice', appPassword) });
    assert.deepEqual(errorOf(r), { code: 'PC_ACCESS_DENIED', status: 403 });
    assert.match(core.audited('access_denied')[0]?.reason ?? '', /app passwords cannot satisfy mfa/);
  });

  it('a disabled user’s app password is refused like a wrong one', async () => {
    const dp = (await addAppPassword(core.rt, 'dora', 'phone', { ip: '127.0.0.1' })).password;
    const r = await ask('/dav/cal', HOME, { authorization: basic('dora', dp) });
    assert.equal(r.kind, 'signin');
    assert.equal(core.audited('password_refused_correct').length, 1);
  });
});

describe('the signed-in hot path makes no promise', () => {
  // the gate answered through five async functions before issue 17; in the running server that
  // cost a quarter of a forward-auth subrequest's CPU. These guard the synchronous path.
  const plain = (target: string, o: Partial<GateRequest>) =>
    gate(core.rt, core.rt.config, { method: 'GET', target, host: 'mail.test', ip: OFFICE, proto: 'https', sessionId: undefined, authorization: undefined, ...o });

  it('a live session of a users-file user is answered at once, the same as through a promise', async () => {
    const id = await session('alice');
    const first = plain('/inbox', { sessionId: id });
    const r = plain('/inbox', { sessionId: id });
    assert.ok(!(r instanceof Promise), 'answered without a promise');
    assert.equal(r.kind, 'proxy');
    assert.equal(r.kind === 'proxy' && r.identity?.user.name, 'alice');
    assert.deepEqual({ ...(await first), decision: undefined }, { ...r, decision: undefined });
    const none = plain('/inbox', {});
    assert.ok(!(none instanceof Promise));
    assert.equal(none.kind, 'signin');
  });

  it('what has to wait still waits: a touch due, a session of a disabled user', async () => {
    const id = await session('alice');
    core.clock.advance(2 * 60_000); // the lookup now writes lastSeenAt back
    const touched = plain('/inbox', { sessionId: id });
    assert.ok(touched instanceof Promise, 'a touch is a store write');
    assert.equal((await touched).kind, 'proxy');
    const dora = await session('dora');
    const gone = plain('/inbox', { sessionId: dora });
    assert.ok(gone instanceof Promise, 'the session of a disabled user is deleted');
    assert.equal((await gone).kind, 'signin');
  });
});
