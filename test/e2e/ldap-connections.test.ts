/**
 * Directory connections against real slapd servers: failover between two servers through the
 * gateway (one stopped: sign-ins go on; both stopped: 503; one back: sign-ins again), and TLS
 * (LDAPS and StartTLS verified against a throw-away CA; a certificate the gateway cannot verify
 * is an outage, never a silent downgrade).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { LdapDirectory } from '../../src/directory/ldap.js';
import { silentLogger } from '../../src/audit/logger.js';
import { isPortcullisError } from '../../src/errors.js';
import type { LdapConfig } from '../../src/config/types.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { PortalClient } from '../helpers/portal.js';
import { BASE_DN, SERVICE_DN, SERVICE_PW, slapdMissing, startSlapd, type Slapd, ldapYaml } from '../helpers/slapd.js';

const missing = slapdMissing();
let one: Slapd;
let two: Slapd;
let tls: Slapd;
let up: Upstream;
let gw: TestGateway;

before(async () => {
  if (missing) return;
  [one, two, tls] = await Promise.all([startSlapd(), startSlapd(), startSlapd({ tls: true })]);
  up = await startUpstream();
  gw = await startTestGateway(
    `
login_limits: { per_ip: { max_failures: 1000 } }
${ldapYaml([one.url, two.url], 'timeout: 2s')}
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
  await Promise.all([one?.close(), two?.close(), tls?.close()]);
});

const login = (user: string, pw: string) => new PortalClient(gw.port, 'mail.test').login(user, pw, '/');

test('failover: one of two servers stopped, sign-ins go on; both stopped, 503; one back, sign-ins again', { skip: missing ?? false }, async () => {
  assert.equal((await login('alice', 'Wonderland-Rabbit-1865')).status, 303);
  await one.stop();
  assert.equal((await login('bob', 'Can-We-Fix-It-2024')).status, 303, 'the second server answers');
  await two.stop();
  assert.equal((await login('alice', 'Wonderland-Rabbit-1865')).status, 503, 'no server: fail closed');
  await one.start();
  assert.equal((await login('alice', 'Wonderland-Rabbit-1865')).status, 303, 'back as soon as one server answers');
  await two.start();
});

test('a server that accepts connections but never answers: the timeout moves on to the next', { skip: missing ?? false }, async () => {
  assert.equal((await login('alice', 'Wonderland-Rabbit-1865')).status, 303, 'pooled connections to the first server');
  await one.freeze();
  try {
    const t0 = Date.now();
    assert.equal((await login('bob', 'Can-We-Fix-It-2024')).status, 303);
    const ms = Date.now() - t0;
    assert.ok(ms < 2 * 2000 + 1500, `answered in ${ms} ms (timeout: 2s an operation)`);
  } finally {
    one.thaw();
  }
});

function tlsConfig(over: Partial<LdapConfig>): LdapConfig {
  return {
    implementation: 'openldap',
    urls: [tls.ldapsUrl!],
    startTls: false,
    caFile: tls.caFile,
    insecure: false,
    bindDn: SERVICE_DN,
    bindPassword: SERVICE_PW,
    baseDn: BASE_DN,
    userFilter: '(&(objectClass=person)(uid={username}))',
    groupFilter: '(&(objectClass=groupOfNames)(member={dn}))',
    attributes: { username: 'uid', email: 'mail', name: 'displayName', groups: 'memberOf', id: 'entryUUID' },
    lockoutThreshold: 10,
    timeoutMs: 2000,
    cacheMs: 60_000,
    ...over,
  };
}

async function signIn(cfg: LdapConfig): Promise<string> {
  const d = new LdapDirectory(cfg, { clock: { now: () => Date.now() }, logger: silentLogger() });
  try {
    const e = await d.find('alice');
    assert.ok(e);
    return (await d.bind(e.dn, 'Wonderland-Rabbit-1865')).kind;
  } catch (err) {
    return isPortcullisError(err, 'PC_DIRECTORY_UNAVAILABLE') ? 'unavailable' : `error: ${(err as Error).message}`;
  } finally {
    await d.close();
  }
}

test('LDAPS and StartTLS verified with ca_file; an unverifiable certificate is an outage', { skip: missing ?? false }, async () => {
  assert.equal(await signIn(tlsConfig({})), 'ok', 'ldaps:// with the CA');
  assert.equal(await signIn(tlsConfig({ urls: [tls.url], startTls: true })), 'ok', 'ldap:// + StartTLS with the CA');
  assert.equal(await signIn(tlsConfig({ caFile: null })), 'unavailable', 'ldaps:// without the CA: not trusted');
  assert.equal(await signIn(tlsConfig({ urls: [tls.url], startTls: true, caFile: null })), 'unavailable', 'StartTLS without the CA: not trusted, never plain');
});
