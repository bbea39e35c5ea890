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
  const changed = !prev.on;
  const state: LockdownState = changed ? { on: true, since: rt.clock.now(), by } : prev;
  rt.lockdown = state; // the gate refuses from this instant

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
  rt.lockdown = state;
  if (changed) {
    rt.audit.record({ event: 'lockdown_changed', ip, outcome: 'success', reason: `off by ${by}` });
    rt.logger.warn({ by }, 'lockdown is off');
  }
  return { state, changed, sessionsRevoked: 0, connectionsClosed: 0 };
}

/** A store that broadcasts lockdown changes made elsewhere (Redis: other instances). */
interface LockdownBroadcaster {
  onLockdown(listener: (state: LockdownState) => void): void;
}

function broadcasts(stores: unknown): stores is LockdownBroadcaster {
  return typeof (stores as Partial<LockdownBroadcaster>).onLockdown === 'function';
}

/**
 * Follow lockdown changes made by other instances sharing the store: apply them here, and close
 * this instance's live connections when lockdown comes on (the sessions themselves are revoked
 * by the instance that turned it on). A no-op for stores that do not broadcast.
 */
export function followLockdown(rt: Runtime): void {
  if (!broadcasts(rt.stores)) return;
  rt.stores.onLockdown((s) => {
    const was = rt.lockdown;
    if (was.on === s.on && was.since === s.since && was.by === s.by) return;
    rt.lockdown = { on: s.on, since: s.since, by: s.by };
    if (s.on && !was.on) closeLiveConnections(rt, () => true, 'lockdown');
    rt.logger.warn({ on: s.on, by: s.by }, 'lockdown changed by another instance');
  });
}
