/**
 * A fixed set of worker threads that run argon2id at lowered priority, so that a login flood
 * spends the CPU time signed-in users leave over instead of taking it from them.
 *
 * Why threads of our own rather than the libuv pool (what `@node-rs/argon2`'s async functions
 * use): the libuv pool runs at the event loop's priority and is shared with file I/O (the audit
 * log, the state files). Measured on a 2-core machine under a 500 logins/s flood: 4 verifications
 * at a time on the libuv pool left signed-in users 0.04-0.17x of their throughput; 4 of these
 * threads at nice 19 left them 0.85x, and verified as many passwords per second.
 *
 * - The pool has exactly `size` threads (the hash budget, `login_limits.hash_concurrency`) and
 *   never queues: a job that finds no idle thread is refused at once with PC_BUSY, the same
 *   contract as HashBudget, which admits at most `size` verifications in the first place. The
 *   pool's own refusal only matters for work outside the budget (hashing a new password).
 * - Each thread lowers its own priority at start (see hash-worker.ts for why that is per thread on
 *   Linux only). If it cannot, the pool logs that once and carries on at normal priority.
 * - A thread that dies (an uncaught error, running out of its heap, being terminated) is replaced
 *   at once, and the job it was running fails closed with PC_BUSY: the caller answers "busy, try
 *   again" (503) and no session is granted. Not `false`: that would tell a user who typed the right
 *   password that it was wrong and count a failure towards locking them out, for a fault of ours.
 *   A thread that dies before it is ready is restarted with a growing delay, so a thread that
 *   cannot start (a missing native binding) does not spin.
 * - Threads are unref'd while idle, so they never keep the process alive, and ref'd while they
 *   start or run a job, so an awaited start or job is never abandoned by an exiting process.
 *   `close()` ends them.
 * - Passwords go to a thread over its MessagePort (structured clone, in memory), never in argv,
 *   env or workerData. Threads get an empty env and no execArgv (so `--cpu-prof` and the like stay
 *   with the main thread).
 */
import { getPriority } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Options } from '@node-rs/argon2';
import { PortcullisError } from '../errors.js';
import type { HashJob, HashWorkerData, HashWorkerMessage } from './hash-worker.js';

/** Where the pool reports what an operator should know. Passwords never reach it. */
export interface HashPoolLog {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface HashPoolOptions {
  /** Threads, and so jobs at once (1..1024). */
  size: number;
  /** argon2 options for `hash` jobs. */
  options: Options;
  /** Nice value each thread sets for itself at start, 0..19 (default 19, the lowest priority); null: leave it. */
  nice?: number | null;
  log?: HashPoolLog;
  /** The thread's module (default: hash-worker.js beside this file). Tests substitute one that misbehaves. */
  workerUrl?: URL;
}

/** What a started thread reported about itself. */
export interface HashThreadInfo {
  /** Worker threadId (per process). */
  threadId: number;
  /** Kernel thread id, where /proc says (Linux). */
  tid: number | null;
  /** The thread's nice value, where known. */
  nice: number | null;
  lowered: boolean;
}

interface Pending {
  id: number;
  resolve: (value: boolean | string) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker | null;
  job: Pending | null;
  info: HashThreadInfo | null;
  /** Consecutive deaths before becoming ready: drives the restart delay. */
  startFailures: number;
  restart: NodeJS.Timeout | null;
}

const DEFAULT_WORKER = new URL('./hash-worker.js', import.meta.url);
/** First restart delay after a thread dies before it is ready; doubles up to RESTART_MAX_MS. */
const RESTART_MIN_MS = 250;
const RESTART_MAX_MS = 30_000;

function busy(reason: string, cause?: unknown): PortcullisError {
  return new PortcullisError('PC_BUSY', reason, cause === undefined || cause === null ? undefined : { cause });
}

export class HashPool {
  readonly size: number;
  private readonly options: Options;
  private readonly nice: number | null;
  private readonly log: HashPoolLog | null;
  private readonly workerUrl: URL;
  private readonly slots: Slot[] = [];
  private started = false;
  private closed = false;
  private nextId = 1;
  private replacedTotal = 0;
  private warnedPriority = false;
  /** The main thread's nice value before any thread started: a thread must not change it. */
  private readonly mainNice: number | null;
  private firstReady: Promise<HashThreadInfo[]> | null = null;
  private readyWaiters: Array<{ slot: Slot; resolve: (i: HashThreadInfo) => void; reject: (e: Error) => void }> = [];

