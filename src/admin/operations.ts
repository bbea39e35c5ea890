/**
 * What the admin API does, without HTTP: list and revoke sessions, lift throttle blocks, provision
 * and reset TOTP devices, issue and revoke app passwords. The routes in `api.ts` only parse input
 * and call these; errors are PortcullisError with codes from src/errors.ts.
 *
 * Session ids never leave the gateway, not even hashed in full: a session is named by a handle,
 * the first characters of its id's SHA-256, enough to revoke it and useless to present as a cookie.
 */
import type { Runtime } from '../runtime.js';
import type { AppPasswordRecord, SessionRecord } from '../store/ports.js';
import type { BlockInfo } from '../auth/throttle.js';
import { isPortcullisError, PortcullisError } from '../errors.js';
import { parseIp } from '../net/ip.js';
import { normaliseSecret } from '../auth/totp.js';
import { checkUserName } from '../auth/users.js';
import { APP_PASSWORD_PURPOSE } from '../access/basic-auth.js';
import { closeLiveConnections, revokeAndClose } from '../access/lockdown.js';
import { directoryKey, isDirectoryKey } from '../directory/ldap.js';
import { accountKey } from '../directory/source.js';

/** Characters of the id hash shown as a session's handle (96 bits). */
export const HANDLE_CHARS = 16;
const HANDLE_RE = /^[A-Za-z0-9_-]{12,43}$/;
const LABEL_MAX = 64;
const APP_PASSWORD_PREFIX = 'pcap_';
const APP_PASSWORD_BYTES = 20; // 160 bits, exactly 32 base32 characters
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

export interface SessionView {
  handle: string;
  user: string;
  created: string;
  lastSeen: string;
  ip: string;
  amr: string[];
  /** What the holder must still do: `none` for a signed-in session. */
  pending: SessionRecord['pending'];
}

export interface AppPasswordView {
  label: string;
  created: string;
  lastUsed: string | null;
}

