/** `ldap`: users from a directory (OpenLDAP, Active Directory), and the lockout rule it brings. */
import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, type ParsedNode } from 'yaml';
import { childPath, opt, readSecret, type Reader, type Val } from '../reader.js';
import { unreadableFile } from './listen.js';
import { MAX_COUNT } from './login-limits.js';
import type { LdapConfig, LoginLimits } from '../types.js';
const LDAP_DEFAULTS: Record<LdapConfig['implementation'], { userFilter: string | null; groupFilter: string | null; attributes: LdapConfig['attributes'] }> = {
  // as Authelia's: the name is a sAMAccountName or a userPrincipalName; groups nested through
  // LDAP_MATCHING_RULE_IN_CHAIN, evaluated by the domain controller
  activedirectory: {
    userFilter: '(&(|(sAMAccountName={username})(userPrincipalName={username}))(objectCategory=person)(objectClass=user))',
    groupFilter: '(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={dn}))',
    attributes: { username: 'sAMAccountName', email: 'mail', name: 'displayName', groups: 'memberOf', id: 'objectGUID' },
  },
  // groupOfNames searched by member (nested groups followed by the gateway, bounded)
  openldap: {
    userFilter: '(&(objectClass=person)(uid={username}))',
    groupFilter: '(&(objectClass=groupOfNames)(member={dn}))',
    attributes: { username: 'uid', email: 'mail', name: 'displayName', groups: 'memberOf', id: 'entryUUID' },
  },
  custom: {
    userFilter: null,
    groupFilter: null,
    attributes: { username: 'uid', email: 'mail', name: 'displayName', groups: 'memberOf', id: 'entryUUID' },
  },
};

/** An attribute description: a name or an OID, options allowed (RFC 4512). */
const LDAP_ATTR = /^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)(?:;[A-Za-z0-9-]+)*$/;

/** Why `f` is not an RFC 4515 filter shape (balanced, parenthesised, no NUL), or null. */
export function ldapFilterProblem(f: string): string | null {
  if (!f.startsWith('(') || !f.endsWith(')')) return 'a filter is written in parentheses, e.g. (uid={username})';
  let depth = 0;
  for (let i = 0; i < f.length; i++) {
    const c = f[i];
    if (c === '\\') {
      if (!/^[0-9a-fA-F]{2}$/.test(f.slice(i + 1, i + 3))) return 'a backslash in a filter starts a two-digit hex escape (\\2a)';
      i += 2;
    } else if (c === '(') depth++;
    else if (c === ')' && --depth < 0) return 'unbalanced parentheses';
    else if (c === '\u0000') return 'a filter cannot contain NUL';
    if (depth === 0 && i < f.length - 1) return 'a filter is one parenthesised expression';
  }
  return depth === 0 ? null : 'unbalanced parentheses';
}

