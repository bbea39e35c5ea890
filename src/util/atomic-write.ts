/**
 * Crash-safe file writes for the files portcullis owns or edits (users file, secret key,
 * assertion keys). A reader (or the gateway's file watcher) sees either the old content or
 * the new content, never a truncated mix, and the new content survives a power cut once the
 * call returns.
 *
 * The sequence: write a temporary file in the same directory (same filesystem, so `rename`
 * is atomic), fsync it, give it the mode (and, when running as root, the owner) of the file it
 * replaces, rename it over the target, then fsync the directory so the rename itself is durable.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { chown, link, lstat, open, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PortcullisError } from '../errors.js';

export interface AtomicWriteOptions {
  /** Mode for a file that does not exist yet (default 0600). An existing file keeps its mode. */
  mode?: number;
}

/** Replace `file` with `data` atomically; see the module comment. */
export async function writeFileAtomic(file: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): Promise<void> {
  const target = await resolveTarget(file);
  const existing = await stat(target).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
  const mode = existing ? existing.mode & 0o7777 : (opts.mode ?? 0o600);
  const tmp = tempNameFor(target);
  try {
    await writeAndSync(tmp, data, mode);
    // An admin running the CLI as root must not leave the gateway's own user unable to read
    // the file it replaced.
    if (existing && typeof process.getuid === 'function' && process.getuid() === 0) {
      await chown(tmp, existing.uid, existing.gid);
    }
    await rename(tmp, target);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await syncDir(dirname(target));
}

/**
 * Create `file` with `data` only if it does not exist yet, atomically: concurrent creators
 * (two workers starting at once) agree on one winner and nobody ever reads a half-written
 * file. Returns true if this call created the file, false if it already existed.
 */
export async function createFileExclusive(file: string, data: string | Uint8Array, mode = 0o600): Promise<boolean> {
  const tmp = tempNameFor(file);
  try {
    await writeAndSync(tmp, data, mode);
    // link(2) fails with EEXIST instead of replacing: the exclusive counterpart of rename.
    await link(tmp, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  await syncDir(dirname(file));
  return true;
}

/**
 * Refuse a secret file that others may read or write (as ssh does for private keys). The group
 * may read it (0640, never write) when root or this process's user owns it AND the group is one
 * this process belongs to: that is how Kubernetes mounts a Secret volume with `fsGroup`, and how
 * a root-owned key is shared with a service group. Group-readable by any other group (`users`,
 * say: every local account) or owned by anyone else is refused.
 * Skipped on Windows, where POSIX modes mean nothing.
 */
export async function assertPrivateFile(file: string): Promise<void> {
  if (process.platform === 'win32') return;
  const st = await stat(file);
  const me = typeof process.getuid === 'function' ? process.getuid() : -1;
  const groups = typeof process.getgroups === 'function' ? process.getgroups() : [];
  const ownGroup = (typeof process.getgid === 'function' && st.gid === process.getgid()) || groups.includes(st.gid);
  const trustedOwner = (st.uid === 0 || st.uid === me) && ownGroup;
  const allowed = trustedOwner ? 0o040 : 0;
  if ((st.mode & 0o077 & ~allowed) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    const fix = trustedOwner ? `chmod 600 ${file} (or 640)` : `chmod 600 ${file}, or give it to this user or root and a group of this process`;
    throw new PortcullisError('PC_CONFIG_INVALID', `${file} is accessible by group or others (mode ${mode}, owner uid ${st.uid}); run: ${fix}`);
  }
}

/** Write through a symlink to the file it points at, instead of replacing the link. */
async function resolveTarget(file: string): Promise<string> {
  try {
    const st = await lstat(file);
    return st.isSymbolicLink() ? await realpath(file) : file;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return file;
    throw e;
  }
}

function tempNameFor(file: string): string {
  return join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

async function writeAndSync(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const fh = await open(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, mode);
  try {
    // The umask may have cleared bits of an existing file's mode; set it exactly.
    await fh.chmod(mode);
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return; // directories cannot be opened for fsync there
  const fh = await open(dir, fsc.O_RDONLY);
  try {
    await fh.sync();
  } catch (e) {
    // Some filesystems (e.g. certain network mounts) refuse fsync on a directory.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EPERM') throw e;
  } finally {
    await fh.close();
  }
}
