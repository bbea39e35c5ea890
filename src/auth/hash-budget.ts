/**
 * A bound on concurrent password verifications. argon2id is deliberately expensive in memory
 * and CPU; an unbounded number of them in flight is the cheapest way to take the gateway down.
 * Past the bound a request fails at once with PC_BUSY (503) instead of queueing: a queue would
 * only turn a flood into latency for everyone and memory held per waiting request.
 *
 * A server's PasswordHasher has exactly `max` hashing threads (hash-pool.ts), so a verification
 * this budget admits always finds a thread: the pool's own PC_BUSY only concerns work outside the
 * budget (hashing a new password) or the moment a dead thread is being replaced.
 */
import { PortcullisError } from '../errors.js';

export class HashBudget {
  readonly max: number;
  private running = 0;
  private rejectedTotal = 0;
  private completedTotal = 0;

  constructor(max: number) {
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new PortcullisError('PC_CONFIG_INVALID', `the hash budget must be a positive integer, got ${max}`);
    }
    this.max = max;
  }

  /** Verifications running now. */
  get inFlight(): number {
    return this.running;
  }

  /** Verifications refused since start because the budget was spent. */
  get rejected(): number {
    return this.rejectedTotal;
  }

  /** Verifications finished (successfully or not) since start. */
  get completed(): number {
    return this.completedTotal;
  }

  /**
   * Take a slot now (null when the budget is spent); call the returned function once to give it
   * back. Lets a caller hold the slot before it reserves an attempt in the login throttle, so a
   * reserved attempt never has to be taken back for lack of a thread.
   */
  tryAcquire(): (() => void) | null {
    if (this.running >= this.max) {
      this.rejectedTotal++;
      return null;
    }
    this.running++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running--;
      this.completedTotal++;
    };
  }

  /** Run `fn` if a slot is free, else throw PortcullisError('PC_BUSY') without calling it. */
  async tryRun<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) {
      this.rejectedTotal++;
      throw new PortcullisError('PC_BUSY');
    }
    this.running++;
    try {
      return await fn();
    } finally {
      this.running--;
      this.completedTotal++;
    }
  }
}
