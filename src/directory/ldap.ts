/**
 * The directory (issue 12): users from LDAP or Active Directory, authenticated by binding as them.
 *
 *   service bind -> search `user_filter` (the typed name escaped per RFC 4515) -> exactly one entry
 *   -> account state -> bind as the entry's DN with the password -> groups
 *
 * What this module promises the rest of the gateway:
 * - An empty password, an empty DN or a name with a control character never reaches a bind (a
 *   simple bind with an empty password is an unauthenticated bind that succeeds).
 * - The typed name only ever enters a filter escaped (`escapeFilterValue`); a group filter gets
 *   the found DN escaped the same way.
 * - Zero entries, or more than one, is "no such user": nothing is bound.
 * - Connection trouble on every URL is `PC_DIRECTORY_UNAVAILABLE` (a 503, fail closed); a wrong
 *   password is an answer, never an outage.
 * - Plain ldap:// is used only with StartTLS, or with `insecure: true` (config says so).
 *
 * The gateway's throttles decide before `authenticate` is called (see src/auth/credential.ts);
 * this module only counts nothing. It caches what the directory said about a user (groups, email,
 * state) for at most `cache`, in a bounded LRU.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { Attribute, Change, Client, InvalidCredentialsError, ResultCodeError, type Entry } from 'ldapts';
import type { Clock } from '../clock.js';
import type { LdapConfig } from '../config/types.js';
import { PortcullisError } from '../errors.js';
import type { Logger } from '../audit/logger.js';
import { checkDisplayName, checkEmail, checkGroupName, checkUserName, type UserRecord } from '../auth/users.js';

/** RFC 4515 section 3: the five characters that must be escaped in an assertion value. */
export function escapeFilterValue(s: string): string {
  return s.replace(/[\\*()\u0000]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Fill `{username}` / `{dn}` in a configured filter, every value escaped. */
export function fillFilter(template: string, vars: { username?: string; dn?: string }): string {
  return template.replace(/\{(username|dn)\}/g, (_m, k: 'username' | 'dn') => escapeFilterValue(vars[k] ?? ''));
}

/** The value of a DN's first RDN (`cn=staff,ou=groups,...` -> `staff`), escapes undone. */
export function rdnValue(dn: string): string | null {
  const eq = dn.indexOf('=');
  if (eq < 0) return null;
  let out = '';
  for (let i = eq + 1; i < dn.length; i++) {
    const c = dn[i]!;
    if (c === '\\') {
      const hex = dn.slice(i + 1, i + 3);
      if (/^[0-9a-fA-F]{2}$/.test(hex)) {
        out += String.fromCharCode(parseInt(hex, 16));
        i += 2;
      } else if (i + 1 < dn.length) {
        out += dn[++i];
      }
      continue;
    }
    if (c === ',' || c === '+' || c === ';') break;
    out += c;
  }
  out = out.trim();
  return out === '' ? null : out;
}

/** Names a gateway never sends to a directory: empty, too long, or with a control character. */
export function searchableName(typed: string): boolean {
  return typed.length > 0 && typed.length <= 256 && !/[\u0000-\u001f\u007f]/.test(typed);
}

/** What the directory says about one account. */
export interface DirectoryEntry {
  dn: string;
  /** The stable id (entryUUID / objectGUID as a UUID string). */
  id: string;
  record: UserRecord;
  /** Why the account cannot sign in now (disabled, locked, expired), or null. */
  refused: string | null;
  /** The password must be changed before anything else (AD pwdLastSet=0, ppolicy pwdReset). */
  mustChange: boolean;
  /** Failed binds the directory itself has counted (pwdFailureTime values, badPwdCount). */
  directoryFailures: number;
  /** Changes when the password changes (pwdChangedTime, pwdLastSet): part of a guess's fingerprint. */
  passwordTag: string;
}

export type BindOutcome =
  | { kind: 'ok' }
  /** Wrong password (or the directory refused the bind for a reason it does not tell). */
  | { kind: 'wrong'; detail: string }
  /** The password was right but has expired / must be changed (AD 532, 773). */
  | { kind: 'expired'; detail: string };

const FILETIME_EPOCH_OFFSET = 11_644_473_600_000n;
const FILETIME_NEVER = 0x7fffffffffffffffn;
/** Groups followed through nesting at most this deep, and at most this many in all. */
const MAX_GROUP_DEPTH = 8;
const MAX_GROUPS = 256;
/** Service connections kept open. */
const POOL = 3;
/** Directory users remembered (LRU). */
const CACHE_MAX = 10_000;

function first(e: Entry, attr: string): string | null {
  const key = Object.keys(e).find((k) => k.toLowerCase() === attr.toLowerCase());
  if (!key) return null;
  const v = e[key];
  if (v === undefined) return null;
  const x = Array.isArray(v) ? v[0] : v;
  if (x === undefined) return null;
  return Buffer.isBuffer(x) ? x.toString('utf8') : String(x);
}

function all(e: Entry, attr: string): string[] {
  const key = Object.keys(e).find((k) => k.toLowerCase() === attr.toLowerCase());
  if (!key) return [];
  const v = e[key];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : String(x)));
}

