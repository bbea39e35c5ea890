/**
 * The users file (SPEC: `users: { NAME: { password: "$argon2id$...", email, name, groups: [...],
 * disabled } }`).
 *
 * Loading validates like the main config: unknown keys refused, every problem reported at once
 * with file:line:col. Every value that ends up in a header sent to apps (`Remote-User`,
 * `Remote-Email`, `Remote-Name`, `Remote-Groups`) is held to a character set that cannot break a
 * header or the comma-separated group list.
 *
 * Editing goes through the yaml Document API, so comments and layout survive; the edited text
 * is validated again before it is written (atomically), so a CLI command never leaves a file the
 * gateway would refuse. Edits from several processes (the CLI, the portal's password change) are
 * serialised with a lock file.
 */
import { readFile, mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, Scalar, YAMLMap } from 'yaml';
import type { Document, Node as YamlNode, ParsedNode } from 'yaml';
import type { Random } from '../clock.js';
import type { ConfigIssue } from '../config/types.js';
import { PortcullisError } from '../errors.js';
import { createFileExclusive, writeFileAtomic } from '../util/atomic-write.js';
import { withLock } from '../util/file-lock.js';
import { isSupportedHash, type PasswordHasher } from './password.js';

export interface UserRecord {
  name: string;
  passwordHash: string;
  email: string | null;
  displayName: string | null;
  groups: readonly string[];
  disabled: boolean;
  /** Where the user comes from: absent or 'file' for the users file, 'ldap' for the directory. */
  source?: 'file' | 'ldap';
  /** The directory's stable id (entryUUID / objectGUID) of a directory user. */
  directoryId?: string;
  /** A directory user whose password the directory says must be changed (app passwords suspended). */
  mustChange?: boolean;
}

export type LoadUsersResult = { ok: true; users: ReadonlyMap<string, UserRecord> } | { ok: false; issues: ConfigIssue[] };

export const USER_NAME_RE = /^[a-zA-Z0-9._@-]{1,64}$/;
/** Group names share the user-name alphabet: no comma, so `Remote-Groups` stays unambiguous. */
export const GROUP_NAME_RE = USER_NAME_RE;
/** The WHATWG "valid e-mail address" grammar: printable ASCII, no spaces, commas or quotes. */
const EMAIL_RE =
  /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const MAX_DISPLAY_NAME = 128;
/** As the config: YAML 1.2 core schema (`yes` is text), no merge keys, duplicates refused. */
const YAML_OPTIONS = { schema: 'core', merge: false, uniqueKeys: true, strict: true, prettyErrors: false } as const;
const USER_KEYS = ['password', 'email', 'name', 'groups', 'disabled'] as const;

/** Why `name` cannot be a user name, or null if it can. */
export function checkUserName(name: string): string | null {
  return USER_NAME_RE.test(name) ? null : 'a user name is 1 to 64 characters from a-z A-Z 0-9 . _ @ -';
}
export function checkGroupName(g: string): string | null {
  return GROUP_NAME_RE.test(g) ? null : 'a group name is 1 to 64 characters from a-z A-Z 0-9 . _ @ -';
}
export function checkEmail(e: string): string | null {
  return e.length <= 254 && EMAIL_RE.test(e) ? null : 'not a valid e-mail address';
}
export function checkDisplayName(n: string): string | null {
  if (n.length === 0 || n.length > MAX_DISPLAY_NAME) return `a display name is 1 to ${MAX_DISPLAY_NAME} characters`;
  // Control characters (CR, LF, NUL...) would corrupt the Remote-Name header.
  if (/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(n)) return 'a display name must not contain control characters';
  return null;
}

/**
 * The record for what a person typed at the login form: the exact name, else the one name that
 * matches ignoring case (the loader refuses two names differing only in case).
 */
export function findUser(users: ReadonlyMap<string, UserRecord>, typed: string): UserRecord | null {
  const exact = users.get(typed);
  if (exact) return exact;
  const lower = typed.toLowerCase();
  for (const u of users.values()) if (u.name.toLowerCase() === lower) return u;
  return null;
}

/** A users file that is invalid as it stands or would be after an edit. */
export class UsersFileInvalid extends PortcullisError {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super('PC_CONFIG_INVALID', `the users file is invalid:\n${issues.map(formatIssue).join('\n')}`);
    this.issues = issues;
  }
}

/** `FILE:LINE:COL key.path: message`, as `check-config` prints. */
export function formatIssue(i: ConfigIssue): string {
  return `${i.file}:${i.line}:${i.col} ${i.path ? `${i.path}: ` : ''}${i.message}`;
}

