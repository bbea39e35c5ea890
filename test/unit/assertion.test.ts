import { strict as assert } from 'node:assert';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, errors, jwtVerify } from 'jose';
import { ManualClock } from '../../src/clock.js';
import { AssertionCache, AssertionSigner, MAX_TTL_SEC, type AssertionClaims } from '../../src/auth/assertion.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const ISSUER = 'https://gw.example.org';
const CLAIMS: AssertionClaims = {
  aud: 'webmail',
  sub: 'alice',
  email: 'alice@example.org',
  name: 'Alice Example',
  groups: ['staff', 'remote-staff'],
  amr: ['pwd', 'otp'],
  ip: '192.0.2.10',
};

const dirs: TmpDir[] = [];
after(async () => {
  for (const d of dirs) await d.cleanup();
});
async function tmp(): Promise<string> {
  const d = await tmpDir('portcullis-assert-');
  dirs.push(d);
  return d.dir;
}

/** What an app does: verify against the published JWKS at the given time. */
function verifyAt(token: string, jwks: ReturnType<AssertionSigner['jwks']>, atMs: number, aud = 'webmail') {
  return jwtVerify(token, createLocalJWKSet(jwks), { issuer: ISSUER, audience: aud, algorithms: ['ES256'], currentDate: new Date(atMs) });
}

