/**
 * A throw-away OpenLDAP (Debian's /usr/sbin/slapd) on a free loopback port: mdb database loaded
 * from test/fixtures/ldap/users.ldif with slapadd, the ppolicy overlay (lockout after 10 failed
 * binds, each failure recorded as a `pwdFailureTime` value) and memberof. Optionally LDAPS and
 * StartTLS with a throw-away CA made by openssl. Stopped (and its directory removed) by `stop()`;
 * `start()` brings it back on the same port with the same data.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { freezeProcess } from './freeze.js';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Attribute, Change, Client } from 'ldapts';

export const SLAPD_BIN = process.env.SLAPD_BIN ?? '/usr/sbin/slapd';
export const SLAPADD_BIN = process.env.SLAPADD_BIN ?? '/usr/sbin/slapadd';
export const BASE_DN = 'dc=example,dc=org';
export const ROOT_DN = 'cn=admin,dc=example,dc=org';
export const ROOT_PW = 'root-secret';
export const SERVICE_DN = 'cn=portcullis,ou=service,dc=example,dc=org';
export const SERVICE_PW = 'service-secret';

/** Why slapd tests cannot run here, or null. With CI=true a missing slapd is a failure, not a skip. */
export function slapdMissing(): string | null {
  if (existsSync(SLAPD_BIN) && existsSync(SLAPADD_BIN)) return null;
  if (process.env.CI) throw new Error(`slapd is required in CI (${SLAPD_BIN}); run scripts/install-test-deps.sh`);
  return `slapd not installed (${SLAPD_BIN}); run scripts/install-test-deps.sh`;
}

export interface Slapd {
  /** ldap://127.0.0.1:PORT */
  url: string;
  /** ldaps://127.0.0.1:PORT when started with tls */
  ldapsUrl: string | null;
  /** The CA certificate file (tls only). */
  caFile: string | null;
  port: number;
  dir: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stop for good and remove the temp directory. */
  close(): Promise<void>;
  /** The number of `pwdFailureTime` values of uid=NAME (failed binds ppolicy recorded). */
  failures(uid: string): Promise<number>;
  /** Whether ppolicy has locked uid=NAME (pwdAccountLockedTime present). */
  locked(uid: string): Promise<boolean>;
  /** Modify an entry as the root DN. */
  modify(dn: string, op: 'add' | 'replace' | 'delete', type: string, values: string[]): Promise<void>;
  /** Suspend the server (SIGSTOP): connections stay open, nothing answers. */
  freeze(): Promise<void>;
  /** Resume a frozen server (SIGCONT). */
  thaw(): void;
  /** Rename an entry as the root DN (the old RDN value is removed). */
  rename(dn: string, newDn: string): Promise<void>;
  /** Bind as DN with PASSWORD on a fresh connection: true when it succeeds. */
  canBind(dn: string, password: string): Promise<boolean>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => (port ? res(port) : rej(new Error('no free port'))));
    });
  });
}

function fixture(): string {
  // dist/test/helpers -> test/fixtures/ldap
  for (const p of [resolve(import.meta.dirname, '../../../test/fixtures/ldap/users.ldif'), resolve('test/fixtures/ldap/users.ldif')]) {
    if (existsSync(p)) return p;
  }
  throw new Error('test/fixtures/ldap/users.ldif not found');
}

function makeCa(dir: string): { ca: string; cert: string; key: string } {
  const run = (args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=portcullis test CA']);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf']);
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
}