function buffer(e: Entry, attr: string): Buffer | null {
  const key = Object.keys(e).find((k) => k.toLowerCase() === attr.toLowerCase());
  const v = key ? e[key] : undefined;
  const x = Array.isArray(v) ? v[0] : v;
  return Buffer.isBuffer(x) ? x : null;
}

/** objectGUID (16 bytes, little-endian first three fields) as the usual UUID text. */
export function guidText(b: Buffer): string {
  if (b.length !== 16) return b.toString('hex');
  const h = (x: Buffer) => x.toString('hex');
  const le = (s: number, n: number) => h(Buffer.from(b.subarray(s, s + n)).reverse());
  return `${le(0, 4)}-${le(4, 2)}-${le(6, 2)}-${h(b.subarray(8, 10))}-${h(b.subarray(10, 16))}`;
}

/** A FILETIME (100 ns since 1601) as ms since 1970; null for 0 / never. */
function filetimeMs(s: string | null): number | null {
  if (!s || !/^-?[0-9]+$/.test(s)) return null;
  const v = BigInt(s);
  if (v <= 0n || v >= FILETIME_NEVER) return null;
  return Number(v / 10_000n - FILETIME_EPOCH_OFFSET);
}

/**
 * A directory user's account key: what sessions name and what TOTP secrets, recovery codes, app
 * passwords and familiar networks are stored under. The stable id, never the name, so a renamed
 * user keeps them. `:` is outside the users file's name alphabet: no file user can collide.
 */
export const DIRECTORY_KEY_PREFIX = 'ldap:';
export function directoryKey(id: string): string {
  return `${DIRECTORY_KEY_PREFIX}${id}`;
}
export function isDirectoryKey(s: string): boolean {
  return s.startsWith(DIRECTORY_KEY_PREFIX);
}

/** The 16 bytes of objectGUID (hex, in wire order) for its UUID text, or null. */
export function guidBytes(uuid: string): string | null {
  const m = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i.exec(uuid);
  if (!m) return null;
  const rev = (h: string) => Buffer.from(h, 'hex').reverse().toString('hex');
  return `${rev(m[1]!)}${rev(m[2]!)}${rev(m[3]!)}${m[4]}${m[5]}`.toLowerCase();
}

/** The cause of a PC_DIRECTORY_UNAVAILABLE thrown when a sent bind got no answer (it may have been counted). */
const BIND_UNANSWERED = Symbol('ldap-bind-unanswered');
/** Whether `e` says a bind was sent and not answered: the directory may have counted it as a failure. */
export function bindUnanswered(e: unknown): boolean {
  return e instanceof PortcullisError && e.cause === BIND_UNANSWERED;
}

/** A connection that failed before anything was sent (refused, unreachable, TLS refused, connect timeout). */
function neverConnected(e: unknown): boolean {
  const code = String((e as { code?: unknown } | null)?.code ?? '');
  if (['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL'].includes(code)) return true;
  if (/CERT|TLS|SELF_SIGNED|UNABLE_TO|ERR_SSL/.test(code)) return true;
  return e instanceof Error && e.message === 'Connection timeout';
}