/** Read and validate the users file. */
export async function loadUsersFile(file: string): Promise<LoadUsersResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    return { ok: false, issues: [{ file, line: 1, col: 1, path: '', message: `cannot read the users file (${code})` }] };
  }
  return parseUsersText(text, file);
}

/** Validate users-file text; `file` is used in messages only. */
export function parseUsersText(text: string, file: string): LoadUsersResult {
  const lc = new LineCounter();
  const doc = parseDocument(text, { ...YAML_OPTIONS, lineCounter: lc });
  const issues: ConfigIssue[] = [];
  const at = (node: YamlNode | null | undefined, path: string, message: string, offset?: number) => {
    const pos = lc.linePos(offset ?? node?.range?.[0] ?? 0);
    issues.push({ file, line: pos.line, col: pos.col, path, message });
  };
  for (const e of [...doc.errors, ...doc.warnings]) {
    const pos = lc.linePos(e.pos[0]);
    issues.push({ file, line: pos.line, col: pos.col, path: '', message: e.message.split('\n')[0]! });
  }
  if (doc.errors.length > 0) return { ok: false, issues };

  const users = new Map<string, UserRecord>();
  const root = doc.contents;
  if (!isMap(root)) {
    at(root, '', 'expected a mapping with the key `users`');
    return { ok: false, issues };
  }
  let usersNode: ParsedNode | null = null;
  let sawUsers = false;
  for (const pair of root.items) {
    const k = keyString(pair.key);
    if (k !== 'users') {
      at(pair.key as YamlNode, k ?? '?', 'unknown key (expected `users`)');
      continue;
    }
    sawUsers = true;
    usersNode = (pair.value as ParsedNode | null) ?? null;
  }
  if (!sawUsers) at(root, 'users', 'missing key `users`');
  if (usersNode !== null && !(isScalar(usersNode) && usersNode.value === null) && !isMap(usersNode)) {
    at(usersNode, 'users', 'expected a mapping of user names to users');
  } else if (isMap(usersNode)) {
    const seenLower = new Map<string, string>();
    for (const pair of usersNode.items) {
      const keyNode = pair.key as YamlNode;
      const name = keyString(pair.key);
      if (name === null) {
        at(keyNode, 'users', 'a user name must be a string (quote it)');
        continue;
      }
      const p = `users.${name}`;
      const nameErr = checkUserName(name);
      if (nameErr) at(keyNode, p, nameErr);
      const other = seenLower.get(name.toLowerCase());
      if (other !== undefined) at(keyNode, p, `differs from user "${other}" only in letter case`);
      seenLower.set(name.toLowerCase(), name);
      const rec = readUser(pair.value as ParsedNode | null, keyNode, name, p, at);
      if (rec && !nameErr && other === undefined) users.set(name, rec);
    }
  }
  return issues.length > 0 ? { ok: false, issues } : { ok: true, users };
}

type At = (node: YamlNode | null | undefined, path: string, message: string, offset?: number) => void;

function readUser(v: ParsedNode | null, keyNode: YamlNode, name: string, p: string, at: At): UserRecord | null {
  if (!isMap(v)) {
    at(v ?? keyNode, p, 'expected a mapping with `password` and optionally `email`, `name`, `groups`, `disabled`');
    return null;
  }
  let ok = true;
  const fail = (node: YamlNode | null | undefined, path: string, msg: string) => {
    ok = false;
    at(node ?? keyNode, path, msg);
  };
  let passwordHash: string | null = null;
  let email: string | null = null;
  let displayName: string | null = null;
  let groups: string[] = [];
  let disabled = false;
  for (const pair of v.items) {
    const k = keyString(pair.key);
    const val = pair.value as ParsedNode | null;
    const kp = `${p}.${k ?? '?'}`;
    switch (k) {
      case 'password': {
        const s = stringValue(val);
        if (s === null) fail(val, kp, 'expected a string');
        else if (!isSupportedHash(s)) fail(val, kp, 'expected an argon2id hash (make one with `portcullis hash-password`)');
        else passwordHash = s;
        break;
      }
      case 'email': {
        if (isNull(val)) break;
        const s = stringValue(val);
        const err = s === null ? 'expected a string' : checkEmail(s);
        if (err) fail(val, kp, err);
        else email = s;
        break;
      }
      case 'name': {
        if (isNull(val)) break;
        const s = stringValue(val);
        const err = s === null ? 'expected a string' : checkDisplayName(s);
        if (err) fail(val, kp, err);
        else displayName = s;
        break;
      }
      case 'groups': {
        if (isNull(val)) break;
        if (!isSeq(val)) {
          fail(val, kp, 'expected a list of group names');
          break;
        }
        const seen = new Set<string>();
        val.items.forEach((item, i) => {
          const g = stringValue(item as ParsedNode);
          const err = g === null ? 'expected a string' : checkGroupName(g);
          if (err) fail(item as YamlNode, `${kp}[${i}]`, err);
          else if (seen.has(g!)) fail(item as YamlNode, `${kp}[${i}]`, `group "${g}" is listed twice`);
          else seen.add(g!);
        });
        groups = [...seen];
        break;
      }
      case 'disabled': {
        if (isScalar(val) && typeof val.value === 'boolean') disabled = val.value;
        else fail(val, kp, 'expected true or false');
        break;
      }
      default:
        fail(pair.key as YamlNode, kp, `unknown key (expected one of: ${USER_KEYS.join(', ')})`);
    }
  }
  if (passwordHash === null && !v.items.some((pr) => keyString(pr.key) === 'password')) fail(keyNode, `${p}.password`, 'missing');
  if (!ok || passwordHash === null) return null;
  return Object.freeze({ name, passwordHash, email, displayName, groups: Object.freeze(groups), disabled });
}

