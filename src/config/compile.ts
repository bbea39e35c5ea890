/**
 * The configuration compiler: walks the parsed YAML tree (every node keeps its offset, so every
 * issue gets a line and column), collects every problem, and builds the deep-frozen
 * `CompiledConfig`. Nothing here fills in defaults by mutating the input, and nothing is
 * silently corrected except what is harmless and stated (host names are lower-cased).
 *
 * Layout: reader.ts (typed access to YAML nodes, secrets, URL checks), frozen.ts (read-only
 * collections, deepFreeze), values.ts (pure helpers), and one file per section under sections/.
 * This file holds the top-level keys and `compileRoot`, which calls each section in turn.
 * The key reference, defaults included, is schema.ts (docs/configuration.md is generated from it).
 */
import { resolve } from 'node:path';
import { isScalar, type Document, type LineCounter } from 'yaml';
import { CidrSet } from '../net/cidr.js';
import { deepFreeze, FrozenMap } from './frozen.js';
import { defaultBool, defaultInt, defaultText, schemaAt } from './schema.js';
import { parseListen } from './values.js';
import { opt, Reader } from './reader.js';
import { compileAdmin, compileStore, compileTls, sharesPort } from './sections/listen.js';
import { compileNetworks, compileTrustedProxies } from './sections/networks.js';
import { compileSession } from './sections/session.js';
import { compileTotp } from './sections/totp.js';
import { compilePasswordPolicy } from './sections/password-policy.js';
import { compileLoginLimits } from './sections/login-limits.js';
import { compileAttack, compileLockdown } from './sections/lockdown.js';
import { compileNotify } from './sections/notify.js';
import { compileAccessLog, compileAudit, compileShutdown, compileUpstreamTimeouts } from './sections/operations.js';
import { compileApps } from './sections/apps.js';
import { compileWebauthn } from './sections/webauthn.js';
import { compileLdap } from './sections/ldap.js';
import type { CompiledApp, CompiledConfig, ConfigIssue } from './types.js';

// The small pure helpers live in values.ts; they stay importable from here (the CLI and tests use them).
export { didYouMean, normaliseHost, parseListen, unsafeUrlText } from './values.js';

export interface CompileOptions {
  /** The file name as the user wrote it; used in issues and `SourcePos`. */
  file: string;
  /** Directory relative paths resolve against. */
  cwd: string;
  /** Whether to check that referenced files (TLS certificate and key) are readable now. */
  checkFiles: boolean;
  /** Where `{ env: NAME }` secrets are looked up (default: `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** For the schema test: told the keys every mapping of the document may have (path, keys). */
  observeKeys?: (path: string, keys: readonly string[]) => void;
}

export type CompileResult = { ok: true; config: CompiledConfig } | { ok: false; issues: ConfigIssue[] };

// ---------------------------------------------------------------------------------------------
// Sections

/**
 * The top-level keys. A new section: its keys in schema.ts, its compiler in sections/<name>.ts,
 * one entry here and one line in compileRoot. A block written for the old single-file compile.ts
 * moves into sections/<name>.ts as it is, with imports for what it uses: Reader, Val, Fields, opt,
 * readSecret, secretShown, checkUrl from ../reader.js; FrozenMap/FrozenSet/FrozenURL from
 * ../frozen.js; compileNetworkRefs, NETWORK_NAME from ./networks.js; didYouMean, normaliseHost,
 * unsafeUrlText, parseListen from ../values.js; its defaults from ../schema.js (defaultMs, defaultInt,
 * defaultBool, defaultText, enumOf, schemaAt) rather than literals.
 */
const TOP_KEYS = [
  'listen',
  'tls',
  'trusted_proxies',
  'proxy_protocol',
  'admin',
  'data_dir',
  'store',
  'workers',
  'networks',
  'users_file',
  'session',
  'totp',
  'enrol',
  'webauthn',
  'ldap',
  'password_policy',
  'login_limits',
  'lockdown',
  'attack',
  'notify',
  'audit',
  'upstream_timeouts',
  'shutdown',
  'access_log',
  'apps',
] as const;

const WORKERS = schemaAt('workers');

/** Compile a parsed document. Issues come back sorted by position. */
export function compileDocument(doc: Document.Parsed, lc: LineCounter, opts: CompileOptions): CompileResult {
  const r = new Reader(doc, lc, opts.file, opts.observeKeys);
  const config = compileRoot(r, doc, opts);
  if (r.issues.length > 0 || !config) {
    const issues = [...r.issues].sort((a, b) => a.line - b.line || a.col - b.col);
    return { ok: false, issues };
  }
  return { ok: true, config };
}