/** A DN compared loosely: lower case, no spaces around `,` and `=`. */
function normDn(dn: string): string {
  return dn.trim().toLowerCase().replace(/\s*([,=])\s*/g, '$1');
}
/** Whether DN `dn` is `base` or below it (both normDn'd). */
function isUnder(dn: string, base: string): boolean {
  return dn === base || dn.endsWith(`,${base}`);
}

/** Thrown inside this module for trouble reaching a server (try the next URL). */
class Unreachable extends Error {}

export class LdapDirectory {
  private readonly tls: ConnectionOptions;
  private readonly idle: Client[] = [];
  /** The URL that last answered: tried first. */
  private preferred = 0;
  private lastOk = true;
  private lastError: string | null = null;
  /** Account key (`ldap:` + stable id) -> what the directory said (LRU). */
  private readonly cache = new Map<string, { at: number; entry: DirectoryEntry }>();
  /** Refreshes in flight (bounded by the sessions asking at once). */
  private readonly refreshing = new Map<string, Promise<DirectoryEntry | null>>();
  /** User name -> account key (LRU). */
  private readonly names = new Map<string, string>();
  private closed = false;

  constructor(
    readonly cfg: LdapConfig,
    private readonly deps: { clock: Clock; logger: Logger },
  ) {
    this.tls = cfg.caFile ? { ca: readFileSync(cfg.caFile), minVersion: 'TLSv1.2' } : { minVersion: 'TLSv1.2' };
    if (cfg.insecure && cfg.urls.some((u) => u.startsWith('ldap:')) && !cfg.startTls) {
      deps.logger.warn({ urls: cfg.urls }, 'ldap: insecure: true, passwords go to the directory in clear text over ldap://');
    }
  }

  /** False after the last directory operation failed for want of a server (for /readyz). */
  healthy(): boolean {
    return this.lastOk;
  }
  unhealthyReason(): string | null {
    return this.lastOk ? null : `the directory is unreachable (${this.lastError ?? 'no server answered'})`;
  }

  async close(): Promise<void> {
    this.closed = true;
    const cs = this.idle.splice(0);
    await Promise.all(cs.map((c) => c.unbind().catch(() => undefined)));
  }

  private tlsFor(url: string): ConnectionOptions {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    return isIP(host) ? { ...this.tls, host } : { ...this.tls, host, servername: host };
  }

  /** A new connection to `url`, StartTLS done when configured. */
  private async open(url: string): Promise<Client> {
    // tlsOptions only for ldaps:// (ldapts opens TLS at once whenever they are given)
    const secure = url.startsWith('ldaps:');
    const c = new Client({ url, timeout: this.cfg.timeoutMs, connectTimeout: this.cfg.timeoutMs, ...(secure ? { tlsOptions: this.tlsFor(url) } : {}), strictDN: false });
    if (this.cfg.startTls && url.startsWith('ldap:')) {
      try {
        await c.startTLS(this.tlsFor(url));
      } catch (e) {
        await c.unbind().catch(() => undefined);
        throw new Unreachable(`StartTLS with ${url} failed: ${(e as Error).message}`);
      }
    }
    return c;
  }

  /**
   * Run `fn` against each URL in turn from the one that last answered, until one answers. LDAP
   * result errors are answers (returned to the caller); connection errors move on.
   */
  private async failover<T>(fn: (url: string) => Promise<T>): Promise<T> {
    if (this.closed) throw new PortcullisError('PC_DIRECTORY_UNAVAILABLE', 'the directory client is closed');
    const n = this.cfg.urls.length;
    const errors: string[] = [];
    for (let i = 0; i < n; i++) {
      const idx = (this.preferred + i) % n;
      const url = this.cfg.urls[idx]!;
      try {
        const r = await fn(url);
        if (idx !== this.preferred) this.deps.logger.warn({ url }, 'ldap: failed over to another directory server');
        this.preferred = idx;
        this.lastOk = true;
        this.lastError = null;
        return r;
      } catch (e) {
        if (e instanceof PortcullisError) throw e;
        if (e instanceof ResultCodeError && !(e instanceof Unreachable) && ![51, 52, 80].includes(e.code)) throw e;
        errors.push(`${url}: ${(e as Error).message}`);
      }
    }
    this.lastOk = false;
    this.lastError = errors.join('; ').slice(0, 500);
    this.deps.logger.error({ errors }, 'ldap: no directory server answered');
    throw new PortcullisError('PC_DIRECTORY_UNAVAILABLE', 'no directory server answered');
  }

