/**
 * Durable gateway state (TOTP secrets, recovery codes, app passwords, known networks,
 * lockdown) in one JSON file, `data_dir/state.json`, for a single-instance gateway and the CLI.
 *
 * - Every write replaces the file atomically: a new file (mode 0600) is written, fsynced,
 *   renamed over the old one, and the directory fsynced; a crash leaves the old or the new
 *   state, never a torn one.
 * - Every operation runs through one queue, so mutations never interleave.
 * - If another process (the CLI) replaced the file, it is read again: before every mutation,
 *   so that change is never overwritten, and before a read at most once per `recheckMs`
 *   (default 1 s), so a `portcullis totp reset` is seen by a running gateway within a second
 *   without a file-system call on every login attempt.
 * - A file that cannot be parsed is refused (the store does not open) rather than treated as
 *   empty: silently losing TOTP secrets would let anyone enrol a new authenticator.
 * - Per-user lists are bounded: known networks (most recent 50), recovery codes and app
 *   passwords (100 each).
 */
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { systemClock, type Clock } from '../clock.js';
import { PortcullisError } from '../errors.js';
import type { AppPasswordRecord, PasskeyRecord, StateStore, TotpRecord } from './ports.js';

export const STATE_FILE = 'state.json';
export const MAX_KNOWN_NETWORKS = 50;
export const MAX_RECOVERY_CODES = 100;
export const MAX_APP_PASSWORDS = 100;
/** Passkeys per user, whatever the caller asks (src/auth/passkey.ts uses 10). */
export const MAX_PASSKEYS = 20;
const FORMAT_VERSION = 1;
export const DEFAULT_RECHECK_MS = 1000;

export interface FileStateOptions {
  /** Paces re-reading the file for changes made by other processes (default: system time). */
  clock?: Clock;
  /** Reads trust the loaded copy for this long before checking the file again (default 1000). */
  recheckMs?: number;
}

interface UserState {
  totp?: TotpRecord;
  recoveryCodes?: string[];
  appPasswords?: AppPasswordRecord[];
  /** Oldest first; the last is the most recently used. */
  knownNetworks?: string[];
  passkeys?: PasskeyRecord[];
}

interface Lockdown {
  on: boolean;
  since: number;
  by: string;
}

interface StateData {
  users: Map<string, UserState>;
  lockdown: Lockdown | null;
}

export class FileStateStore implements StateStore {
  readonly file: string;
  private data: StateData;
  /** Identity of the file we last read or wrote (inode, size, mtime), or null when absent. */
  private signature: string | null;
  private queue: Promise<unknown> = Promise.resolve();
  private seq = 0;
  private closed = false;
  private lastCheck: number;

  private constructor(
    readonly dir: string,
    data: StateData,
    signature: string | null,
    private readonly clock: Clock,
    private readonly recheckMs: number,
  ) {
    this.file = join(dir, STATE_FILE);
    this.data = data;
    this.signature = signature;
    this.lastCheck = clock.now();
  }

  /** Open (creating `dataDir` with mode 0700 if needed) and load `state.json` if it exists. */
  static async open(dataDir: string, opts: FileStateOptions = {}): Promise<FileStateStore> {
    const recheckMs = opts.recheckMs ?? DEFAULT_RECHECK_MS;
    if (!Number.isFinite(recheckMs) || recheckMs < 0) throw new RangeError('recheckMs must be a non-negative number');
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await removeOrphanTempFiles(dataDir);
    const file = join(dataDir, STATE_FILE);
    const { data, signature } = await load(file);
    return new FileStateStore(dataDir, data, signature, opts.clock ?? systemClock, recheckMs);
  }

  /** Waits for pending writes; later operations are refused. */
  async close(): Promise<void> {
    this.closed = true;
    await this.queue.catch(() => undefined);
  }

  // ---- TOTP

  async getTotp(user: string): Promise<TotpRecord | null> {
    return this.read((d) => clone(d.users.get(user)?.totp ?? null));
  }

