/**
 * The code of one password-hashing thread of HashPool (hash-pool.ts). Never imported by the main
 * thread: the pool starts it with `new Worker(...)`, and only its types are shared.
 *
 * - At start the thread lowers its own scheduling priority (nice 19 by default). On Linux the nice
 *   value is an attribute of each thread, not of the process (setpriority(2), "BUGS"; libuv's
 *   uv_os_setpriority(0, ...) calls setpriority(PRIO_PROCESS, 0, ...), which names the calling
 *   thread), so the event loop keeps its priority and argon2 only gets the CPU time the event loop
 *   leaves. Elsewhere (macOS, Windows) the same call would lower the whole process, so it is not
 *   made there. The outcome, with the thread's kernel id and nice value read back from
 *   /proc/thread-self/stat, is the first message the thread sends.
 * - argon2 runs synchronously on this thread (`verifySync`/`hashSync`). The async variants would
 *   hand the work to the process-wide libuv pool, at normal priority, which is what this thread
 *   exists to avoid.
 * - Passwords arrive over the worker's MessagePort (structured clone, in memory), one job at a
 *   time, never in argv, env or workerData, and nothing here logs or echoes them: a failure is
 *   reported by the argon2 error's message alone.
 */
import { readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { hashSync, verifySync, type Options } from '@node-rs/argon2';

/** What the pool passes in `workerData`: nothing secret. */
export interface HashWorkerData {
  /** argon2 options for `hash` jobs (algorithm, version, costs). */
  options: Options;
  /** Nice value to set for this thread (0..19); null leaves the priority alone. */
  nice: number | null;
}

/** Pool -> thread: one job; the thread answers it before it reads the next. */
export type HashJob = { id: number; op: 'verify'; hash: string; password: string } | { id: number; op: 'hash'; password: string };

/** Thread -> pool. */
export type HashWorkerMessage =
  | {
      kind: 'ready';
      /** Kernel thread id (Linux), for checking /proc/<pid>/task/<tid>/stat from outside. */
      tid: number | null;
      /** This thread's nice value after start. */
      nice: number | null;
      /** Whether the priority was lowered as asked. */
      lowered: boolean;
      /** Why not, when it was asked for and not done. */
      reason?: string;
    }
  | { kind: 'done'; id: number; value: boolean | string }
  | { kind: 'failed'; id: number; message: string };

/** Kernel thread id and nice value from a /proc/.../stat line (fields 1 and 19 of proc(5)). */
export function parseStat(line: string): { tid: number; nice: number } | null {
  // the command name (field 2) is in parentheses and may itself contain spaces and parentheses
  const open = line.indexOf(' (');
  const close = line.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const rest = line.slice(close + 2).split(' ');
  const tid = Number(line.slice(0, open));
  const nice = Number(rest[16]); // rest[0] is field 3 (state)
  return Number.isInteger(tid) && Number.isInteger(nice) ? { tid, nice } : null;
}

function threadStat(): { tid: number; nice: number } | null {
  try {
    return parseStat(readFileSync('/proc/thread-self/stat', 'latin1'));
  } catch {
    return null;
  }
}

function lowerPriority(nice: number | null): Extract<HashWorkerMessage, { kind: 'ready' }> {
  const before = threadStat();
  if (nice === null) return { kind: 'ready', tid: before?.tid ?? null, nice: before?.nice ?? null, lowered: false };
  if (process.platform !== 'linux') {
    return { kind: 'ready', tid: null, nice: null, lowered: false, reason: `on ${process.platform} a nice value applies to the whole process, not to one thread` };
  }
  try {
    setPriority(0, nice);
  } catch (e) {
    return { kind: 'ready', tid: before?.tid ?? null, nice: before?.nice ?? null, lowered: false, reason: (e as Error).message };
  }
  const after = threadStat();
  const now = after?.nice ?? getPriority(0);
  return { kind: 'ready', tid: after?.tid ?? null, nice: now, lowered: now === nice, ...(now === nice ? {} : { reason: `the nice value is ${now} after setting ${nice}` }) };
}

function run(job: HashJob, options: Options): HashWorkerMessage {
  if (job.op === 'verify') {
    try {
      return { kind: 'done', id: job.id, value: verifySync(job.hash, job.password) };
    } catch {
      // a hash argon2 cannot parse matches no password (the caller screens them first anyway)
      return { kind: 'done', id: job.id, value: false };
    }
  }
  try {
    return { kind: 'done', id: job.id, value: hashSync(job.password, options) };
  } catch (e) {
    return { kind: 'failed', id: job.id, message: e instanceof Error ? e.message : 'argon2 failed' };
  }
}

if (parentPort) {
  const port = parentPort;
  const data = workerData as HashWorkerData;
  port.postMessage(lowerPriority(data.nice));
  port.on('message', (job: HashJob) => port.postMessage(run(job, data.options)));
}