  /** A search (or other operation) as the service account, over the small pool. */
  private async asService<T>(op: (c: Client) => Promise<T>): Promise<T> {
    return this.failover(async (url) => {
      let c = this.idle.pop();
      if (c && (!c.isConnected || (c as unknown as { _url?: string })._url !== url)) {
        await c.unbind().catch(() => undefined);
        c = undefined;
      }
      if (!c) {
        c = await this.open(url);
        (c as unknown as { _url?: string })._url = url;
        try {
          await c.bind(this.cfg.bindDn, this.cfg.bindPassword);
        } catch (e) {
          await c.unbind().catch(() => undefined);
          // a refused service bind is a misconfiguration, not a wrong password: the directory is unusable
          if (e instanceof ResultCodeError) throw new Unreachable(`the service account bind was refused (${e.code})`);
          throw e;
        }
      }
      try {
        const r = await op(c);
        if (this.idle.length < POOL && !this.closed) this.idle.push(c);
        else await c.unbind().catch(() => undefined);
        return r;
      } catch (e) {
        if (e instanceof ResultCodeError) {
          if (this.idle.length < POOL && !this.closed) this.idle.push(c);
        } else {
          await c.unbind().catch(() => undefined);
        }
        throw e;
      }
    });
  }

  private attrs(): string[] {
    const a = this.cfg.attributes;
    const base = ['dn', a.username, a.email, a.name, a.id];
    if (!this.cfg.groupFilter) base.push(a.groups);
    return this.cfg.implementation === 'activedirectory'
      ? [...base, 'userAccountControl', 'lockoutTime', 'accountExpires', 'pwdLastSet', 'msDS-UserPasswordExpiryTimeComputed', 'badPwdCount']
      : [...base, 'pwdAccountLockedTime', 'pwdFailureTime', 'pwdChangedTime', 'pwdReset', 'pwdEndTime', 'pwdStartTime'];
  }

  /**
   * The one entry `user_filter` finds for a typed name, or null (none, several, or a name that is
   * never searched). Fresh from the directory: sign-ins do not read the cache.
   */
  async find(typed: string): Promise<DirectoryEntry | null> {
    if (!searchableName(typed)) return null;
    const filter = fillFilter(this.cfg.userFilter, { username: typed });
    const res = await this.asService((c) =>
      c.search(this.cfg.baseDn, { scope: 'sub', filter, attributes: this.attrs(), sizeLimit: 2, explicitBufferAttributes: ['objectGUID'] }).catch((e) => {
        // more than one entry is "no such user", as none is
        if (e instanceof ResultCodeError && e.code === 4) return { searchEntries: [{ dn: '' }, { dn: '' }], searchReferences: [] };
        throw e;
      }),
    );
    if (res.searchEntries.length !== 1) {
      if (res.searchEntries.length > 1) this.deps.logger.warn({ filter: this.cfg.userFilter }, 'ldap: the user filter matched more than one entry; refusing the name');
      return null;
    }
    const e = res.searchEntries[0]!;
    if (!e.dn) return null;
    const entry = await this.toEntry(e, typed);
    if (entry) this.remember(entry);
    return entry;
  }