  constructor(o: HashPoolOptions) {
    if (!Number.isSafeInteger(o.size) || o.size < 1 || o.size > 1024) {
      throw new PortcullisError('PC_CONFIG_INVALID', `the hash pool size must be an integer from 1 to 1024, got ${o.size}`);
    }
    const nice = o.nice === undefined ? 19 : o.nice;
    if (nice !== null && (!Number.isInteger(nice) || nice < 0 || nice > 19)) {
      throw new PortcullisError('PC_CONFIG_INVALID', `the hash threads' nice value must be an integer from 0 to 19, got ${nice}`);
    }
    this.size = o.size;
    this.options = { ...o.options };
    this.nice = nice;
    this.log = o.log ?? null;
    this.workerUrl = o.workerUrl ?? DEFAULT_WORKER;
    this.mainNice = safeGetPriority();
  }

  /** Jobs running now. */
  get busy(): number {
    return this.slots.reduce((n, s) => n + (s.job ? 1 : 0), 0);
  }

  /** Threads replaced since start because one died. */
  get replaced(): number {
    return this.replacedTotal;
  }

  /** What each live, started thread reported (for diagnostics and tests). */
  get threads(): HashThreadInfo[] {
    return this.slots.flatMap((s) => (s.worker && s.info ? [s.info] : []));
  }

  /**
   * Start the threads (once) and wait until each has reported in. Rejects with PC_BUSY if a
   * thread dies before it is ready (it is still restarted in the background); a server awaits this at start
   * so that a thread that cannot run argon2 is found then, not at the first login.
   */
  ready(): Promise<HashThreadInfo[]> {
    if (this.closed) return Promise.reject(busy('the password hashing threads are closed'));
    this.start();
    if (!this.firstReady) {
      this.firstReady = Promise.all(
        this.slots.map((slot) =>
          slot.info ? Promise.resolve(slot.info) : new Promise<HashThreadInfo>((resolve, reject) => this.readyWaiters.push({ slot, resolve, reject })),
        ),
      );
      // a caller may never await it (its failure is also logged where it happens); after a
      // failure the next call waits for the threads restarted since
      this.firstReady.catch(() => {
        this.firstReady = null;
      });
    }
    return this.firstReady;
  }

  /** True if `password` matches `hash`; a hash argon2 cannot parse matches nothing. PC_BUSY when no thread is free or the thread died. */
  async verify(hash: string, password: string): Promise<boolean> {
    const v = await this.run((id) => ({ id, op: 'verify', hash, password }));
    if (typeof v !== 'boolean') throw new PortcullisError('PC_INTERNAL', 'the password hashing thread answered out of protocol');
    return v;
  }

  /** A new argon2 hash of `password` with the pool's options. PC_BUSY when no thread is free or the thread died. */
  async hash(password: string): Promise<string> {
    const v = await this.run((id) => ({ id, op: 'hash', password }));
    if (typeof v !== 'string') throw new PortcullisError('PC_INTERNAL', 'the password hashing thread answered out of protocol');
    return v;
  }

