/**
 * Lockdown: one switch that shuts remote access down without stopping the service.
 *
 * While it is on, the gate refuses every request from outside `lockdown.networks` (default:
 * nobody) before looking at anything else. Turning it on also ends every session and closes every
 * open connection (WebSockets, including those that came in on a bypass rule or with an app
 * password), so nothing opened before the switch outlives it. The state is saved in the state
 * store, so a restart (or, with Redis, every other instance) keeps it; turning it off restores
 * access, though every user signs in again.
 *
 * Order matters. Turning on takes effect in memory first and is saved afterwards: if the store
 * fails, this instance is still locked down and the caller is told the state was not saved.
 * Turning off is saved first and takes effect only then: if the store fails, lockdown stays on.
 *
 * Unknown means on. An instance that cannot read the saved state at start (the store is down)
 * cannot know whether an admin turned lockdown on, so it behaves as if lockdown were on (only
 * `lockdown.networks` reach apps) until the state has been read, retrying in the background
 * (`watchLockdownState`), or until an admin sets it here.
 */
import { PortcullisError } from '../errors.js';
import type { LiveConnection, LockdownState, Runtime } from '../runtime.js';

export interface LockdownChange {
  state: LockdownState;
  /** False when lockdown was already in the requested state. */
  changed: boolean;
  sessionsRevoked: number;
  connectionsClosed: number;
}

export interface LockdownStatus extends LockdownState {
  /** Network names (and CIDRs) that may still reach apps while it is on. */
  networks: string[];
}

/** Close the live connections `filter` selects; returns how many. */
export function closeLiveConnections(rt: Runtime, filter: (c: LiveConnection) => boolean, reason: string): number {
  let n = 0;
  for (const c of [...rt.live]) {
    if (!filter(c)) continue;
    closeOne(rt, c, reason);
    n++;
  }
  return n;
}

function closeOne(rt: Runtime, c: LiveConnection, reason: string): void {
  if (!rt.live.delete(c)) return;
  try {
    c.close(reason);
  } catch {
    // a connection that fails to close is already gone
  }
}

/**
 * Run `op` (which revokes sessions), then close every live connection `filter` selects, whether
 * it was open before `op` or opened meanwhile. The store's revocation listener may close some of
 * them during `op`; they are counted all the same. They are closed even if `op` fails.
 */
export async function revokeAndClose<T>(
  rt: Runtime,
  filter: (c: LiveConnection) => boolean,
  reason: string,
  op: () => Promise<T>,
): Promise<{ result: T; connectionsClosed: number }> {
  const doomed = new Set([...rt.live].filter(filter));
  try {
    const result = await op();
    return { result, connectionsClosed: sweep() };
  } catch (e) {
    sweep();
    throw e;
  }
  function sweep(): number {
    for (const c of rt.live) if (filter(c)) doomed.add(c);
    for (const c of doomed) closeOne(rt, c, reason);
    return doomed.size;
  }
}

export function lockdownStatus(rt: Runtime): LockdownStatus {
  const l = rt.lockdown;
  return { on: l.on, since: l.since, by: l.by, networks: [...rt.config.lockdown.networkNames] };
}

/** Who is shown as having turned lockdown on while its saved state could not be read yet. */
export const LOCKDOWN_UNKNOWN_BY = 'unknown: the saved lockdown state could not be read yet (assumed on)';

/** Runtimes whose lockdown state is assumed on because it could not be read, and their retry timer. */
const unknown = new WeakMap<Runtime, { timer: NodeJS.Timeout | null }>();

/** Whether `rt`'s lockdown is on only because its saved state could not be read yet. */
export function lockdownUnknown(rt: Runtime): boolean {
  return unknown.has(rt);
}

/** The state is known from now on: stop assuming, stop retrying. */
function known(rt: Runtime): void {
  const u = unknown.get(rt);
  if (!u) return;
  unknown.delete(rt);
  if (u.timer) clearTimeout(u.timer);
}

export interface LockdownWatch {
  /** Stop retrying (Gateway.close). */
  stop(): void;
}

/**
 * Read the saved lockdown state and apply it. If it cannot be read, lockdown is on in this
 * instance (logged as an error) and the read is retried every `retryMs` (default 2 s) until it
 * succeeds, or until an admin turns lockdown on or off here, or another instance's change arrives.
 */
export async function watchLockdownState(rt: Runtime, opts: { retryMs?: number } = {}): Promise<LockdownWatch> {
  const retryMs = opts.retryMs ?? 2_000;
  let stopped = false;
  const attempt = async (first: boolean): Promise<void> => {
    let state: LockdownState | null;
    try {
      state = await rt.stores.state.getLockdown();
    } catch (err) {
      if (stopped) return;
      if (first) {
        // off (the default before any read) may be wrong: assume on; an on read earlier stays
        if (!rt.lockdown.on) rt.lockdown = { on: true, since: rt.clock.now(), by: LOCKDOWN_UNKNOWN_BY };
        unknown.set(rt, { timer: null });
        rt.logger.error(
          { err: (err as Error).message, networks: rt.config.lockdown.networkNames },
          'the saved lockdown state cannot be read (the state store is unavailable): lockdown is assumed ON until it can be; only lockdown.networks reach apps',
        );
      }
      // known meanwhile (an admin set it here, or another instance's change arrived): done
      const u = unknown.get(rt);
      if (!u) return;
      u.timer = setTimeout(() => void attempt(false), retryMs);
      u.timer.unref();
      return;
    }
    if (stopped) return;
    // an admin may have set the state here meanwhile: that is newer than what was read
    if (!first && !unknown.has(rt)) return;
    const wasUnknown = unknown.has(rt);
    known(rt);
    rt.lockdown = state ? { on: state.on, since: state.since, by: state.by } : { on: false, since: 0, by: '' };
    if (wasUnknown) rt.logger.warn({ on: rt.lockdown.on, by: rt.lockdown.by }, `the saved lockdown state has been read: lockdown is ${rt.lockdown.on ? 'on' : 'off'}`);
  };
  await attempt(true);
  return {
    stop() {
      stopped = true;
      known(rt);
    },
  };
}