  private async toEntry(e: Entry, typed: string): Promise<DirectoryEntry | null> {
    const a = this.cfg.attributes;
    const guid = buffer(e, a.id);
    const id = guid && a.id.toLowerCase() === 'objectguid' ? guidText(guid) : first(e, a.id);
    const username = first(e, a.username) ?? typed;
    if (!id) {
      this.deps.logger.warn({ dn: e.dn, attribute: a.id }, 'ldap: the entry has no stable id attribute; refusing it');
      return null;
    }
    if (checkUserName(username) !== null) {
      this.deps.logger.warn({ dn: e.dn }, 'ldap: the user name is not usable in identity headers (a-z A-Z 0-9 . _ @ -); refusing it');
      return null;
    }
    const email = first(e, a.email);
    const name = first(e, a.name);
    const { groups, truncated } = await this.groupsOf(e);
    const state = accountState(this.cfg.implementation, e, this.deps.clock.now());
    const { mustChange, failures, passwordTag } = state;
    // a partial group list fails closed: the account is refused (sign-in) or disabled (session refresh)
    const refused = state.refused ?? (truncated ? `directory: the group list is incomplete (more than ${MAX_GROUPS} groups, a size limit, or nesting deeper than ${MAX_GROUP_DEPTH}); refused rather than judged on part of it` : null);
    if (truncated) this.deps.logger.warn({ dn: e.dn }, 'ldap: the group list of an entry is incomplete; the account is refused');
    const record: UserRecord = {
      name: username,
      passwordHash: '',
      email: email && checkEmail(email) === null ? email : null,
      displayName: name && checkDisplayName(name) === null ? name : null,
      groups,
      disabled: refused !== null,
      source: 'ldap',
      directoryId: id,
      ...(mustChange ? { mustChange: true } : {}),
    };
    return { dn: e.dn, id, record, refused, mustChange, directoryFailures: failures, passwordTag };
  }

  /** Group short names (the RDN value of each group DN), nested groups followed where needed. */
  private async groupsOf(e: Entry): Promise<{ groups: string[]; truncated: boolean }> {
    let dns: string[];
    // a group list that is not whole (a size limit, more than MAX_GROUPS, nesting deeper than
    // followed) is never used as if it were: a deny-by-group rule would fail open
    let truncated = false;
    const under = this.cfg.groupBaseDn ? normDn(this.cfg.groupBaseDn) : null;
    if (!this.cfg.groupFilter) {
      dns = all(e, this.cfg.attributes.groups);
      // groups outside group_base_dn are not the rules' groups (a `admins` made in another OU)
      if (under !== null) dns = dns.filter((dn) => isUnder(normDn(dn), under));
      if (dns.length > MAX_GROUPS) truncated = true;
    } else {
      const template = this.cfg.groupFilter;
      // AD evaluates LDAP_MATCHING_RULE_IN_CHAIN itself; other directories are walked here
      const chained = template.includes('1.2.840.113556.1.4.1941');
      const seen = new Set<string>();
      let frontier = [e.dn];
      let depth = 0;
      for (; depth < (chained ? 1 : MAX_GROUP_DEPTH) && frontier.length > 0 && !truncated; depth++) {
        const next: string[] = [];
        for (const dn of frontier) {
          const filter = fillFilter(template, { dn, username: first(e, this.cfg.attributes.username) ?? '' });
          const r = await this.asService((c) => c.search(this.cfg.groupBaseDn ?? this.cfg.baseDn, { scope: 'sub', filter, attributes: ['1.1'], sizeLimit: MAX_GROUPS + 1 }).catch((err) => {
            // the size limit exceeded (code 4): more groups than are read (ldapts returns the
            // partial result instead when a sizeLimit was asked for: one more than kept tells)
            if (err instanceof ResultCodeError && err.code === 4) return null;
            throw err;
          }));
          if (r === null || r.searchEntries.length > MAX_GROUPS) {
            truncated = true;
            break;
          }
          for (const g of r.searchEntries) {
            const key = g.dn.toLowerCase();
            if (seen.has(key) || (under !== null && !isUnder(normDn(g.dn), under))) continue;
            if (seen.size >= MAX_GROUPS) {
              truncated = true;
              break;
            }
            seen.add(key);
            next.push(g.dn);
          }
          if (truncated) break;
        }
        frontier = next;
      }
      // nesting deeper than followed: the groups further up are unknown
      if (!chained && depth >= MAX_GROUP_DEPTH && frontier.length > 0) truncated = true;
      dns = [...seen];
    }
    const names = new Set<string>();
    for (const dn of dns) {
      const v = rdnValue(dn);
      if (v !== null && checkGroupName(v) === null) names.add(v);
    }
    return { groups: [...names].sort().slice(0, MAX_GROUPS), truncated };
  }