function keyString(k: unknown): string | null {
  return isScalar(k) && typeof k.value === 'string' ? k.value : null;
}
function stringValue(v: ParsedNode | null): string | null {
  return isScalar(v) && typeof v.value === 'string' ? v.value : null;
}
function isNull(v: ParsedNode | null): boolean {
  return v === null || (isScalar(v) && v.value === null);
}

// ---------------------------------------------------------------------------------------------
// Editing

const HEADER = `# portcullis users file: edit by hand or with \`portcullis user ...\`; the gateway reloads it on change.
# Passwords are argon2id hashes (\`portcullis hash-password\` makes one from stdin).
`;

export interface EditOptions {
  /** Start from an empty users file if `file` does not exist (created 0600). */
  create?: boolean;
}

/**
 * Apply `mutate` to the users file's YAML document (comments kept), validate the result, and
 * write it atomically (mode kept; 0600 for a new file). Returns the users as written. Throws
 * UsersFileInvalid if the result would not load, and whatever `mutate` throws (nothing is
 * written then).
 */
export async function editUsersFile(
  file: string,
  mutate: (doc: Document) => void,
  opts: EditOptions = {},
): Promise<ReadonlyMap<string, UserRecord>> {
  if (opts.create) await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  return withLock(file, LOCK_WAIT_MS, async () => {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !opts.create) throw e;
      text = `${HEADER}users: {}\n`;
    }
    const doc = parseDocument(text, YAML_OPTIONS);
    if (doc.errors.length > 0) {
      const lc = new LineCounter();
      parseDocument(text, { ...YAML_OPTIONS, lineCounter: lc });
      throw new UsersFileInvalid(
        doc.errors.map((e) => ({ file, ...lc.linePos(e.pos[0]), path: '', message: e.message.split('\n')[0]! })),
      );
    }
    mutate(doc as unknown as Document);
    // lineWidth 0: never fold a long quoted hash across lines; `[a, b]` stays as people write it.
    const out = doc.toString({ lineWidth: 0, flowCollectionPadding: false });
    const checked = parseUsersText(out, file);
    if (!checked.ok) throw new UsersFileInvalid(checked.issues);
    await writeFileAtomic(file, out, { mode: 0o600 });
    return checked.users;
  });
}

export interface NewUser {
  name: string;
  passwordHash: string;
  email?: string | null | undefined;
  displayName?: string | null | undefined;
  groups?: readonly string[] | undefined;
  disabled?: boolean | undefined;
}

/** Add a user; PC_USER_EXISTS if the name (ignoring case) is taken. */
export function addUser(doc: Document, u: NewUser): void {
  const nameErr = checkUserName(u.name);
  if (nameErr) throw new PortcullisError('PC_BAD_REQUEST', `invalid user name "${u.name}": ${nameErr}`);
  const users = usersMap(doc, true);
  const existing = findKey(users, u.name);
  if (existing !== null) throw new PortcullisError('PC_USER_EXISTS', `user "${existing}" already exists`);
  const rec = new YAMLMap();
  rec.set(doc.createNode('password'), quoted(u.passwordHash));
  if (u.email) rec.set(doc.createNode('email'), doc.createNode(u.email));
  if (u.displayName) rec.set(doc.createNode('name'), doc.createNode(u.displayName));
  const groups = doc.createNode([...(u.groups ?? [])]);
  groups.flow = true;
  rec.set(doc.createNode('groups'), groups);
  if (u.disabled) rec.set(doc.createNode('disabled'), doc.createNode(true));
  users.set(doc.createNode(u.name), rec);
}