  async setTotp(user: string, rec: TotpRecord | null): Promise<void> {
    await this.updateUser(user, (u) => {
      if (rec === null) {
        if (!u.totp) return { changed: false, result: undefined };
        delete u.totp;
      } else {
        u.totp = { secret: rec.secret, enrolledAt: rec.enrolledAt, source: rec.source };
      }
      return { changed: true, result: undefined };
    });
  }

  // ---- recovery codes

  async setRecoveryCodes(user: string, hashes: string[]): Promise<void> {
    if (hashes.length > MAX_RECOVERY_CODES) {
      throw new PortcullisError('PC_BAD_REQUEST', `at most ${MAX_RECOVERY_CODES} recovery codes may be stored`);
    }
    const list = [...hashes];
    await this.updateUser(user, (u) => {
      if (list.length === 0) delete u.recoveryCodes;
      else u.recoveryCodes = list;
      return { changed: true, result: undefined };
    });
  }

  async consumeRecoveryCode(user: string, hash: string): Promise<boolean> {
    return this.updateUser(user, (u) => {
      const i = u.recoveryCodes?.indexOf(hash) ?? -1;
      if (i < 0) return { changed: false, result: false };
      u.recoveryCodes!.splice(i, 1);
      if (u.recoveryCodes!.length === 0) delete u.recoveryCodes;
      return { changed: true, result: true };
    });
  }

  async countRecoveryCodes(user: string): Promise<number> {
    return this.read((d) => d.users.get(user)?.recoveryCodes?.length ?? 0);
  }

  // ---- app passwords

  async listAppPasswords(user: string): Promise<AppPasswordRecord[]> {
    return this.read((d) => clone(d.users.get(user)?.appPasswords ?? []));
  }

  async addAppPassword(user: string, rec: AppPasswordRecord): Promise<void> {
    const copy: AppPasswordRecord = { label: rec.label, hash: rec.hash, createdAt: rec.createdAt };
    if (rec.lastUsedAt !== undefined) copy.lastUsedAt = rec.lastUsedAt;
    await this.updateUser(user, (u) => {
      const list = u.appPasswords ?? [];
      if (list.some((p) => p.label === rec.label)) {
        throw new PortcullisError('PC_BAD_REQUEST', `an app password labelled "${rec.label}" already exists`);
      }
      if (list.length >= MAX_APP_PASSWORDS) {
        throw new PortcullisError('PC_BAD_REQUEST', `at most ${MAX_APP_PASSWORDS} app passwords per user`);
      }
      u.appPasswords = [...list, copy];
      return { changed: true, result: undefined };
    });
  }

  async revokeAppPassword(user: string, label: string): Promise<boolean> {
    return this.updateUser(user, (u) => {
      const list = u.appPasswords ?? [];
      const kept = list.filter((p) => p.label !== label);
      if (kept.length === list.length) return { changed: false, result: false };
      if (kept.length === 0) delete u.appPasswords;
      else u.appPasswords = kept;
      return { changed: true, result: true };
    });
  }

  // ---- passkeys

  async listPasskeys(user: string): Promise<PasskeyRecord[]> {
    return this.read((d) => clone(d.users.get(user)?.passkeys ?? []));
  }

  async addPasskey(user: string, rec: PasskeyRecord, max: number): Promise<boolean> {
    const copy = copyPasskey(rec);
    return this.updateUser(user, (u) => {
      const list = u.passkeys ?? [];
      if (list.length >= Math.min(max, MAX_PASSKEYS) || list.some((p) => p.id === rec.id)) return { changed: false, result: false };
      // one owner per credential id: passwordless sign-in finds the user by it
      if (this.ownerIn(this.data, rec.id) !== null) return { changed: false, result: false };
      u.passkeys = [...list, copy];
      return { changed: true, result: true };
    });
  }

