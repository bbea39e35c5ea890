/**
 * Clear messages for "cannot write here" (a read-only configuration directory in a container, a
 * data volume owned by someone else) instead of a bare `EACCES: permission denied, mkdir ...`.
 */
import { constants as fsConstants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';

const UNWRITABLE = new Set(['EACCES', 'EPERM', 'EROFS']);

/** True for the errors that mean "this process may not write there". */
export function isUnwritable(e: unknown): e is NodeJS.ErrnoException {
  return typeof e === 'object' && e !== null && UNWRITABLE.has((e as NodeJS.ErrnoException).code ?? '');
}

function who(): string {
  return typeof process.getuid === 'function' ? ` (uid ${process.getuid()}, gid ${process.getgid!()})` : '';
}

/** `<what> <path>: read-only file system (EROFS) for this process (uid 10001, gid 10001). <hint>` */
export function unwritableMessage(e: NodeJS.ErrnoException, what: string, path: string, hint: string): string {
  const why = e.code === 'EROFS' ? 'the file system is read-only' : 'permission denied';
  const at = e.path && e.path !== path ? ` at ${e.path}` : '';
  return `${what} ${path} cannot be written: ${why} (${e.code}${at}) for this process${who()}. ${hint}`;
}

/** Create `dir` if needed (0700) and check this process may write in it; throws a clear Error if not. */
export async function ensureWritableDir(dir: string, what: string, hint: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await access(dir, fsConstants.W_OK | fsConstants.X_OK);
  } catch (e) {
    if (isUnwritable(e)) throw new Error(unwritableMessage(e, what, dir, hint), { cause: e });
    throw e;
  }
}

/**
 * What to do when the users file cannot be created or edited where the config puts it (typically a
 * read-only configuration directory: a ConfigMap, a `:ro` mount).
 */
export function usersFileHint(cfg: { dataDir: string; usersFile: string }): string {
  const inData = join(cfg.dataDir, 'users.yaml');
  return cfg.usersFile === inData
    ? 'Make data_dir writable by this user.'
    : `With a read-only configuration directory, keep the users file under data_dir: set \`users_file: ${inData}\` (and move an existing file there).`;
}
