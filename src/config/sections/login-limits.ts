/** `login_limits`: the throttles' counts and windows. */
import { availableParallelism } from 'node:os';
import { opt, type Fields, type Reader, type Val } from '../reader.js';
import { IPV6_PREFIX_MIN } from '../types.js';
import { defaultInt, defaultMs, schemaAt } from '../schema.js';
import type { LoginLimits } from '../types.js';

/** Counts the stores track exactly (distinct members are capped at 1000 per key in memory). */
export const MAX_COUNT = 1000;

export function compileLoginLimits(r: Reader, v: Val | undefined): LoginLimits {
  const ms = (k: string) => defaultMs(`login_limits.${k}`);
  const n = (k: string) => defaultInt(`login_limits.${k}`);
  const d: LoginLimits = {
    perIp: { maxFailures: n('per_ip.max_failures'), windowMs: ms('per_ip.window'), blockMs: ms('per_ip.block') },
    perUser: {
      maxFailures: n('per_user.max_failures'),
      windowMs: ms('per_user.window'),
      lockoutMs: ms('per_user.lockout'),
      ceiling: { maxFailures: n('per_user.ceiling.max_failures'), windowMs: ms('per_user.ceiling.window') },
    },
    spray: { distinctUsers: n('spray.distinct_users'), windowMs: ms('spray.window'), blockMs: ms('spray.block') },
    samePassword: { accounts: n('same_password.accounts'), windowMs: ms('same_password.window'), blockMs: ms('same_password.block') },
    mfa: { maxFailures: n('mfa.max_failures'), windowMs: ms('mfa.window') },
    ipv6Prefix: n('ipv6_prefix'),
    // One hashing thread per slot, at the lowest priority (src/auth/hash-pool.ts): they only get
    // CPU time the event loop leaves, so more threads than cores add memory (64 MiB each in
    // flight), not speed, and on a 2-core machine 1, 2 and 4 threads measured the same under a
    // login flood. At least 2, so that two people signing in at the same moment are not refused.
    maxConcurrentHashes: Math.min(4, Math.max(2, availableParallelism())),
  };
  if (!v) return d;
  const l = r.object(v, ['per_ip', 'per_user', 'spray', 'same_password', 'mfa', 'ipv6_prefix', 'hash_concurrency']);
  if (!l) return d;
  const count = (x: Val | undefined, dflt: number) => opt(x, (y) => r.int(y, 1, MAX_COUNT), dflt);
  const dur = (x: Val | undefined, dflt: number) => opt(x, (y) => r.duration(y), dflt);
  const section = <K extends string>(x: Val | undefined, keys: readonly K[]) => (x ? r.object(x, keys) : null) ?? ({} as Partial<Fields<K>>);

  const ip = section(l.per_ip, ['max_failures', 'window', 'block']);
  const user = section(l.per_user, ['max_failures', 'window', 'lockout', 'ceiling']);
  const ceiling = section(user.ceiling, ['max_failures', 'window']);
  const spray = section(l.spray, ['distinct_users', 'window', 'block']);
  const same = section(l.same_password, ['accounts', 'window', 'block']);
  const mfa = section(l.mfa, ['max_failures', 'window']);
  return {
    perIp: { maxFailures: count(ip.max_failures, d.perIp.maxFailures), windowMs: dur(ip.window, d.perIp.windowMs), blockMs: dur(ip.block, d.perIp.blockMs) },
    perUser: {
      maxFailures: count(user.max_failures, d.perUser.maxFailures),
      windowMs: dur(user.window, d.perUser.windowMs),
      lockoutMs: dur(user.lockout, d.perUser.lockoutMs),
      ceiling: {
        maxFailures: count(ceiling.max_failures, d.perUser.ceiling.maxFailures),
        windowMs: dur(ceiling.window, d.perUser.ceiling.windowMs),
      },
    },
    spray: {
      distinctUsers: count(spray.distinct_users, d.spray.distinctUsers),
      windowMs: dur(spray.window, d.spray.windowMs),
      blockMs: dur(spray.block, d.spray.blockMs),
    },
    samePassword: {
      // one account is a user retyping an old password, never a spray
      accounts: opt(same.accounts, (y) => r.int(y, schemaAt('login_limits.same_password.accounts').min!, MAX_COUNT), d.samePassword.accounts),
      windowMs: dur(same.window, d.samePassword.windowMs),
      blockMs: dur(same.block, d.samePassword.blockMs),
    },
    mfa: { maxFailures: count(mfa.max_failures, d.mfa.maxFailures), windowMs: dur(mfa.window, d.mfa.windowMs) },
    ipv6Prefix: opt(l.ipv6_prefix, (x) => r.int(x, IPV6_PREFIX_MIN, 128), d.ipv6Prefix),
    maxConcurrentHashes: opt(l.hash_concurrency, (x) => r.int(x, schemaAt('login_limits.hash_concurrency').min!, schemaAt('login_limits.hash_concurrency').max!), d.maxConcurrentHashes),
  };
}