/** Replace a user's password hash; PC_USER_UNKNOWN if there is no such user. */
export function setPassword(doc: Document, name: string, passwordHash: string): void {
  userMap(doc, name).set(doc.createNode('password'), quoted(passwordHash));
}

/** Disable or re-enable a user; PC_USER_UNKNOWN if there is no such user. */
export function setDisabled(doc: Document, name: string, disabled: boolean): void {
  const m = userMap(doc, name);
  if (disabled || m.has('disabled')) m.set(doc.createNode('disabled'), doc.createNode(disabled));
}

/** Remove a user; PC_USER_UNKNOWN if there is no such user. */
export function removeUser(doc: Document, name: string): void {
  const users = usersMap(doc, false);
  const key = users ? findKey(users, name) : null;
  if (!users || key === null) throw unknownUser(name);
  users.delete(key);
}

function quoted(s: string): Scalar {
  const n = new Scalar(s);
  n.type = Scalar.QUOTE_DOUBLE;
  return n;
}

function usersMap(doc: Document, create: true): YAMLMap;
function usersMap(doc: Document, create: false): YAMLMap | null;
function usersMap(doc: Document, create: boolean): YAMLMap | null {
  if (!isMap(doc.contents)) {
    if (!create || (doc.contents !== null && !(isScalar(doc.contents) && doc.contents.value === null))) {
      if (!create) return null;
      throw new PortcullisError('PC_CONFIG_INVALID', 'the users file is not a mapping');
    }
    doc.contents = doc.createNode({}) as unknown as typeof doc.contents;
  }
  const root = doc.contents as unknown as YAMLMap;
  const u = root.get('users');
  if (isMap(u)) return u;
  if (u !== undefined && u !== null && !(isScalar(u) && u.value === null)) {
    throw new PortcullisError('PC_CONFIG_INVALID', 'the `users` key of the users file is not a mapping');
  }
  if (!create) return null;
  const m = new YAMLMap();
  root.set(doc.createNode('users'), m);
  return m;
}

function userMap(doc: Document, name: string): YAMLMap {
  const users = usersMap(doc, false);
  const key = users ? findKey(users, name) : null;
  if (!users || key === null) throw unknownUser(name);
  const m = users.get(key);
  if (!isMap(m)) throw new PortcullisError('PC_CONFIG_INVALID', `user "${key}" in the users file is not a mapping`);
  return m;
}

/** The key spelling used in the file for `name` (exact, else ignoring case), or null. */
function findKey(users: YAMLMap, name: string): string | null {
  let ci: string | null = null;
  for (const pair of users.items) {
    const k = keyString(pair.key);
    if (k === null) continue;
    if (k === name) return k;
    if (ci === null && k.toLowerCase() === name.toLowerCase()) ci = k;
  }
  return ci;
}

function unknownUser(name: string): PortcullisError {
  return new PortcullisError('PC_USER_UNKNOWN', `no user "${name}"`);
}

// ---------------------------------------------------------------------------------------------
// First start

/**
 * Create the users file on first start, with one user `admin` in group `admins` and a random
 * password returned here once (the caller prints it; it is stored only as a hash). Does nothing
 * if the file exists. Safe against two processes starting at once: one creates, the other
 * gets `created: false`.
 */
export async function ensureUsersFile(
  file: string,
  hasher: PasswordHasher,
  random: Random,
): Promise<{ created: boolean; adminPassword?: string }> {
  if (await exists(file)) return { created: false };
  const adminPassword = randomPassword(random);
  const hash = await hasher.hash(adminPassword);
  const text = `${HEADER}users:\n  admin:\n    password: ${JSON.stringify(hash)}\n    groups: [admins]\n`;
  const checked = parseUsersText(text, file);
  if (!checked.ok) throw new UsersFileInvalid(checked.issues);
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const created = await createFileExclusive(file, text, 0o600);
  return created ? { created, adminPassword } : { created: false };
}

const PASSWORD_ALPHABET = '23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ';

/** 24 characters from a 55-symbol alphabet without look-alikes (~138 bits), in groups of six. */
export function randomPassword(random: Random): string {
  const out: string[] = [];
  while (out.length < 24) {
    for (const b of random.bytes(32)) {
      // Rejection sampling keeps every symbol equally likely.
      if (b < 220 && out.length < 24) out.push(PASSWORD_ALPHABET[b % 55]!);
    }
  }
  return [0, 6, 12, 18].map((i) => out.slice(i, i + 6).join('')).join('-');
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

const LOCK_WAIT_MS = 10_000;