  async passkeyOwner(id: string): Promise<string | null> {
    return this.read((d) => this.ownerIn(d, id));
  }

  /** A scan of the users in memory (each holds at most MAX_PASSKEYS): no index to keep in step. */
  private ownerIn(d: StateData, id: string): string | null {
    if (!id) return null;
    for (const [name, u] of d.users) if (u.passkeys?.some((p) => p.id === id)) return name;
    return null;
  }

  async usePasskey(user: string, id: string, counter: number, now: number): Promise<'ok' | 'cloned' | 'gone'> {
    return this.updateUser(user, (u) => {
      const p = u.passkeys?.find((x) => x.id === id);
      if (!p) return { changed: false, result: 'gone' as const };
      if ((p.counter > 0 || counter > 0) && counter <= p.counter) return { changed: false, result: 'cloned' as const };
      p.counter = counter;
      p.lastUsedAt = now;
      return { changed: true, result: 'ok' as const };
    });
  }

  async renamePasskey(user: string, id: string, name: string): Promise<boolean> {
    return this.updateUser(user, (u) => {
      const p = u.passkeys?.find((x) => x.id === id);
      if (!p) return { changed: false, result: false };
      p.name = name;
      return { changed: true, result: true };
    });
  }

  async removePasskey(user: string, id: string): Promise<boolean> {
    return this.updateUser(user, (u) => {
      const list = u.passkeys ?? [];
      const kept = list.filter((p) => p.id !== id);
      if (kept.length === list.length) return { changed: false, result: false };
      if (kept.length === 0) delete u.passkeys;
      else u.passkeys = kept;
      return { changed: true, result: true };
    });
  }

  // ---- known networks

  async knownNetworks(user: string): Promise<string[]> {
    return this.read((d) => [...(d.users.get(user)?.knownNetworks ?? [])]);
  }

  /**
   * Remember `key` as the user's most recently used network; true if it was not known.
   * A known network that is already the most recent costs no write.
   */
  async addKnownNetwork(user: string, key: string): Promise<boolean> {
    return this.updateUser(user, (u) => {
      const list = u.knownNetworks ?? [];
      const i = list.indexOf(key);
      if (i === list.length - 1 && i >= 0) return { changed: false, result: false };
      const next = list.filter((k) => k !== key);
      next.push(key);
      u.knownNetworks = next.slice(-MAX_KNOWN_NETWORKS);
      return { changed: true, result: i < 0 };
    });
  }

  // ---- lockdown

  async getLockdown(): Promise<{ on: boolean; since: number; by: string } | null> {
    return this.read((d) => clone(d.lockdown));
  }

  async setLockdown(state: { on: boolean; since: number; by: string }): Promise<void> {
    const lockdown: Lockdown = { on: state.on, since: state.since, by: state.by };
    await this.enqueue(async () => {
      await this.commit({ users: this.data.users, lockdown });
    });
  }

  async forgetUser(user: string): Promise<void> {
    await this.enqueue(async () => {
      if (!this.data.users.has(user)) return;
      const users = new Map(this.data.users);
      users.delete(user);
      await this.commit({ users, lockdown: this.data.lockdown });
    });
  }

  // ---- machinery

  private read<T>(fn: (d: StateData) => T): Promise<T> {
    return this.enqueue(async () => fn(this.data), false);
  }

  /**
   * Apply `fn` to a private copy of one user's record; persist and publish only if it reports
   * a change. A record left empty is removed.
   */
  private updateUser<T>(user: string, fn: (u: UserState) => { changed: boolean; result: T }): Promise<T> {
    return this.enqueue(async () => {
      const draft: UserState = clone(this.data.users.get(user) ?? {});
      const { changed, result } = fn(draft);
      if (!changed) return result;
      const users = new Map(this.data.users);
      if (isEmpty(draft)) users.delete(user);
      else users.set(user, draft);
      await this.commit({ users, lockdown: this.data.lockdown });
      return result;
    });
  }