  /** End every thread. Jobs still running fail with PC_BUSY; later calls too. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const ending: Array<Promise<number>> = [];
    for (const s of this.slots) {
      if (s.restart) clearTimeout(s.restart);
      s.restart = null;
      if (s.worker) ending.push(s.worker.terminate());
    }
    await Promise.all(ending);
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    for (let i = 0; i < this.size; i++) {
      const slot: Slot = { worker: null, job: null, info: null, startFailures: 0, restart: null };
      this.slots.push(slot);
      this.spawn(slot);
    }
  }

  private run(make: (id: number) => HashJob): Promise<boolean | string> {
    if (this.closed) return Promise.reject(busy('the password hashing threads are closed'));
    this.start();
    // a thread that has reported in, else one still starting (the job waits in its port)
    let slot: Slot | undefined;
    for (const s of this.slots) {
      if (!s.worker || s.job) continue;
      if (s.info) {
        slot = s;
        break;
      }
      slot ??= s;
    }
    if (!slot) return Promise.reject(busy('every password hashing thread is busy'));
    const worker = slot.worker!;
    const job = make(this.nextId++);
    return new Promise<boolean | string>((resolve, reject) => {
      slot.job = { id: job.id, resolve, reject };
      worker.ref();
      worker.postMessage(job);
    });
  }

  private spawn(slot: Slot): void {
    slot.restart = null;
    slot.info = null;
    const data: HashWorkerData = { options: this.options, nice: this.nice };
    let worker: Worker;
    try {
      worker = new Worker(this.workerUrl, {
        workerData: data,
        argv: [],
        execArgv: [],
        env: {},
        stdin: false,
        // small strings only: the argon2 memory is native, outside the V8 heap
        resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 8 },
      });
    } catch (err) {
      this.died(slot, null, err);
      return;
    }
    slot.worker = worker;
    let lastError: unknown = null;
    worker.on('message', (m: HashWorkerMessage) => this.onMessage(slot, worker, m));
    worker.on('error', (err) => {
      lastError = err;
    });
    worker.on('messageerror', (err) => {
      // an answer that cannot be read would leave its job waiting for ever: end the thread
      lastError = err;
      void worker.terminate();
    });
    worker.on('exit', (code) => {
      if (slot.worker !== worker) return;
      this.died(slot, code, lastError);
    });
    // ref'd until it reports in (someone may be awaiting ready()), then only while it has a job
  }

  private onMessage(slot: Slot, worker: Worker, m: HashWorkerMessage): void {
    if (slot.worker !== worker) return;
    if (m.kind === 'ready') {
      slot.info = { threadId: worker.threadId, tid: m.tid, nice: m.nice, lowered: m.lowered };
      slot.startFailures = 0;
      if (!slot.job) worker.unref();
      if (this.nice !== null && !m.lowered && !this.warnedPriority) {
        this.warnedPriority = true;
        this.log?.warn({ reason: m.reason ?? 'unknown', nice: m.nice }, 'password hashing threads run at normal priority: a login flood will slow signed-in requests down more');
      }
      const mine = safeGetPriority();
      if (this.mainNice !== null && mine !== null && mine !== this.mainNice) {
        this.log?.error({ before: this.mainNice, now: mine }, "a password hashing thread changed the main thread's priority");
      }
      this.settleReady(slot, null);
      return;
    }
    const job = slot.job;
    if (!job || job.id !== m.id) {
      // never happens with hash-worker.js; a thread that does this is not to be trusted with the next job
      this.log?.error({ threadId: worker.threadId }, 'a password hashing thread answered a job it was not given; replacing it');
      void worker.terminate();
      return;
    }
    slot.job = null;
    worker.unref();
    if (m.kind === 'done') job.resolve(m.value);
    else job.reject(new PortcullisError('PC_INTERNAL', `argon2: ${m.message}`));
  }

  private died(slot: Slot, code: number | null, err: unknown): void {
    const job = slot.job;
    const wasReady = slot.info !== null;
    const threadId = slot.info?.threadId;
    slot.worker = null;
    slot.job = null;
    slot.info = null;
    const why = err instanceof Error ? err.message : code === null ? 'it could not be started' : `exit code ${code}`;
    if (!this.closed) {
      if (wasReady) {
        this.replacedTotal++;
        this.log?.error({ threadId, reason: why, jobLost: job !== null }, 'a password hashing thread died; replacing it');
        this.spawn(slot);
      } else {
        slot.startFailures++;
        const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (slot.startFailures - 1));
        this.log?.error({ reason: why, attempts: slot.startFailures, retryMs: delay }, 'a password hashing thread failed to start; retrying');
        slot.restart = setTimeout(() => {
          this.replacedTotal++;
          this.spawn(slot);
        }, delay);
        slot.restart.unref();
      }
    }
    if (!wasReady) this.settleReady(slot, busy(this.closed ? 'the password hashing threads are closed' : `a password hashing thread failed to start: ${why}`, err));
    // fail closed: nobody learns whether the password was right, and no session follows
    job?.reject(busy(this.closed ? 'the password hashing threads are closed' : 'the password hashing thread stopped', err));
  }

  private settleReady(slot: Slot, err: Error | null): void {
    const keep: typeof this.readyWaiters = [];
    for (const w of this.readyWaiters) {
      if (w.slot !== slot) keep.push(w);
      else if (err) w.reject(err);
      else w.resolve(slot.info!);
    }
    this.readyWaiters = keep;
  }
}

function safeGetPriority(): number | null {
  try {
    return getPriority(0);
  } catch {
    return null;
  }
}