export interface Actor {
  /** The admin's address, for the audit record. */
  ip: string;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function bad(message: string): PortcullisError {
  return new PortcullisError('PC_BAD_REQUEST', message);
}

/** A user name as the users file allows it (PC_BAD_REQUEST otherwise). */
export function checkUser(user: unknown): string {
  if (typeof user !== 'string') throw bad('"user" must be a string');
  const err = checkUserName(user);
  if (err !== null) throw bad(`invalid user name: ${err}`);
  return user;
}

function existingUser(rt: Pick<Runtime, 'users'>, user: unknown): string {
  const name = checkUser(user);
  if (!rt.users.has(name)) throw new PortcullisError('PC_USER_UNKNOWN', `no user "${name}" in the users file`);
  return name;
}

/**
 * What a user's state is kept under (src/directory/source.ts accountKey): the name for a users
 * file user, else `ldap:<stable id>` when the directory finds the name. `mustExist`: a name
 * neither knows is PC_USER_UNKNOWN; otherwise it is used as given (removing what a gone user left).
 */
async function accountOf(rt: Runtime, user: unknown, mustExist: boolean): Promise<string> {
  // an account key as `sessions list` shows it (`ldap:<id>`) is taken as given, strictly checked:
  // a directory user's state is kept under it, and it works while the directory is down
  if (typeof user === 'string' && isDirectoryKey(user)) {
    const key = checkAccountKey(rt, user);
    // creating state (a TOTP secret, an app password) needs an account the directory knows
    if (mustExist && !(await rt.directory!.findByKey(key))) throw new PortcullisError('PC_USER_UNKNOWN', `no directory user with the account key ${key}`);
    return key;
  }
  const name = checkUser(user);
  if (rt.users.has(name) || !rt.directory) {
    if (mustExist) return existingUser(rt, name);
    return name;
  }
  let entry;
  try {
    entry = await rt.directory.find(name);
  } catch (e) {
    // the directory down: established sessions continue on the cached record, so the admin must
    // still be able to end them by name: the key the directory last gave for it (its cache)
    const cached = isPortcullisError(e, 'PC_DIRECTORY_UNAVAILABLE') ? rt.directory.cached(name) : null;
    if (cached) return accountKey(cached);
    throw e;
  }
  if (entry) return directoryKey(entry.id);
  if (mustExist) throw new PortcullisError('PC_USER_UNKNOWN', `no user "${name}" in the users file or the directory`);
  return name;
}

/** `ldap:` + a stable id (entryUUID, objectGUID, or a plain id attribute): nothing else. */
const ACCOUNT_KEY_RE = /^ldap:[A-Za-z0-9][A-Za-z0-9._@+=-]{0,127}$/;

function checkAccountKey(rt: Runtime, key: string): string {
  if (!rt.directory) throw bad('an account key (ldap:<id>) names a directory user, and no directory is configured');
  if (!ACCOUNT_KEY_RE.test(key)) throw bad('an account key is ldap: followed by the stable id (letters, digits, . _ @ + = -; at most 128)');
  return key;
}

function checkLabel(label: unknown): string {
  if (typeof label !== 'string') throw bad('"label" must be a string');
  const l = label.trim();
  if (l.length === 0 || l.length > LABEL_MAX) throw bad(`a label is 1 to ${LABEL_MAX} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(l)) throw bad('a label must not contain control characters');
  return l;
}

// ---- sessions

export async function listSessions(rt: Runtime, user?: string): Promise<SessionView[]> {
  // a directory user's sessions are kept under the account key, not the name
  const rows = await rt.stores.sessions.list(user === undefined ? undefined : await accountOf(rt, user, false));
  return rows
    .sort((a, b) => a.rec.createdAt - b.rec.createdAt || (a.idHash < b.idHash ? -1 : 1))
    .map(({ idHash, rec }) => ({
      handle: idHash.slice(0, HANDLE_CHARS),
      user: rec.user,
      created: iso(rec.createdAt),
      lastSeen: iso(rec.lastSeenAt),
      ip: rec.ip,
      amr: [...rec.amr],
      pending: rec.pending,
    }));
}

export type RevokeTarget = { user: string } | { all: true } | { handle: string };

export interface RevokeResult {
  revoked: number;
  connectionsClosed: number;
}

/** Revoke sessions and close the connections they (or the user) hold; audited as `session_revoked`. */
export async function revokeSessions(rt: Runtime, target: RevokeTarget, actor: Actor): Promise<RevokeResult> {
  if ('all' in target) {
    const { result: revoked, connectionsClosed } = await revokeAndClose(
      rt,
      (c) => c.user !== null || c.sessionHash !== null,
      'session revoked',
      () => rt.stores.sessions.deleteAll(),
    );
    rt.audit.record({ event: 'session_revoked', ip: actor.ip, outcome: 'info', reason: `admin: all sessions (${revoked})` });
    return { revoked, connectionsClosed };
  }
  if ('user' in target) {
    const user = await accountOf(rt, target.user, false);
    // app-password connections too: an admin revoking a user wants that user gone now
    const { result: revoked, connectionsClosed } = await revokeAndClose(rt, (c) => c.user === user, 'session revoked', () =>
      rt.stores.sessions.deleteByUser(user),
    );
    rt.audit.record({ event: 'session_revoked', ip: actor.ip, user, outcome: 'info', reason: `admin: ${revoked} session(s)` });
    return { revoked, connectionsClosed };
  }
  const handle = target.handle;
  if (typeof handle !== 'string' || !HANDLE_RE.test(handle)) throw bad(`a handle is 12 to 43 characters of base64url, as \`sessions list\` shows it`);
  const matches = (await rt.stores.sessions.list()).filter((s) => s.idHash.startsWith(handle));
  if (matches.length === 0) throw new PortcullisError('PC_NOT_FOUND', `no session with handle ${handle}`);
  if (matches.length > 1) throw bad(`handle ${handle} matches ${matches.length} sessions; give more characters`);
  const { idHash, rec } = matches[0]!;
  const { result: deleted, connectionsClosed } = await revokeAndClose(rt, (c) => c.sessionHash === idHash, 'session revoked', () =>
    rt.stores.sessions.delete(idHash),
  );
  rt.audit.record({ event: 'session_revoked', ip: actor.ip, user: rec.user, outcome: 'info', reason: 'admin: one session' });
  return { revoked: deleted ? 1 : 0, connectionsClosed };
}

// ---- throttle blocks

export type UnblockTarget = { user: string } | { ip: string };

/** Lift every block on a user name or a source address; returns how many were lifted. */
export async function unblock(rt: Pick<Runtime, 'audit' | 'logger' | 'throttle'>, target: UnblockTarget, actor: Actor): Promise<{ lifted: number }> {
  let lifted: number;
  if ('user' in target) {
    const u = target.user;
    // the throttle keys any typed name, not only existing users: accept what could have been typed
    // eslint-disable-next-line no-control-regex
    if (typeof u !== 'string' || u.length === 0 || u.length > 256 || /[\u0000-\u001f\u007f]/.test(u)) throw bad('"user" must be a user name');
    lifted = await rt.throttle.unblock({ user: u });
    rt.logger.info({ user: u, lifted, admin: actor.ip }, 'admin lifted blocks on a user');
    rt.audit.record({ event: 'unblocked', ip: actor.ip, user: u, outcome: 'info', reason: `admin: ${lifted} block(s)` });
  } else {
    const p = typeof target.ip === 'string' ? parseIp(target.ip) : null;
    if (!p) throw bad('"ip" must be an IPv4 or IPv6 address');
    lifted = await rt.throttle.unblock({ ip: p.address });
    rt.logger.info({ ip: p.address, lifted, admin: actor.ip }, 'admin lifted blocks on a source');
    rt.audit.record({ event: 'unblocked', ip: actor.ip, outcome: 'info', reason: `admin: ${lifted} block(s) on source ${p.address}` });
  }
  return { lifted };
}

export interface BlockView extends Omit<BlockInfo, 'until'> {
  until: string;
}

export async function listBlocks(rt: Pick<Runtime, 'throttle'>): Promise<BlockView[]> {
  return (await rt.throttle.listBlocks()).map((b) => ({ ...b, until: iso(b.until) }));
}

// ---- TOTP

/**
 * Provision a TOTP device (a hardware token) for an existing user: the secret is sealed under
 * `totp:<user>` and replaces any device they had. The user's sessions end, so a lost device's
 * sessions do not outlive it.
 */
export async function setTotp(rt: Runtime, user: unknown, secret: unknown, actor: Actor): Promise<{ sessionsRevoked: number }> {
  const name = await accountOf(rt, user, true);
  if (typeof secret !== 'string') throw bad('"secret" must be a base32 string');
  const canonical = normaliseSecret(secret);
  await rt.stores.state.setTotp(name, { secret: rt.box.seal(canonical, `totp:${name}`), enrolledAt: rt.clock.now(), source: 'provisioned' });
  rt.audit.record({ event: 'totp_enrolled', ip: actor.ip, user: name, outcome: 'success', reason: 'provisioned by admin' });
  const r = await revokeSessions(rt, { user: user as string }, actor);
  return { sessionsRevoked: r.revoked };
}

/**
 * Forget a user's TOTP device and recovery codes: their next sign-in asks them to enrol again
 * (where `totp.enrol.networks` allows). Their sessions end.
 */
export async function resetTotp(rt: Runtime, user: unknown, actor: Actor): Promise<{ hadDevice: boolean; sessionsRevoked: number }> {
  const name = await accountOf(rt, user, false);
  const hadDevice = (await rt.stores.state.getTotp(name)) !== null;
  await rt.stores.state.setTotp(name, null);
  await rt.stores.state.setRecoveryCodes(name, []);
  rt.logger.info({ user: name, hadDevice, admin: actor.ip }, 'admin reset a TOTP device');
  rt.audit.record({ event: 'totp_reset', ip: actor.ip, user: name, outcome: 'info', reason: hadDevice ? 'by admin' : 'by admin (no device)' });
  const r = await revokeSessions(rt, { user: user as string }, actor);
  return { hadDevice, sessionsRevoked: r.revoked };
}

// ---- app passwords

function base32(bytes: Buffer): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(acc << (5 - bits)) & 31];
  return out;
}

