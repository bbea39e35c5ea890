/**
 * Where users come from: the users file first (a break-glass admin is never shadowed by the
 * directory), then the directory when `ldap` is configured. Narrow deps, no Runtime.
 */
import type { UserRecord } from '../auth/users.js';
import { directoryKey, type LdapDirectory } from './ldap.js';
import { userKeyFor } from '../auth/throttle.js';

/**
 * The users-file user whose name equals `name` when both are folded as a directory compares
 * names (case, compatibility forms, RFC 4518 characters mapped to nothing), or undefined. A
 * directory user of such a name would shadow the file user (the directory's search ignores case,
 * the users file does not): such a name never goes to the directory, and such an entry is refused.
 */
export function fileUserLike(users: ReadonlyMap<string, UserRecord>, name: string): UserRecord | undefined {
  const exact = users.get(name);
  if (exact) return exact;
  let folded = FOLDED.get(users);
  if (!folded) {
    // the users map is replaced, never changed, on reload: fold it once
    folded = new Map();
    for (const u of users.values()) folded.set(userKeyFor(u.name), u);
    FOLDED.set(users, folded);
  }
  return folded.get(userKeyFor(name));
}
const FOLDED = new WeakMap<ReadonlyMap<string, UserRecord>, Map<string, UserRecord>>();

/**
 * What a user's sessions, second factors, app passwords and familiar networks are keyed by: the
 * name for a users-file user, `ldap:` + the stable id for a directory user (a rename keeps them).
 */
export function accountKey(user: UserRecord): string {
  return user.source === 'ldap' && user.directoryId ? directoryKey(user.directoryId) : user.name;
}

export interface UserSourceDeps {
  users: ReadonlyMap<string, UserRecord>;
  directory?: LdapDirectory | null;
}

/** Sync: the file user, else the directory's last word on a signed-in user (name or account key; however old). */
export function knownUser(d: UserSourceDeps, name: string): UserRecord | undefined {
  return d.users.get(name) ?? d.directory?.cached(name) ?? undefined;
}

/**
 * The file user, else the directory's record at most `ldap.cache` old. Throws
 * PC_DIRECTORY_UNAVAILABLE when the directory cannot answer and has never described this user.
 */
export async function lookupUser(d: UserSourceDeps, name: string): Promise<UserRecord | undefined> {
  return lookupUserNow(d, name);
}

/** `lookupUser`, answered at once for a users-file user (and without a directory); a promise for a directory user. */
export function lookupUserNow(d: UserSourceDeps, name: string): UserRecord | undefined | Promise<UserRecord | undefined> {
  const f = d.users.get(name);
  if (f) return f;
  if (!d.directory) return undefined;
  return d.directory.lookup(name).then((u) => u ?? undefined);
}
