/**
 * Wiring: from a compiled config to a running Runtime (stores, keys, users, throttles). Used by
 * `portcullis serve` and by tests, which pass a fixed clock, fixed randomness and cheap argon2.
 */
import { mkdir } from 'node:fs/promises';
import { cryptoRandom, systemClock, type Clock, type Random } from './clock.js';
import type { CompiledConfig } from './config/types.js';
import { AuditLog } from './audit/audit-log.js';
import { createLogger, type Logger } from './audit/logger.js';
import { SessionManager } from './session/sessions.js';
import { PasswordHasher, paramsFromEnv, type Argon2Params } from './auth/password.js';
import { LoginThrottle } from './auth/throttle.js';
import { AttackPosture } from './auth/attack.js';
import { HashBudget } from './auth/hash-budget.js';
import { PasswordGuidance, warmPasswordGuidance } from './auth/guidance.js';
import { AssertionCache, AssertionSigner } from './auth/assertion.js';
import { SecretBox } from './auth/secret-box.js';
import { loadUsersFile, formatIssue } from './auth/users.js';
import { openStores } from './store/open.js';
import type { Stores } from './store/ports.js';
import type { LiveConnection, Runtime } from './runtime.js';
import { LdapDirectory } from './directory/ldap.js';

export interface RuntimeOptions {
  clock?: Clock;
  random?: Random;
  logger?: Logger;
  argon2?: Argon2Params;
  env?: NodeJS.ProcessEnv;
  /** Supply stores (tests, or Redis from the caller); default: memory + files in data_dir. */
  stores?: Stores;
}

export class RuntimeImpl implements Runtime {
  config: CompiledConfig;
  users: Runtime['users'] = new Map();
  directory: LdapDirectory | null = null;
  lockdown = { on: false, since: 0, by: '' };
  readonly live = new Set<LiveConnection>();
  private guidanceFor: { policy: CompiledConfig['passwordPolicy']; g: PasswordGuidance } | null = null;

  constructor(
    cfg: CompiledConfig,
    readonly clock: Clock,
    readonly random: Random,
    readonly logger: Logger,
    readonly audit: AuditLog,
    readonly stores: Stores,
    readonly sessions: SessionManager,
    readonly hasher: PasswordHasher,
    readonly throttle: LoginThrottle,
    readonly hashBudget: HashBudget,
    readonly signer: AssertionSigner,
    readonly assertions: AssertionCache,
    readonly box: SecretBox,
    readonly attack: AttackPosture,
  ) {
    this.config = cfg;
  }

  guidance = (): PasswordGuidance => {
    const policy = this.config.passwordPolicy;
    if (!this.guidanceFor || this.guidanceFor.policy !== policy) this.guidanceFor = { policy, g: new PasswordGuidance(policy) };
    return this.guidanceFor.g;
  };

  async reloadUsers(): Promise<void> {
    const r = await loadUsersFile(this.config.usersFile);
    if (!r.ok) throw new Error(`users file rejected:\n${r.issues.map(formatIssue).join('\n')}`);
    this.users = r.users;
  }

  /** Close live connections of sessions that no longer exist (revocation, lockdown). */
  closeLive(filter: (c: LiveConnection) => boolean, reason: string): number {
    let n = 0;
    for (const c of [...this.live]) {
      if (filter(c)) {
        c.close(reason);
        this.live.delete(c);
        n++;
      }
    }
    return n;
  }
}

export async function createRuntime(cfg: CompiledConfig, opts: RuntimeOptions = {}): Promise<RuntimeImpl> {
  const clock = opts.clock ?? systemClock;
  const random = opts.random ?? cryptoRandom;
  const env = opts.env ?? process.env;
  const logger = opts.logger ?? createLogger();
  await mkdir(cfg.dataDir, { recursive: true, mode: 0o700 });
  const box = await SecretBox.fromDataDir(cfg.dataDir, env, random);
  const stores = opts.stores ?? (await openStores(cfg, { clock, box, logger }));
  const audit = new AuditLog({ file: cfg.audit.file, clock, logger });
  const rtRef: { rt: RuntimeImpl | null } = { rt: null };
  const sessions = new SessionManager({
    store: stores.sessions,
    clock,
    random,
    timeouts: () => {
      const c = rtRef.rt?.config ?? cfg;
      return { idleMs: c.session.idleTimeoutMs, absoluteMs: c.session.absoluteTimeoutMs };
    },
    // with a shared store, a short local cache (evicted by revocation broadcasts) keeps a
    // signed-in request to at most one store round trip, usually none
    ...(cfg.store.kind === 'redis' ? { cacheMs: 2_000 } : {}),
    graceMs: () => (rtRef.rt?.config ?? cfg).session.graceMs,
  });
  // one hashing thread per slot of the hash budget, at the lowest priority; Gateway.close ends them
  const hasher = new PasswordHasher(opts.argon2 ?? paramsFromEnv(env), { threads: cfg.loginLimits.maxConcurrentHashes, log: logger });
  const throttle = new LoginThrottle({ limits: cfg.loginLimits, rates: stores.rates, state: stores.state, clock });
  const budget = new HashBudget(cfg.loginLimits.maxConcurrentHashes);
  const signer = await AssertionSigner.open({ dataDir: cfg.dataDir, clock, issuer: 'portcullis', random, rotateAfterMs: 30 * 24 * 3600_000 });
  const attack = new AttackPosture({ rates: stores.rates, clock, config: () => (rtRef.rt?.config ?? cfg).attack, audit, logger });
  const rt = new RuntimeImpl(cfg, clock, random, logger, audit, stores, sessions, hasher, throttle, budget, signer, new AssertionCache(), box, attack);
  rtRef.rt = rt;
  rt.directory = cfg.ldap ? new LdapDirectory(cfg.ldap, { clock, logger }) : null;
  // build the password dictionaries now, not during the first sign-in
  warmPasswordGuidance();
  await rt.reloadUsers();
  try {
    const ld = await stores.state.getLockdown();
    if (ld) rt.lockdown = ld;
  } catch (err) {
    // the store is down at start: serve (fail closed for sign-ins); lockdown state follows on reconnect
    logger.error({ err: (err as Error).message }, 'cannot read the lockdown state yet');
  }
  // a session deleted anywhere closes its open WebSockets here
  stores.sessions.onRevoked((idHash) => {
    rt.closeLive((c) => idHash === '*' || c.sessionHash === idHash, 'session revoked');
  });
  return rt;
}