export function compileLdap(
  r: Reader,
  v: Val,
  cwd: string,
  env: NodeJS.ProcessEnv,
  checkFiles: boolean,
  limitsAt: Val | undefined,
  limits: LoginLimits,
): LdapConfig | null {
  const keys = ['implementation', 'url', 'start_tls', 'ca_file', 'insecure', 'bind_dn', 'bind_password', 'base_dn', 'user_filter', 'group_filter', 'group_base_dn', 'attributes', 'lockout_threshold', 'timeout', 'cache'] as const;
  const o = r.object(v, keys, ['url', 'bind_dn', 'bind_password', 'base_dn']);
  if (!o) return null;
  const n0 = r.issues.length;
  const implementation = opt(o.implementation, (x) => r.oneOf(x, ['activedirectory', 'openldap', 'custom'] as const), 'openldap' as LdapConfig['implementation']);
  const d = LDAP_DEFAULTS[implementation];
  const startTls = opt(o.start_tls, (x) => r.bool(x), false);
  const insecure = opt(o.insecure, (x) => r.bool(x), false);
  const urlVals = o.url ? (isSeq(o.url.node) ? r.list(o.url, 'ldap:// or ldaps:// URLs', { nonEmpty: 'list at least one directory URL' }) ?? [] : [o.url]) : [];
  const urls: string[] = [];
  for (const u of urlVals) {
    const s = r.name(u, 'an ldap:// or ldaps:// URL');
    if (s === undefined) continue;
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      r.issue(u.node, u.path, `"${s}" is not a URL; write ldaps://HOST[:PORT] or ldap://HOST[:PORT]`);
      continue;
    }
    if (url.protocol !== 'ldap:' && url.protocol !== 'ldaps:') {
      r.issue(u.node, u.path, `"${s}": the directory is reached over ldaps:// or ldap://`);
      continue;
    }
    if (url.username || url.password || (url.pathname && url.pathname !== '/') || url.search || url.hash || !url.hostname) {
      r.issue(u.node, u.path, `"${s}": write only the scheme, host and port; the bind DN and base DN have their own keys`);
      continue;
    }
    if (url.protocol === 'ldaps:' && startTls) {
      r.issue(u.node, u.path, `"${s}" is already TLS (ldaps://); start_tls applies to ldap:// URLs`);
      continue;
    }
    if (url.protocol === 'ldap:' && !startTls && !insecure) {
      r.issue(u.node, u.path, `"${s}" would send passwords in clear text; use ldaps://, set start_tls: true, or (on a trusted link only) insecure: true`);
      continue;
    }
    urls.push(`${url.protocol}//${url.host}`);
  }
  let caFile: string | null = null;
  if (o.ca_file && !r.isNull(o.ca_file)) {
    const p = r.filePath(o.ca_file, cwd);
    if (p !== undefined) {
      const why = checkFiles ? unreadableFile(p) : null;
      if (why) r.issue(o.ca_file.node, o.ca_file.path, `cannot read the CA file ${p}: ${why}`);
      else if (checkFiles && !/-----BEGIN CERTIFICATE-----/.test(readFileSync(p, 'utf8'))) r.issue(o.ca_file.node, o.ca_file.path, `${p} holds no PEM certificate`);
      caFile = p;
    }
  }
  const bindDn = o.bind_dn ? r.name(o.bind_dn, 'the service account DN') : undefined;
  const secret = o.bind_password ? readSecret(r, o.bind_password, 'the service account password', cwd, env) : undefined;
  if (secret && secret.value === '' && o.bind_password) r.issue(o.bind_password.node, o.bind_password.path, 'an empty password is an unauthenticated bind; give the service account password');
  const baseDn = o.base_dn ? r.name(o.base_dn, 'the base DN') : undefined;
  const filter = (x: Val | undefined, dflt: string | null, placeholder: string, what: string): string | null => {
    if (!x || r.isNull(x)) {
      if (dflt === null && what === 'user_filter') r.issue(v.node, v.path, `implementation: ${implementation} has no default user_filter; write one, e.g. (uid={username})`);
      return dflt;
    }
    const s = r.name(x, 'an LDAP filter');
    if (s === undefined) return null;
    const why = ldapFilterProblem(s.replace(/\{(username|dn)\}/g, 'x'));
    if (why) return r.issue(x.node, x.path, why) ?? null;
    if (!s.includes(placeholder)) return r.issue(x.node, x.path, `the filter must contain ${placeholder}`) ?? null;
    return s;
  };
  const userFilter = filter(o.user_filter, d.userFilter, '{username}', 'user_filter');
  const groupFilter = filter(o.group_filter, d.groupFilter, '{dn}', 'group_filter');
  // groups count only under this DN (a group named `admins` elsewhere is not the rules' admins)
  let groupBaseDn: string | null = null;
  if (o.group_base_dn && !(isScalar(o.group_base_dn.node) && o.group_base_dn.node.value === null)) {
    const g = r.name(o.group_base_dn, 'the DN groups are read under');
    if (g !== undefined) {
      if (/[\u0000-\u001f\u007f]/.test(g) || !/^[^=,]+=[^,]/.test(g.trim())) r.issue(o.group_base_dn.node, o.group_base_dn.path, `"${g}" is not a DN`);
      else groupBaseDn = g.trim();
    }
  }
  const attributes = { ...d.attributes };
  if (o.attributes) {
    const a = r.object(o.attributes, ['username', 'email', 'name', 'groups', 'id'] as const);
    if (a) {
      for (const k of ['username', 'email', 'name', 'groups', 'id'] as const) {
        const x = a[k];
        if (!x) continue;
        const s = r.name(x, 'an attribute name');
        if (s === undefined) continue;
        if (!LDAP_ATTR.test(s)) r.issue(x.node, x.path, `"${s}" is not an LDAP attribute name`);
        else attributes[k] = s;
      }
    }
  }
  const lockoutThreshold = opt(o.lockout_threshold, (x) => r.int(x, 2, MAX_COUNT), 10);
  const timeoutMs = opt(o.timeout, (x) => r.duration(x), 5000);
  const cacheMs = opt(o.cache, (x) => r.duration(x, { allowZero: true }), 60_000);
  if (o.cache && cacheMs > 60 * 60_000) r.issue(o.cache.node, o.cache.path, 'at most 1h: a user removed from a group keeps it for as long as it is cached');

  // the directory's lockout is reached through the gateway only if a per-user counter admits
  // that many binds: every counter that admits binds for one account must stay below it
  const at = (path: string[]): Val | undefined => {
    let cur = limitsAt;
    for (const k of path) {
      if (!cur || !isMap(cur.node)) return undefined;
      const pair = cur.node.items.find((p) => isScalar(p.key) && p.key.value === k);
      if (!pair || !pair.value) return undefined;
      cur = { node: pair.value as ParsedNode, path: childPath(cur.path, k) };
    }
    return cur;
  };
  const thresholdAt = o.lockout_threshold ?? v;
  const userAt = at(['per_user', 'max_failures']);
  if (limits.perUser.maxFailures >= lockoutThreshold) {
    const where = userAt ?? thresholdAt;
    r.issue(
      where.node,
      userAt ? userAt.path : thresholdAt.path,
      `login_limits.per_user.max_failures (${limits.perUser.maxFailures}) must be below ldap.lockout_threshold (${lockoutThreshold}): otherwise an attacker signing in through the gateway locks directory accounts`,
    );
  }
  const ceilingAt = at(['per_user', 'ceiling', 'max_failures']);
  if (ceilingAt && limits.perUser.ceiling.maxFailures >= lockoutThreshold) {
    r.issue(
      ceilingAt.node,
      ceilingAt.path,
      `login_limits.per_user.ceiling.max_failures (${limits.perUser.ceiling.maxFailures}) must be below ldap.lockout_threshold (${lockoutThreshold}): the ceiling admits that many binds per account`,
    );
  } else if (!ceilingAt && limits.perUser.ceiling.maxFailures >= lockoutThreshold) {
    // the ceiling's default (100 a day) is meant for the gateway's own hashes; with a directory
    // it is held below the lockout: (LoginLimits is not frozen yet)
    (limits.perUser.ceiling as { maxFailures: number }).maxFailures = lockoutThreshold - 1;
  }
  if (r.issues.length > n0 || bindDn === undefined || !secret || baseDn === undefined || userFilter === null || urls.length === 0) return null;
  return { implementation, urls, startTls, caFile, insecure, bindDn, bindPassword: secret.value, baseDn, userFilter, groupFilter, groupBaseDn, attributes, lockoutThreshold, timeoutMs, cacheMs };
}
