/**
 * The running gateway's services, wired once at start and shared by the HTTP layer, the admin
 * API and the reload logic. No fastify here. The config and users are swapped atomically on
 * reload: a request reads `rt.config` once and keeps that snapshot to the end.
 */
import type { Clock, Random } from './clock.js';
import type { CompiledConfig } from './config/types.js';
import type { AuditLog } from './audit/audit-log.js';
import type { Logger } from './audit/logger.js';
import type { LockdownState, Stores } from './store/ports.js';
import type { SessionManager } from './session/sessions.js';
import type { PasswordHasher } from './auth/password.js';
import type { LoginThrottle } from './auth/throttle.js';
import type { AttackPosture } from './auth/attack.js';
import type { HashBudget } from './auth/hash-budget.js';
import type { PasswordGuidance } from './auth/guidance.js';
import type { AssertionCache, AssertionSigner } from './auth/assertion.js';
import type { SecretBox } from './auth/secret-box.js';
import type { UserRecord } from './auth/users.js';
import type { LdapDirectory } from './directory/ldap.js';

export type { LockdownState };

/**
 * What a reload did: applied, or refused with the reason (the running config stays). An applied
 * reload lists in `needsRestart` the changed keys it could not apply to the running process
 * (`listen`, `admin.listen`, `workers`, `store`, ...): they take effect at the next start.
 */
export type ReloadOutcome = { ok: true; needsRestart?: string[] } | { ok: false; reason: string };

/** Something the gateway can close on lockdown or revocation (an open WebSocket). */
export interface LiveConnection {
  user: string | null;
  sessionHash: string | null;
  app: string;
  ip: string;
  close(reason: string): void;
}

export interface Runtime {
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly audit: AuditLog;
  readonly stores: Stores;
  readonly sessions: SessionManager;
  readonly hasher: PasswordHasher;
  readonly throttle: LoginThrottle;
  /** The attack posture (`attack`): on while failed sign-ins across the gateway run high. */
  readonly attack: AttackPosture;
  readonly hashBudget: HashBudget;
  readonly guidance: () => PasswordGuidance;
  readonly signer: AssertionSigner;
  readonly assertions: AssertionCache;
  readonly box: SecretBox;
  /** The config in force now. Read once per request. */
  config: CompiledConfig;
  users: ReadonlyMap<string, UserRecord>;
  /** `ldap`: users from a directory after the users file (absent or null: none). */
  directory?: LdapDirectory | null;
  lockdown: LockdownState;
  readonly live: Set<LiveConnection>;
  /** Re-read the users file now (after the portal changed a password). */
  reloadUsers(): Promise<void>;
}
