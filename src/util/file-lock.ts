/**
 * An advisory lock between processes editing one file (the CLI, the console, the portal): a
 * `FILE.lock` created with O_EXCL next to it.
 */
import { link, open, rename, stat, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { PortcullisError } from '../errors.js';

const LOCK_STALE_MS = 30_000;

/**
 * Run `f` holding `FILE.lock`, created with O_EXCL. A lock older than 30 s was left by a process
 * that died (an edit takes milliseconds) and is broken: moved aside by rename, so that of two
 * processes breaking it at once only one succeeds, and put back if it turns out to be a fresh
 * lock taken in between. Wall-clock time on purpose: this coordinates processes.
 */
export async function withLock<T>(file: string, waitMs: number, f: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`;
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const fh = await open(lock, 'wx', 0o600);
      try {
        await fh.writeFile(`${process.pid}\n`);
      } finally {
        await fh.close();
      }
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const st = await stat(lock).catch(() => null);
      if (st && Date.now() - st.mtimeMs > LOCK_STALE_MS) {
        await breakStaleLock(lock, st.ino);
        continue;
      }
      if (Date.now() > deadline) {
        throw new PortcullisError('PC_BUSY', `${file} is being edited by another process (lock file ${lock}); try again`);
      }
      await sleep(20 + Math.floor(Math.random() * 40));
    }
  }
  try {
    return await f();
  } finally {
    await unlink(lock).catch(() => undefined);
  }
}

async function breakStaleLock(lock: string, staleIno: number): Promise<void> {
  const aside = `${lock}.${process.pid}.${randomBytes(4).toString('hex')}.stale`;
  try {
    await rename(lock, aside);
  } catch {
    return; // someone else broke it first
  }
  const st = await stat(aside).catch(() => null);
  if (st && st.ino !== staleIno) {
    // a live lock was taken between our stat and rename: give it back (fails if yet another exists)
    await link(aside, lock).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
}