/** A new app password: `pcap_` and 32 base32 characters (160 bits from the CSPRNG). */
export function generateAppPassword(rt: Pick<Runtime, 'random'>): string {
  const bytes = rt.random.bytes(APP_PASSWORD_BYTES);
  if (bytes.length !== APP_PASSWORD_BYTES) throw new PortcullisError('PC_CONFIG_INVALID', 'the random source returned too few bytes');
  return `${APP_PASSWORD_PREFIX}${base32(bytes)}`;
}

/**
 * Issue an app password for an existing user. The password is returned once and stored only as
 * the keyed HMAC that `proxy/basic-auth.ts` verifies.
 */
export async function addAppPassword(rt: Runtime, user: unknown, label: unknown, actor: Actor): Promise<{ user: string; label: string; password: string }> {
  const name = await accountOf(rt, user, true);
  const l = checkLabel(label);
  const existing = await rt.stores.state.listAppPasswords(name);
  if (existing.some((p) => p.label === l)) throw bad(`"${name}" already has an app password labelled "${l}"; revoke it first or choose another label`);
  const password = generateAppPassword(rt);
  const rec: AppPasswordRecord = { label: l, hash: rt.box.hmac(APP_PASSWORD_PURPOSE, `${name}\u0000${password}`), createdAt: rt.clock.now() };
  await rt.stores.state.addAppPassword(name, rec);
  rt.logger.info({ user: name, label: l, admin: actor.ip }, 'admin issued an app password');
  return { user: user as string, label: l, password }; // checked by accountOf (a name, or an account key)
}