describe('AssertionSigner', () => {
  it('signs an ES256 JWT an app can verify with the JWKS, carrying the identity', async () => {
    const clock = new ManualClock();
    const signer = await AssertionSigner.open({ dataDir: await tmp(), clock, issuer: ISSUER });
    const { token, exp } = await signer.sign(CLAIMS);
    const { payload, protectedHeader } = await verifyAt(token, signer.jwks(), clock.now());
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(protectedHeader.typ, 'JWT');
    assert.equal(payload.iss, ISSUER);
    assert.equal(payload.aud, 'webmail');
    assert.equal(payload.sub, 'alice');
    assert.equal(payload['email'], 'alice@example.org');
    assert.equal(payload['name'], 'Alice Example');
    assert.deepEqual(payload['groups'], ['staff', 'remote-staff']);
    assert.deepEqual(payload['amr'], ['pwd', 'otp']);
    assert.equal(payload['ip'], '192.0.2.10');
    assert.equal(payload.iat, Math.floor(clock.now() / 1000));
    assert.equal(payload.exp, exp);
    assert.match(String(payload.jti), /^[A-Za-z0-9_-]{22}$/);
    assert.notEqual((await signer.sign(CLAIMS)).token, token, 'a fresh jti each time');
  });

  it('names the key by its RFC 7638 thumbprint and publishes no private part', async () => {
    const signer = await AssertionSigner.open({ dataDir: await tmp(), clock: new ManualClock(), issuer: ISSUER });
    const { token } = await signer.sign(CLAIMS);
    const { keys } = signer.jwks();
    assert.equal(keys.length, 1);
    const k = keys[0]!;
    assert.equal(k.kty, 'EC');
    assert.equal(k.crv, 'P-256');
    assert.equal(k.alg, 'ES256');
    assert.equal(k.use, 'sig');
    assert.equal(k.d, undefined);
    assert.equal(k.kid, await calculateJwkThumbprint({ kty: 'EC', crv: 'P-256', x: k.x!, y: k.y! }));
    assert.equal(decodeProtectedHeader(token).kid, k.kid);
  });

  it('never issues a token living more than 5 minutes', async () => {
    const clock = new ManualClock();
    const signer = await AssertionSigner.open({ dataDir: await tmp(), clock, issuer: ISSUER });
    const iat = Math.floor(clock.now() / 1000);
    assert.equal((await signer.sign(CLAIMS)).exp, iat + MAX_TTL_SEC);
    assert.equal((await signer.sign(CLAIMS, 3600)).exp, iat + 300);
    assert.equal((await signer.sign(CLAIMS, 60)).exp, iat + 60);
    const { token, exp } = await signer.sign(CLAIMS);
    await verifyAt(token, signer.jwks(), (exp - 1) * 1000);
    await assert.rejects(verifyAt(token, signer.jwks(), exp * 1000), errors.JWTExpired);
  });

  it('rejects a tampered token, a token for another app, and one from another gateway', async () => {
    const clock = new ManualClock();
    const signer = await AssertionSigner.open({ dataDir: await tmp(), clock, issuer: ISSUER });
    const { token } = await signer.sign(CLAIMS);
    const [h, p, s] = token.split('.') as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
    payload.groups = ['admins'];
    const forged = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`;
    await assert.rejects(verifyAt(forged, signer.jwks(), clock.now()), errors.JWSSignatureVerificationFailed);
    await assert.rejects(verifyAt(token, signer.jwks(), clock.now(), 'other-app'), errors.JWTClaimValidationFailed);
    const other = await AssertionSigner.open({ dataDir: await tmp(), clock, issuer: ISSUER });
    await assert.rejects(verifyAt((await other.sign(CLAIMS)).token, signer.jwks(), clock.now()), errors.JWKSNoMatchingKey);
  });

  it('keeps its key across restarts in a 0600 file', async () => {
    const dir = await tmp();
    const clock = new ManualClock();
    const a = await AssertionSigner.open({ dataDir: dir, clock, issuer: ISSUER });
    const { token } = await a.sign(CLAIMS);
    const b = await AssertionSigner.open({ dataDir: dir, clock, issuer: ISSUER });
    await verifyAt(token, b.jwks(), clock.now());
    assert.equal(b.currentKid(), a.currentKid());
    const st = await stat(join(dir, 'assertion-keys.json'));
    assert.equal(st.mode & 0o777, 0o600);
    const stored = JSON.parse(await readFile(join(dir, 'assertion-keys.json'), 'utf8'));
    assert.equal(typeof stored.keys[0].jwk.d, 'string');
  });

  it('after rotation, still verifies tokens of the old key until they expire, then drops it', async () => {
    const clock = new ManualClock();
    const dir = await tmp();
    const signer = await AssertionSigner.open({ dataDir: dir, clock, issuer: ISSUER });
    const old = await signer.sign(CLAIMS);
    const oldKid = signer.currentKid();
    clock.advance(10_000);
    await signer.rotate();
    assert.notEqual(signer.currentKid(), oldKid);
    const fresh = await signer.sign(CLAIMS);
    assert.equal(decodeProtectedHeader(fresh.token).kid, signer.currentKid());
    assert.equal(signer.jwks().keys.length, 2);
    await verifyAt(old.token, signer.jwks(), clock.now());
    await verifyAt(fresh.token, signer.jwks(), clock.now());

    // Just before every token of the old key has expired, it is still published...
    clock.advance(MAX_TTL_SEC * 1000 - 1);
    assert.deepEqual(signer.jwks().keys.map((k) => k.kid).sort(), [oldKid, signer.currentKid()].sort());
    // ...and then it is gone: an old token no longer verifies even at a time it was valid.
    clock.advance(1);
    assert.deepEqual(signer.jwks().keys.map((k) => k.kid), [signer.currentKid()]);
    await assert.rejects(verifyAt(old.token, signer.jwks(), (old.exp - 100) * 1000), errors.JWKSNoMatchingKey);
    // A restart does not bring it back.
    const reopened = await AssertionSigner.open({ dataDir: dir, clock, issuer: ISSUER });
    assert.deepEqual(reopened.jwks().keys.map((k) => k.kid), [signer.currentKid()]);
  });

  it('rotates on its own when rotateAfterMs is set', async () => {
    const clock = new ManualClock();
    const signer = await AssertionSigner.open({ dataDir: await tmp(), clock, issuer: ISSUER, rotateAfterMs: 86_400_000 });
    const first = signer.currentKid();
    clock.advance(86_400_000 - 1);
    await signer.sign(CLAIMS);
    assert.equal(signer.currentKid(), first);
    clock.advance(1);
    const { token } = await signer.sign(CLAIMS);
    assert.notEqual(decodeProtectedHeader(token).kid, first);
    assert.equal(signer.jwks().keys.length, 2);
  });

  it('refuses a rotation period shorter than a token lifetime', async () => {
    await assert.rejects(AssertionSigner.open({ dataDir: await tmp(), clock: new ManualClock(), issuer: ISSUER, rotateAfterMs: 1000 }), { code: 'PC_CONFIG_INVALID', message: /rotation must be at least/ });
  });

  it('workers sharing the key file follow each other', async () => {
    const dir = await tmp();
    const clock = new ManualClock();
    const a = await AssertionSigner.open({ dataDir: dir, clock, issuer: ISSUER });
    const b = await AssertionSigner.open({ dataDir: dir, clock, issuer: ISSUER });
    assert.equal(a.currentKid(), b.currentKid());
    await a.rotate();
    const fromA = await a.sign(CLAIMS);
    // Worker b publishes a's new key once it refreshes (sign() does so every 30 s on its own).
    await b.refresh();
    await verifyAt(fromA.token, b.jwks(), clock.now());
    assert.equal(b.currentKid(), a.currentKid());
    // Both rotating at once converge on one signing key, and neither key is lost.
    clock.advance(1000);
    await Promise.all([a.rotate(), b.rotate()]);
    await a.refresh();
    await b.refresh();
    assert.equal(a.currentKid(), b.currentKid());
    const kids = new Set(a.jwks().keys.map((k) => k.kid));
    assert.equal(kids.size, 4);
  });
});

describe('AssertionCache', () => {
  it('reuses a token signed less than a minute ago that has more than a minute left', () => {
    const cache = new AssertionCache();
    const t0 = 1_000_000_000_000;
    cache.set('s1:webmail:192.0.2.10', 'tok', t0 / 1000 + 300, t0);
    assert.equal(cache.get('s1:webmail:192.0.2.10', t0), 'tok');
    assert.equal(cache.get('s1:webmail:192.0.2.10', t0 + 59_999), 'tok');
    assert.equal(cache.get('s1:webmail:192.0.2.10', t0 + 60_000), null, 'signed a minute ago: sign afresh');
    assert.equal(cache.get('s1:other:192.0.2.10', t0), null);
  });

  it('does not hand out a token with a minute or less to live', () => {
    const cache = new AssertionCache();
    const t0 = 1_000_000_000_000;
    cache.set('k', 'short', t0 / 1000 + 90, t0);
    assert.equal(cache.get('k', t0 + 29_000), 'short');
    assert.equal(cache.get('k', t0 + 30_000), null);
    cache.set('k2', 'tiny', t0 / 1000 + 60, t0);
    assert.equal(cache.get('k2', t0), null);
  });

  it('is bounded, and forgets a session on request', () => {
    const cache = new AssertionCache(2);
    const t0 = 1_000_000_000_000;
    cache.set('a:x', '1', t0 / 1000 + 300, t0);
    cache.set('b:x', '2', t0 / 1000 + 300, t0);
    cache.set('c:x', '3', t0 / 1000 + 300, t0);
    assert.equal(cache.get('a:x', t0), null);
    assert.equal(cache.get('c:x', t0), '3');
    cache.deletePrefix('c:');
    assert.equal(cache.get('c:x', t0), null);
    assert.equal(cache.get('b:x', t0), '2');
  });
});