  /**
   * Bind as `dn` with `password` on a connection of its own. Never called with an empty password
   * or DN (refused here too: an empty password would be an unauthenticated bind that succeeds).
   */
  async bind(dn: string, password: string): Promise<BindOutcome> {
    if (dn === '' || password === '') return { kind: 'wrong', detail: 'empty password (never sent to the directory)' };
    return this.failover(async (url) => {
      const c = await this.open(url);
      try {
        await c.bind(dn, password);
        return { kind: 'ok' } as const;
      } catch (e) {
        // the bind was sent and not answered (a timeout, a dropped connection): the directory may
        // have counted it. Never retried on another server, and the caller never takes it back.
        if (!(e instanceof ResultCodeError) && !neverConnected(e)) {
          throw new PortcullisError('PC_DIRECTORY_UNAVAILABLE', 'the directory did not answer a bind', { cause: BIND_UNANSWERED });
        }
        if (e instanceof InvalidCredentialsError) {
          // AD tells a right-but-expired password apart: "data 532" expired, "data 773" must change
          const m = /data ([0-9a-f]{3})/i.exec(e.message);
          if (m && (m[1] === '532' || m[1] === '773')) return { kind: 'expired', detail: `directory: password ${m[1] === '532' ? 'expired' : 'must be changed'} (AD ${m[1]})` } as const;
          return { kind: 'wrong', detail: m ? `AD ${m[1]}` : 'invalid credentials' } as const;
        }
        if (e instanceof ResultCodeError && ![51, 52, 80].includes(e.code)) return { kind: 'wrong', detail: `bind refused (${e.code})` } as const;
        throw e;
      } finally {
        await c.unbind().catch(() => undefined);
      }
    });
  }

  /**
   * Change a password in the directory, as the user. OpenLDAP: the Password Modify extended
   * operation (RFC 3062) bound as the user; AD: `unicodePwd` delete of the old and add of the new
   * quoted UTF-16LE value, which AD only accepts over TLS.
   */
  async changePassword(dn: string, oldPassword: string, newPassword: string): Promise<void> {
    if (dn === '' || oldPassword === '' || newPassword === '') throw new PortcullisError('PC_BAD_REQUEST', 'empty password');
    await this.failover(async (url) => {
      const c = await this.open(url);
      try {
        if (this.cfg.implementation === 'activedirectory') {
          if (!url.startsWith('ldaps:') && !this.cfg.startTls) throw new PortcullisError('PC_BAD_REQUEST', 'Active Directory changes passwords only over TLS');
          // bound as the service account: AD lets any principal change a password it knows the old value of
          await c.bind(this.cfg.bindDn, this.cfg.bindPassword);
          const q = (p: string) => Buffer.from(`"${p}"`, 'utf16le');
          await c.modify(dn, [
            new Change({ operation: 'delete', modification: new Attribute({ type: 'unicodePwd', values: [q(oldPassword)] }) }),
            new Change({ operation: 'add', modification: new Attribute({ type: 'unicodePwd', values: [q(newPassword)] }) }),
          ]);
        } else {
          await c.bind(dn, oldPassword);
          await c.exop('1.3.6.1.4.1.4203.1.11.1', passwdModifyValue(dn, oldPassword, newPassword));
        }
      } catch (e) {
        if (e instanceof ResultCodeError) throw new PortcullisError('PC_WEAK_PASSWORD', `the directory refused the new password (${e.code})`);
        throw e;
      } finally {
        await c.unbind().catch(() => undefined);
      }
    });
    this.forget(dn);
  }

  // ---- cache: what the directory said, for sessions (at most `cache` old before a refresh)