function compileRoot(r: Reader, doc: Document.Parsed, o: CompileOptions): CompiledConfig | null {
  const contents = doc.contents;
  if (contents === null || (isScalar(contents) && contents.value === null)) {
    r.issue(null, '', 'the file is empty; a configuration needs at least "apps"');
    return null;
  }
  const rootNode = r.deref(contents, '');
  if (!rootNode) return null;
  const t = r.object({ node: rootNode, path: '' }, TOP_KEYS, ['apps']);
  if (!t) return null;
  const cwd = resolve(o.cwd);

  const listen = opt(t.listen, (v) => r.listen(v), parseListen(defaultText('listen'))!);
  const dataDir = opt(t.data_dir, (v) => r.filePath(v, cwd), resolve(cwd, defaultText('data_dir')));
  const tls = t.tls && !r.isNull(t.tls) ? compileTls(r, t.tls, cwd, o.checkFiles) : null;
  const trustedProxies = opt(t.trusted_proxies, (v) => compileTrustedProxies(r, v), CidrSet.empty);
  const proxyProtocol = opt(t.proxy_protocol, (v) => r.bool(v), defaultBool('proxy_protocol'));
  if (proxyProtocol && trustedProxies.size === 0 && t.proxy_protocol) {
    r.issue(t.proxy_protocol.node, t.proxy_protocol.path, 'proxy_protocol needs trusted_proxies: a PROXY header is only believed from them');
  }
  const { admin, listenAt: adminListenAt } = compileAdmin(r, t.admin, cwd, dataDir);
  if (sharesPort(admin.listen, listen)) {
    const at = adminListenAt ?? t.listen ?? t.$;
    r.issue(at.node, at.path, `the admin listener (${admin.listen.host}:${admin.listen.port}) and "listen" (${listen.host}:${listen.port}) cannot share a port`);
  }
  const env = o.env ?? process.env;
  const store = opt(t.store, (v) => compileStore(r, v, cwd, env), { kind: defaultText('store') } as CompiledConfig['store']);
  const workers = opt(t.workers, (v) => r.int(v, WORKERS.min!, WORKERS.max!), defaultInt('workers'));
  if (workers > 1 && store.kind !== 'redis' && t.workers) {
    r.issue(t.workers.node, t.workers.path, 'workers above 1 need a shared store (store: redis://...); with memory each worker would keep its own sessions and counters');
  }
  const networks = opt(t.networks, (v) => compileNetworks(r, v), new Map<string, CidrSet>());
  const usersFile = opt(t.users_file, (v) => r.filePath(v, cwd), resolve(cwd, defaultText('users_file')));
  const session = compileSession(r, t.session);
  const totp = compileTotp(r, t.totp, networks, t.enrol);
  const passwordPolicy = compilePasswordPolicy(r, t.password_policy);
  const loginLimits = compileLoginLimits(r, t.login_limits);
  const lockdown = compileLockdown(r, t.lockdown, networks);
  const attack = t.attack && !r.isNull(t.attack) ? compileAttack(r, t.attack) : null;
  const notify = compileNotify(r, t.notify, cwd, env);
  const audit = compileAudit(r, t.audit, cwd, dataDir);
  const upstreamTimeouts = compileUpstreamTimeouts(r, t.upstream_timeouts);
  const shutdown = compileShutdown(r, t.shutdown);
  const accessLog = compileAccessLog(r, t.access_log, cwd);
  const apps = t.apps ? compileApps(r, t.apps, networks) : [];
  const webauthn = compileWebauthn(r, t.webauthn, session, apps);
  const ldap = t.ldap && !r.isNull(t.ldap) ? compileLdap(r, t.ldap, cwd, env, o.checkFiles, t.login_limits, loginLimits) : null;

  const appsByHost = new Map<string, CompiledApp>();
  for (const app of apps) for (const h of app.hosts) appsByHost.set(h, app);

  if (r.issues.length > 0) return null;
  return deepFreeze<CompiledConfig>({
    file: resolve(cwd, o.file),
    baseDir: cwd,
    listen,
    tls,
    trustedProxies,
    proxyProtocol,
    admin,
    dataDir,
    store,
    workers,
    networks: new FrozenMap(networks),
    usersFile,
    session,
    totp,
    webauthn,
    ldap,
    passwordPolicy,
    loginLimits,
    lockdown,
    attack,
    notify,
    audit,
    upstreamTimeouts,
    shutdown,
    accessLog,
    apps,
    appsByHost: new FrozenMap(appsByHost),
  });
}