  private enqueue<T>(op: () => Promise<T>, mutation = true): Promise<T> {
    const run = async (): Promise<T> => {
      if (this.closed) throw new PortcullisError('PC_STORE_UNAVAILABLE', 'the state store is closed');
      const now = this.clock.now();
      if (mutation || now - this.lastCheck >= this.recheckMs || now < this.lastCheck) {
        await this.refreshIfChanged();
        this.lastCheck = now;
      }
      return op();
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async refreshIfChanged(): Promise<void> {
    const sig = await signatureOf(this.file);
    if (sig === this.signature) return;
    const { data, signature } = await load(this.file);
    this.data = data;
    this.signature = signature;
  }

  /** Write `next` atomically, then make it the current state. */
  private async commit(next: StateData): Promise<void> {
    const text = serialise(next);
    const tmp = join(this.dir, `${STATE_FILE}.${process.pid}.${++this.seq}.tmp`);
    try {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(text, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.file);
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw new PortcullisError('PC_STORE_UNAVAILABLE', `cannot write ${this.file}: ${(e as Error).message}`, { cause: e });
    }
    await fsyncDir(this.dir);
    this.data = next;
    this.signature = await signatureOf(this.file);
  }
}

function isEmpty(u: UserState): boolean {
  return !u.totp && !u.recoveryCodes?.length && !u.appPasswords?.length && !u.knownNetworks?.length && !u.passkeys?.length;
}

function copyPasskey(p: PasskeyRecord): PasskeyRecord {
  const c: PasskeyRecord = { id: p.id, publicKey: p.publicKey, counter: p.counter, transports: [...p.transports], name: p.name, createdAt: p.createdAt };
  if (p.lastUsedAt !== undefined) c.lastUsedAt = p.lastUsedAt;
  return c;
}

function clone<T>(v: T): T {
  return v === null || v === undefined ? v : structuredClone(v);
}

async function signatureOf(file: string): Promise<string | null> {
  try {
    const s = await stat(file, { bigint: true });
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}`;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new PortcullisError('PC_STORE_UNAVAILABLE', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
}

async function fsyncDir(dir: string): Promise<void> {
  // Makes the rename durable. Not every platform can open a directory for sync (Windows):
  // there the rename itself is the best available.
  let fh;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // best effort
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** Temp files left by a process that died mid-write (their pid no longer runs). */
async function removeOrphanTempFiles(dir: string): Promise<void> {
  const re = new RegExp(`^${STATE_FILE.replace('.', '\\.')}\\.(\\d+)\\.\\d+\\.tmp$`);
  for (const name of await readdir(dir)) {
    const m = re.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid !== process.pid && processAlive(pid)) continue;
    await rm(join(dir, name), { force: true }).catch(() => undefined);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function load(file: string): Promise<{ data: StateData; signature: string | null }> {
  // stat before reading: if the file is replaced in between we see an old signature and read
  // again next time, never the reverse
  const signature = await signatureOf(file);
  if (signature === null) return { data: { users: new Map(), lockdown: null }, signature };
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { data: { users: new Map(), lockdown: null }, signature: null };
    throw new PortcullisError('PC_STORE_UNAVAILABLE', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw corrupt(file, `not valid JSON (${(e as Error).message})`);
  }
  return { data: parseState(raw, file), signature };
}

function corrupt(file: string, why: string): PortcullisError {
  return new PortcullisError(
    'PC_STORE_UNAVAILABLE',
    `${file} is damaged: ${why}; restore it from a backup (it is never replaced automatically)`,
  );
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStrArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

function parseState(raw: unknown, file: string): StateData {
  if (!isObj(raw)) throw corrupt(file, 'the top level is not an object');
  if (raw.version !== FORMAT_VERSION) throw corrupt(file, `unsupported format version ${JSON.stringify(raw.version)}`);
  const users = new Map<string, UserState>();
  if (!isObj(raw.users)) throw corrupt(file, '"users" is not an object');
  for (const [name, v] of Object.entries(raw.users)) {
    const at = `users[${JSON.stringify(name)}]`;
    if (!isObj(v)) throw corrupt(file, `${at} is not an object`);
    const u: UserState = {};
    if (v.totp !== undefined) {
      const t = v.totp;
      if (!isObj(t) || typeof t.secret !== 'string' || !isNum(t.enrolledAt) || (t.source !== 'enrolled' && t.source !== 'provisioned')) {
        throw corrupt(file, `${at}.totp is malformed`);
      }
      u.totp = { secret: t.secret, enrolledAt: t.enrolledAt, source: t.source };
    }
    if (v.recoveryCodes !== undefined) {
      if (!isStrArray(v.recoveryCodes)) throw corrupt(file, `${at}.recoveryCodes is malformed`);
      if (v.recoveryCodes.length) u.recoveryCodes = v.recoveryCodes.slice(0, MAX_RECOVERY_CODES);
    }
    if (v.appPasswords !== undefined) {
      if (!Array.isArray(v.appPasswords)) throw corrupt(file, `${at}.appPasswords is malformed`);
      const list: AppPasswordRecord[] = [];
      for (const p of v.appPasswords) {
        if (!isObj(p) || typeof p.label !== 'string' || typeof p.hash !== 'string' || !isNum(p.createdAt)) {
          throw corrupt(file, `${at}.appPasswords has a malformed entry`);
        }
        const rec: AppPasswordRecord = { label: p.label, hash: p.hash, createdAt: p.createdAt };
        if (p.lastUsedAt !== undefined) {
          if (!isNum(p.lastUsedAt)) throw corrupt(file, `${at}.appPasswords has a malformed entry`);
          rec.lastUsedAt = p.lastUsedAt;
        }
        list.push(rec);
      }
      if (list.length) u.appPasswords = list.slice(0, MAX_APP_PASSWORDS);
    }
    if (v.knownNetworks !== undefined) {
      if (!isStrArray(v.knownNetworks)) throw corrupt(file, `${at}.knownNetworks is malformed`);
      if (v.knownNetworks.length) u.knownNetworks = v.knownNetworks.slice(-MAX_KNOWN_NETWORKS);
    }
    if (v.passkeys !== undefined) {
      if (!Array.isArray(v.passkeys)) throw corrupt(file, `${at}.passkeys is malformed`);
      const list: PasskeyRecord[] = [];
      for (const p of v.passkeys) {
        if (
          !isObj(p) ||
          typeof p.id !== 'string' ||
          typeof p.publicKey !== 'string' ||
          !isNum(p.counter) ||
          !isStrArray(p.transports) ||
          typeof p.name !== 'string' ||
          !isNum(p.createdAt) ||
          (p.lastUsedAt !== undefined && !isNum(p.lastUsedAt))
        ) {
          throw corrupt(file, `${at}.passkeys has a malformed entry`);
        }
        list.push(copyPasskey(p as unknown as PasskeyRecord));
      }
      if (list.length) u.passkeys = list.slice(0, MAX_PASSKEYS);
    }
    if (!isEmpty(u)) users.set(name, u);
  }
  let lockdown: Lockdown | null = null;
  if (raw.lockdown !== undefined && raw.lockdown !== null) {
    const l = raw.lockdown;
    if (!isObj(l) || typeof l.on !== 'boolean' || !isNum(l.since) || typeof l.by !== 'string') {
      throw corrupt(file, '"lockdown" is malformed');
    }
    lockdown = { on: l.on, since: l.since, by: l.by };
  }
  return { users, lockdown };
}

function serialise(d: StateData): string {
  // Object.fromEntries defines own properties, so a user called "__proto__" is stored as data
  const users = Object.fromEntries([...d.users].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return `${JSON.stringify({ version: FORMAT_VERSION, lockdown: d.lockdown, users }, null, 2)}\n`;
}