  private remember(entry: DirectoryEntry): void {
    const key = directoryKey(entry.id);
    this.cache.delete(key);
    this.cache.set(key, { at: this.deps.clock.now(), entry });
    this.names.delete(entry.record.name);
    this.names.set(entry.record.name, key);
    while (this.cache.size > CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
    while (this.names.size > CACHE_MAX) this.names.delete(this.names.keys().next().value!);
  }

  private forget(dn: string): void {
    for (const [k, v] of this.cache) if (v.entry.dn === dn) this.cache.delete(k);
  }

  private keyOf(nameOrKey: string): string | undefined {
    return isDirectoryKey(nameOrKey) ? nameOrKey : this.names.get(nameOrKey);
  }

  /** The last record for a signed-in user (by account key or name), however old; null when not remembered. */
  cached(nameOrKey: string): UserRecord | null {
    const k = this.keyOf(nameOrKey);
    return (k && this.cache.get(k)?.entry.record) || null;
  }

  /** The entry for an account key (`ldap:` + stable id), fresh from the directory. */
  async findByKey(key: string): Promise<DirectoryEntry | null> {
    if (!isDirectoryKey(key)) return null;
    const id = key.slice(DIRECTORY_KEY_PREFIX.length);
    const attr = this.cfg.attributes.id;
    let value: string;
    if (attr.toLowerCase() === 'objectguid') {
      const hex = guidBytes(id);
      if (!hex) return null;
      value = hex.replace(/(..)/g, '\\$1');
    } else {
      if (!searchableName(id)) return null;
      value = escapeFilterValue(id);
    }
    const filter = `(${attr}=${value})`;
    const res = await this.asService((c) =>
      c.search(this.cfg.baseDn, { scope: 'sub', filter, attributes: this.attrs(), sizeLimit: 2, explicitBufferAttributes: ['objectGUID'] }).catch((e) => {
        if (e instanceof ResultCodeError && e.code === 4) return { searchEntries: [], searchReferences: [] };
        throw e;
      }),
    );
    if (res.searchEntries.length !== 1) return null;
    const entry = await this.toEntry(res.searchEntries[0]!, '');
    if (!entry || entry.id !== id) return null;
    this.remember(entry);
    return entry;
  }

  /**
   * The record for a signed-in user (by account key, or by name): the cache while it is younger
   * than `cache`, else the directory. While the directory is unreachable an established session
   * keeps its last record (issue 12: established sessions continue); a user the directory no
   * longer finds is null.
   */
  async lookup(nameOrKey: string): Promise<UserRecord | null> {
    return (await this.lookupEntry(nameOrKey, true))?.record ?? null;
  }

  /**
   * The entry for a name or key: the cache while younger than `cache`, else the directory. While
   * the directory is unreachable `staleOk` returns the last entry however old (established
   * sessions); without it an entry older than `cache` is unusable: PC_DIRECTORY_UNAVAILABLE
   * (an app password is a new request each time, not an established session).
   */
  async lookupEntry(nameOrKey: string, staleOk: boolean): Promise<DirectoryEntry | null> {
    const k = this.keyOf(nameOrKey);
    const hit = k ? this.cache.get(k) : undefined;
    if (hit && this.deps.clock.now() - hit.at < this.cfg.cacheMs) return hit.entry;
    try {
      // one refresh per account at a time: a burst of a session's requests searches once
      let p = this.refreshing.get(nameOrKey);
      if (!p) {
        p = (isDirectoryKey(nameOrKey) ? this.findByKey(nameOrKey) : this.find(nameOrKey)).finally(() => this.refreshing.delete(nameOrKey));
        this.refreshing.set(nameOrKey, p);
      }
      const e = await p;
      if (!e || (!isDirectoryKey(nameOrKey) && e.record.name !== nameOrKey)) {
        if (k) this.cache.delete(k);
        return null;
      }
      return e;
    } catch (err) {
      if (staleOk && hit && err instanceof PortcullisError && err.code === 'PC_DIRECTORY_UNAVAILABLE') return hit.entry;
      throw err;
    }
  }

  private checked: { at: number; reason: string | null } | null = null;

  /**
   * For /readyz: null when the directory answers a service bind and a base search (checked at
   * most every 5 s), else why not.
   */
  async readiness(): Promise<string | null> {
    const now = this.deps.clock.now();
    if (this.checked && now - this.checked.at < 5000 && Math.abs(now - this.checked.at) < 5000) return this.checked.reason;
    let reason: string | null = null;
    try {
      await this.asService((c) => c.search(this.cfg.baseDn, { scope: 'base', attributes: ['1.1'] }));
    } catch (e) {
      reason = e instanceof PortcullisError && e.code === 'PC_DIRECTORY_UNAVAILABLE' ? this.unhealthyReason() : `the directory refused the service search (${(e as Error).message})`;
    }
    this.checked = { at: now, reason };
    return reason;
  }

  /** Bind with the service account and search the filter for `name` (check-config --connect). */
  async probe(name: string): Promise<{ entry: DirectoryEntry | null; url: string }> {
    const entry = await this.find(name);
    return { entry, url: this.cfg.urls[this.preferred]! };
  }
}

/**
 * What an entry's attributes say about signing in now: AD `userAccountControl` ACCOUNTDISABLE
 * (0x2), `lockoutTime` > 0, a past `accountExpires` refuse; `pwdLastSet` = 0, a past
 * `msDS-UserPasswordExpiryTimeComputed` or PASSWORD_EXPIRED (0x800000) mean "must change".
 * OpenLDAP ppolicy: `pwdAccountLockedTime` (000001010000Z: locked by an administrator) and a past
 * `pwdEndTime` refuse; `pwdReset: TRUE` means "must change".
 */
export function accountState(
  implementation: LdapConfig['implementation'],
  e: Entry,
  now: number,
): { refused: string | null; mustChange: boolean; failures: number; passwordTag: string } {
  let refused: string | null = null;
  let mustChange = false;
  if (implementation === 'activedirectory') {
    const uac = Number(first(e, 'userAccountControl') ?? '0');
    const lockout = first(e, 'lockoutTime');
    const expires = filetimeMs(first(e, 'accountExpires'));
    const pwdLastSet = first(e, 'pwdLastSet');
    const expiry = filetimeMs(first(e, 'msDS-UserPasswordExpiryTimeComputed'));
    if (uac & 0x2) refused = 'directory: account disabled (userAccountControl)';
    else if (lockout && lockout !== '0') refused = 'directory: account locked out (lockoutTime)';
    else if (expires !== null && expires <= now) refused = 'directory: account expired (accountExpires)';
    if (pwdLastSet === '0' || (expiry !== null && expiry <= now) || uac & 0x800000) mustChange = true;
    return { refused, mustChange, failures: Number(first(e, 'badPwdCount') ?? '0') || 0, passwordTag: pwdLastSet ?? '' };
  }
  const locked = first(e, 'pwdAccountLockedTime');
  if (locked) refused = locked === '000001010000Z' ? 'directory: account disabled (pwdAccountLockedTime)' : 'directory: account locked (ppolicy pwdAccountLockedTime)';
  const end = first(e, 'pwdEndTime');
  const endMs = end ? ldapTime(end) : null;
  if (!refused && endMs !== null && endMs <= now) refused = 'directory: account expired (pwdEndTime)';
  mustChange = (first(e, 'pwdReset') ?? '').toUpperCase() === 'TRUE';
  return { refused, mustChange, failures: all(e, 'pwdFailureTime').length, passwordTag: first(e, 'pwdChangedTime') ?? '' };
}

/** GeneralizedTime (`20260101120000Z`) as ms, or null. */
function ldapTime(s: string): number | null {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:\.\d+)?Z$/.exec(s);
  if (!m) return null;
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +(m[6] ?? 0));
}

/** The BER value of a Password Modify request: SEQUENCE { [0] userIdentity, [1] oldPasswd, [2] newPasswd }. */
export function passwdModifyValue(dn: string, oldPw: string, newPw: string): Buffer {
  const tlv = (tag: number, body: Buffer): Buffer => {
    const len = body.length;
    const l = len < 0x80 ? Buffer.from([len]) : len < 0x100 ? Buffer.from([0x81, len]) : Buffer.from([0x82, len >> 8, len & 0xff]);
    return Buffer.concat([Buffer.from([tag]), l, body]);
  };
  return tlv(0x30, Buffer.concat([tlv(0x80, Buffer.from(dn, 'utf8')), tlv(0x81, Buffer.from(oldPw, 'utf8')), tlv(0x82, Buffer.from(newPw, 'utf8'))]));
}