export async function listAppPasswords(rt: Runtime, user: unknown): Promise<AppPasswordView[]> {
  const name = await accountOf(rt, user, false);
  return (await rt.stores.state.listAppPasswords(name)).map((p) => ({
    label: p.label,
    created: iso(p.createdAt),
    lastUsed: p.lastUsedAt === undefined ? null : iso(p.lastUsedAt),
  }));
}

/** Revoke one app password; connections the user opened with an app password close. */
export async function revokeAppPassword(rt: Runtime, user: unknown, label: unknown, actor: Actor): Promise<{ connectionsClosed: number }> {
  const name = await accountOf(rt, user, false);
  const l = checkLabel(label);
  if (!(await rt.stores.state.revokeAppPassword(name, l))) {
    throw new PortcullisError('PC_NOT_FOUND', `"${name}" has no app password labelled "${l}"`);
  }
  // A Basic connection does not say which app password opened it: close all of the user's.
  const connectionsClosed = closeLiveConnections(rt, (c) => c.user === name && c.sessionHash === null, 'app password revoked');
  rt.logger.info({ user: name, label: l, admin: actor.ip }, 'admin revoked an app password');
  return { connectionsClosed };
}

// ---- passkeys (issue 13) ----

export interface PasskeyAdminView {
  id: string;
  name: string;
  created: string;
  lastUsed: string | null;
  transports: string[];
}

export async function listPasskeysOf(rt: Runtime, user: unknown): Promise<PasskeyAdminView[]> {
  const name = await accountOf(rt, user, false);
  return (await rt.stores.state.listPasskeys(name)).map((p) => ({
    id: p.id,
    name: p.name,
    created: iso(p.createdAt),
    lastUsed: p.lastUsedAt ? iso(p.lastUsedAt) : null,
    transports: [...p.transports],
  }));
}

/** Remove one of a user's passkeys (a lost or stolen key): their sessions end, as after `totp reset`. */
export async function removePasskeyOf(rt: Runtime, user: unknown, id: unknown, actor: Actor): Promise<{ sessionsRevoked: number }> {
  const name = await accountOf(rt, user, false);
  if (typeof id !== 'string' || id.length === 0 || id.length > 1024) throw bad('"id" must be a credential id (see `portcullis passkey list NAME`)');
  if (!(await rt.stores.state.removePasskey(name, id))) throw new PortcullisError('PC_NOT_FOUND', `"${name}" has no passkey with id ${id.slice(0, 64)}`);
  rt.audit.record({ event: 'passkey_removed', ip: actor.ip, user: name, outcome: 'success', reason: 'by admin' });
  const r = await revokeSessions(rt, { user: name }, actor);
  return { sessionsRevoked: r.revoked };
}