function waitPort(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  return new Promise((res, rej) => {
    const attempt = () => {
      if (child.exitCode !== null) return rej(new Error(`slapd exited with ${child.exitCode}:\n${log()}`));
      const s = createConnection({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        res();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) rej(new Error(`slapd did not listen on ${port}:\n${log()}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/** A `user_filter` that finds an entry by uid or by mail (`alice` and `alice@example.org`). */
export const UID_OR_MAIL_FILTER = 'user_filter: "(&(objectClass=person)(|(uid={username})(mail={username})))"';

/**
 * The `ldap:` block of a gateway config for the fixture's directory: `url` (one or a failover
 * list, plain ldap:// with `insecure: true`), the service account and the base DN, then `extra`
 * keys as written, e.g. `lockout_threshold: 2`.
 */
export function ldapYaml(url: string | readonly string[], ...extra: string[]): string {
  const urls = typeof url === 'string' ? JSON.stringify(url) : `[${url.map((u) => JSON.stringify(u)).join(', ')}]`;
  return ['ldap:', '  implementation: openldap', `  url: ${urls}`, '  insecure: true', `  bind_dn: "${SERVICE_DN}"`, `  bind_password: "${SERVICE_PW}"`, `  base_dn: "${BASE_DN}"`, ...extra.map((l) => `  ${l}`)].join('\n');
}

/** Start a slapd with the fixture. `tls`: also serve LDAPS on a second port and allow StartTLS. */
export async function startSlapd(opts: { tls?: boolean } = {}): Promise<Slapd> {
  const dir = mkdtempSync(join(tmpdir(), 'pc-slapd-'));
  const db = join(dir, 'db');
  mkdirSync(db);
  const port = await freePort();
  const tlsPort = opts.tls ? await freePort() : null;
  const certs = opts.tls ? makeCa(dir) : null;
  const conf = join(dir, 'slapd.conf');
  writeFileSync(
    conf,
    [
      'include /etc/ldap/schema/core.schema',
      'include /etc/ldap/schema/cosine.schema',
      'include /etc/ldap/schema/inetorgperson.schema',
      'include /etc/ldap/schema/nis.schema',
      'modulepath /usr/lib/ldap',
      'moduleload back_mdb',
      'moduleload memberof',
      'moduleload ppolicy',
      `pidfile ${join(dir, 'slapd.pid')}`,
      `argsfile ${join(dir, 'slapd.args')}`,
      // as Active Directory and many servers do: a DN with an empty password is an
      // "unauthenticated bind" that succeeds, so the gateway's guard against it is tested for real
      'allow bind_anon_dn',
      ...(certs ? [`TLSCACertificateFile ${certs.ca}`, `TLSCertificateFile ${certs.cert}`, `TLSCertificateKeyFile ${certs.key}`] : []),
      'database mdb',
      'maxsize 67108864',
      `suffix "${BASE_DN}"`,
      `rootdn "${ROOT_DN}"`,
      `rootpw ${ROOT_PW}`,
      `directory ${db}`,
      'overlay memberof',
      'overlay ppolicy',
      `ppolicy_default "cn=default,ou=policies,${BASE_DN}"`,
      'access to attrs=userPassword',
      '  by self write',
      '  by anonymous auth',
      '  by * none',
      'access to *',
      `  by dn.exact="${SERVICE_DN}" read`,
      '  by self read',
      '  by * none',
      '',
    ].join('\n'),
  );
  const add = spawnSync(SLAPADD_BIN, ['-f', conf, '-l', fixture()], { encoding: 'utf8' });
  if (add.status !== 0) throw new Error(`slapadd failed: ${add.stderr}`);
  const urls = [`ldap://127.0.0.1:${port}/`, ...(tlsPort ? [`ldaps://127.0.0.1:${tlsPort}/`] : [])].join(' ');
  let child: ChildProcess | null = null;
  let out = '';
  const launch = async () => {
    out = '';
    const c = spawn(SLAPD_BIN, ['-f', conf, '-h', urls, '-d', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(c);
    c.once('exit', () => live.delete(c));
    c.stdout?.on('data', (b: Buffer) => void (out.length < 20_000 && (out += b.toString())));
    c.stderr?.on('data', (b: Buffer) => void (out.length < 20_000 && (out += b.toString())));
    child = c;
    await waitPort(port, c, () => out);
    if (tlsPort) await waitPort(tlsPort, c, () => out);
  };
  const terminate = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((res) => {
      const kill = setTimeout(() => c.kill('SIGKILL'), 3000);
      c.once('exit', () => {
        clearTimeout(kill);
        res();
      });
      c.kill('SIGCONT'); // a frozen server must be able to act on SIGTERM
      c.kill('SIGTERM');
    });
  };
  await launch();
  const url = `ldap://127.0.0.1:${port}`;
  const asRoot = async <T>(fn: (c: Client) => Promise<T>): Promise<T> => {
    const c = new Client({ url, timeout: 5000, connectTimeout: 2000 });
    try {
      await c.bind(ROOT_DN, ROOT_PW);
      return await fn(c);
    } finally {
      await c.unbind().catch(() => undefined);
    }
  };
  const userDn = (uid: string) => `uid=${uid},ou=people,${BASE_DN}`;
  const opAttr = async (uid: string, attr: string): Promise<string[]> =>
    asRoot(async (c) => {
      const r = await c.search(userDn(uid), { scope: 'base', attributes: [attr] });
      const v = r.searchEntries[0]?.[attr];
      return v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)];
    });
  return {
    url,
    ldapsUrl: tlsPort ? `ldaps://127.0.0.1:${tlsPort}` : null,
    caFile: certs?.ca ?? null,
    port,
    dir,
    stop: terminate,
    start: async () => {
      if (!child) await launch();
    },
    close: async () => {
      await terminate();
      rmSync(dir, { recursive: true, force: true });
    },
    failures: async (uid) => (await opAttr(uid, 'pwdFailureTime')).length,
    locked: async (uid) => (await opAttr(uid, 'pwdAccountLockedTime')).length > 0,
    modify: (dn, op, type, values) => asRoot((c) => c.modify(dn, new Change({ operation: op, modification: new Attribute({ type, values }) }))),
    freeze: () => freezeProcess(child as ChildProcess | null),
    thaw: () => void (child as ChildProcess | null)?.kill('SIGCONT'),
    rename: (dn, newDn) => asRoot((c) => c.modifyDN(dn, newDn)),
    canBind: async (dn, password) => {
      const c = new Client({ url, timeout: 5000 });
      try {
        await c.bind(dn, password);
        return true;
      } catch {
        return false;
      } finally {
        await c.unbind().catch(() => undefined);
      }
    },
  };
}

/** Read a whole file (for tests that print slapd's config on failure). */
export const readText = (p: string): string => readFileSync(p, 'utf8');