/** Changes to one runtime's lockdown are applied one at a time, in the order requested. */
const queues = new WeakMap<Runtime, Promise<unknown>>();

function serialised<T>(rt: Runtime, op: () => Promise<T>): Promise<T> {
  const prev = queues.get(rt) ?? Promise.resolve();
  const p = prev.then(op, op);
  queues.set(rt, p.catch(() => undefined));
  return p;
}

/**
 * Turn lockdown on or off. `by` says who (e.g. `cli:alice`); `ip` is the admin's address for the
 * audit record. Turning on always revokes every session and closes every connection, even when
 * lockdown was already on: it is the button an admin presses when something is wrong.
 */
export function setLockdown(rt: Runtime, on: boolean, by: string, opts: { ip?: string } = {}): Promise<LockdownChange> {
  return serialised(rt, () => (on ? turnOn(rt, by, opts.ip ?? '-') : turnOff(rt, by, opts.ip ?? '-')));
}

async function turnOn(rt: Runtime, by: string, ip: string): Promise<LockdownChange> {
  const prev = rt.lockdown;
  // an assumed (unknown) state is not saved as if an admin had set it
  const changed = !prev.on || lockdownUnknown(rt);
  const state: LockdownState = changed ? { on: true, since: rt.clock.now(), by } : prev;
  rt.lockdown = state; // the gate refuses from this instant
  known(rt); // an admin's word: not to be replaced by a state read later

  const failures: string[] = [];
  let cause: unknown;
  try {
    await rt.stores.state.setLockdown(state);
  } catch (e) {
    failures.push('the lockdown state could not be saved, so it will not survive a restart');
    cause = e;
  }
  let sessionsRevoked = 0;
  const { connectionsClosed } = await revokeAndClose(rt, () => true, 'lockdown', async () => {
    try {
      sessionsRevoked = await rt.stores.sessions.deleteAll();
    } catch (e) {
      failures.push('sessions could not be revoked (they cannot reach apps from outside the lockdown networks meanwhile)');
      cause ??= e;
    }
  });

  if (changed) rt.audit.record({ event: 'lockdown_changed', ip, outcome: 'success', reason: `on by ${by}` });
  if (sessionsRevoked > 0 || connectionsClosed > 0) {
    rt.audit.record({
      event: 'session_revoked',
      ip,
      outcome: 'info',
      reason: `lockdown: ${sessionsRevoked} session(s) revoked, ${connectionsClosed} connection(s) closed`,
    });
  }
  rt.logger.warn({ by, sessionsRevoked, connectionsClosed, networks: rt.config.lockdown.networkNames }, 'lockdown is on');
  if (failures.length > 0) {
    rt.logger.error({ err: (cause as Error | undefined)?.message }, `lockdown is on in this instance, but ${failures.join('; ')}`);
    throw new PortcullisError('PC_STORE_UNAVAILABLE', `lockdown is on in this instance, but ${failures.join('; ')}`, { cause });
  }
  return { state, changed, sessionsRevoked, connectionsClosed };
}

async function turnOff(rt: Runtime, by: string, ip: string): Promise<LockdownChange> {
  const prev = rt.lockdown;
  const changed = prev.on;
  const state: LockdownState = changed ? { on: false, since: rt.clock.now(), by } : prev;
  try {
    await rt.stores.state.setLockdown(state);
  } catch (e) {
    throw new PortcullisError('PC_STORE_UNAVAILABLE', 'the lockdown state could not be saved; lockdown stays on', { cause: e });
  }
  known(rt);
  rt.lockdown = state;
  if (changed) {
    rt.audit.record({ event: 'lockdown_changed', ip, outcome: 'success', reason: `off by ${by}` });
    rt.logger.warn({ by }, 'lockdown is off');
  }
  return { state, changed, sessionsRevoked: 0, connectionsClosed: 0 };
}

/**
 * Follow lockdown changes made by other instances sharing the store: apply them here, and close
 * this instance's live connections when lockdown comes on (the sessions themselves are revoked
 * by the instance that turned it on). A no-op for stores that do not broadcast.
 */
export function followLockdown(rt: Runtime): void {
  if (!rt.stores.onLockdown) return;
  rt.stores.onLockdown((s) => {
    known(rt); // a state read from the store: no longer assumed
    const was = rt.lockdown;
    if (was.on === s.on && was.since === s.since && was.by === s.by) return;
    rt.lockdown = { on: s.on, since: s.since, by: s.by };
    if (s.on && !was.on) closeLiveConnections(rt, () => true, 'lockdown');
    rt.logger.warn({ on: s.on, by: s.by }, 'lockdown changed by another instance');
  });
}
