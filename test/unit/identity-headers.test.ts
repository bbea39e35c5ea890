/**
 * The identity headers of a signed-in request (access/identity.ts): the assertion is signed at
 * most once a minute per session, app and client address, and the headers made for a session
 * record are handed out again while that token may be reused. Whatever is reused, the token's
 * claims must be those of this request: its app (aud), its client address (ip), its user and
 * factors, and it must never be one in its last minute.
 */
import { strict as assert } from 'node:assert';
import { after, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { ManualClock } from '../../src/clock.js';
import { AssertionCache, AssertionSigner } from '../../src/auth/assertion.js';
import { IDENTITIES_REMEMBERED, identityHeaders, rememberedIdentities } from '../../src/access/identity.js';
import type { CompiledApp } from '../../src/config/types.js';
import type { UserRecord } from '../../src/auth/users.js';
import type { Identity, IdentityHeaders } from '../../src/access/types.js';
import type { SessionRecord } from '../../src/store/ports.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const dirs: TmpDir[] = [];
after(async () => {
  for (const d of dirs) await d.cleanup();
});

async function setup() {
  const d = await tmpDir('pc-identity-');
  dirs.push(d);
  const clock = new ManualClock();
  const signer = await AssertionSigner.open({ dataDir: d.dir, clock, issuer: 'https://gw.example.org' });
  const rt = { assertions: new AssertionCache(), clock, signer };
  return { rt, clock };
}

const app = (name: string) => ({ name, assertion: true }) as unknown as CompiledApp;
const user = (name: string, groups: string[]) => ({ name, groups, email: `${name}@example.org`, displayName: null }) as unknown as UserRecord;
function session(u: UserRecord, amr: Array<'pwd' | 'otp'>, idHash: string): Identity {
  const rec = Object.freeze({ user: u.name, amr, pending: 'none', createdAt: 0, lastSeenAt: 0, ip: '192.0.2.1', csrf: 'x' }) as unknown as SessionRecord;
  return { user: u, amr: rec.amr, session: { id: `id-${idHash}`, idHash, rec } };
}
async function claims(h: IdentityHeaders | Promise<IdentityHeaders>) {
  const got = await h;
  return { token: got.assertion!, c: decodeJwt(got.assertion!) };
}

describe('identity headers', () => {
  it('reuse the token only for the same app, client address, user and factors', async () => {
    const { rt } = await setup();
    const alice = user('alice', ['staff']);
    const mail = app('mail');
    const s = session(alice, ['pwd'], 'h1');
    const first = await claims(identityHeaders(rt, mail, s, '192.0.2.10'));
    const again = await claims(identityHeaders(rt, mail, s, '192.0.2.10'));
    assert.equal(again.token, first.token, 'the same request again: the same token');
    const otherIp = await claims(identityHeaders(rt, mail, s, '198.51.100.7'));
    assert.equal(otherIp.c['ip'], '198.51.100.7', 'another client address: its own token');
    const otherApp = await claims(identityHeaders(rt, app('wiki'), s, '192.0.2.10'));
    assert.equal(otherApp.c['aud'], 'wiki', 'another app: its own audience');
    const back = await claims(identityHeaders(rt, mail, s, '192.0.2.10'));
    assert.equal(back.c['ip'], '192.0.2.10');
    assert.equal(back.c['aud'], 'mail');
    const reloaded = user('alice', ['staff', 'admins']); // a reload makes a new user record
    const regrouped = await claims(identityHeaders(rt, mail, { ...s, user: reloaded }, '192.0.2.10'));
    assert.deepEqual(regrouped.c['groups'], ['staff', 'admins'], 'a reloaded user: the new groups');
    const stepped = session(alice, ['pwd', 'otp'], 'h2');
    const mfa = await claims(identityHeaders(rt, mail, stepped, '192.0.2.10'));
    assert.deepEqual(mfa.c['amr'], ['pwd', 'otp']);
    assert.equal(mfa.c['sub'], 'alice');
  });

  it('a new token after a minute, and never one in its last minute', async () => {
    const { rt, clock } = await setup();
    const s = session(user('bob', []), ['pwd'], 'h3');
    const mail = app('mail');
    const first = await claims(identityHeaders(rt, mail, s, '192.0.2.10'));
    clock.advance(59_000);
    assert.equal((await claims(identityHeaders(rt, mail, s, '192.0.2.10'))).token, first.token, 'within the minute: reused');
    clock.advance(1_000);
    const next = await claims(identityHeaders(rt, mail, s, '192.0.2.10'));
    assert.notEqual(next.token, first.token, 'a minute on: signed again');
    assert.ok((next.c['exp'] as number) * 1000 - clock.now() > 60_000, 'with more than a minute to live');
  });

  it('a reload that moves text between e-mail and name is a new token too', async () => {
    const { rt } = await setup();
    const mail = app('mail');
    const before = { name: 'carol', groups: [], email: '', displayName: 'x@d.e|N' } as unknown as UserRecord;
    const after = { name: 'carol', groups: [], email: '|x@d.e', displayName: 'N' } as unknown as UserRecord;
    const s = session(before, ['pwd'], 'h4');
    await claims(identityHeaders(rt, mail, s, '192.0.2.10'));
    const next = await claims(identityHeaders(rt, mail, { ...s, user: after }, '192.0.2.10'));
    assert.equal(next.c['email'], '|x@d.e', 'the new e-mail, not the old token');
  });

  it('remembers a bounded number of sessions', async () => {
    const { rt } = await setup();
    const mail = app('mail');
    const dave = user('dave', ['staff']);
    for (let i = 0; i < IDENTITIES_REMEMBERED + 50; i++) {
      await identityHeaders(rt, mail, session(dave, ['pwd'], `bound-${i}`), '192.0.2.10');
      assert.ok(rememberedIdentities() <= IDENTITIES_REMEMBERED, `${rememberedIdentities()} remembered after ${i + 1} sessions`);
    }
  });
});
