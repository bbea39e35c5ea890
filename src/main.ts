/**
 * A running gateway: config loaded and validated, runtime wired, listener bound, reload on file
 * change and SIGHUP, graceful shutdown. `portcullis serve` and the end-to-end tests use this.
 */
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createFileExclusive } from './util/atomic-write.js';
import { ensureWritableDir, isUnwritable, unwritableMessage, usersFileHint } from './util/writable.js';
import type { CompiledConfig } from './config/types.js';
import { loadConfigFile, formatIssues } from './config/index.js';
import { createLogger } from './audit/logger.js';
import { ensureUsersFile, formatIssue, loadUsersFile } from './auth/users.js';
import { PasswordHasher, paramsFromEnv } from './auth/password.js';
import { LoginThrottle } from './auth/throttle.js';
import { cryptoRandom } from './clock.js';
import { createRuntime, type RuntimeImpl, type RuntimeOptions } from './bootstrap.js';
import { createGatewayServer, type GatewayServer } from './http/server.js';
import { GatewayMetrics } from './admin/metrics.js';
import { attachNotifier, type Notifier } from './audit/notify.js';
import { closeLiveConnections, followLockdown, watchLockdownState, type LockdownWatch } from './access/lockdown.js';
import type { ConnectionLimits } from './net/listener.js';
import { startAdminServer, type AdminServer } from './admin/server.js';
import { AccessLog } from './http/access-log.js';

/** What a reload did: swapped in, or refused with the running config kept (every error listed). */
export type { ReloadOutcome } from './runtime.js';
import type { ReloadOutcome } from './runtime.js';
import { LdapDirectory } from './directory/ldap.js';

/** How often revocations a reload could not apply (store unreachable) are tried again. */
const REVOCATION_RETRY_MS = 2_000;

export interface GatewayOptions extends RuntimeOptions {
  configFile: string;
  /** Override cfg.listen (tests pass 0). */
  port?: number;
  host?: string;
  /** Watch the config and users files (default true). */
  watch?: boolean;
  /** Where first-start messages go (the admin password). */
  announce?: (line: string) => void;
  /** Connection limits of both listeners (internal settings; tests pass short ones). */
  connectionLimits?: Partial<ConnectionLimits>;
  /** How often an unreadable lockdown state is read again (default 2 s). */
  lockdownRetryMs?: number;
}

export class Gateway {
  private watchers: FSWatcher[] = [];
  private reloadTimer: NodeJS.Timeout | null = null;
  private reloading: Promise<unknown> = Promise.resolve();
  /**
   * Users whose sessions a reload must end (removed, disabled, password changed), with why. Worked
   * out before the new users file is swapped in and kept until the store has done it, so a store
   * outage during a reload delays a revocation but never loses it.
   */
  private readonly pendingRevocations = new Map<string, string>();
  private revocationRetry: NodeJS.Timeout | null = null;
  private admin: AdminServer | null = null;
  private metrics: GatewayMetrics | null = null;
  /** The access log (`access_log`), reopened with the audit log. */
  accessLog: AccessLog | null = null;
  private notifier: Notifier | null = null;
  private lockdownWatch: LockdownWatch | null = null;
  /** Set when a shutdown begins: /readyz answers 503 from then on. */
  private stopping: string | null = null;
  private shuttingDown: Promise<void> | null = null;
  private hurryNow: () => void = () => undefined;
  private readonly hurried = new Promise<void>((resolve) => (this.hurryNow = resolve));

  private constructor(
    readonly rt: RuntimeImpl,
    readonly http: GatewayServer,
    readonly port: number,
    private readonly opts: GatewayOptions,
  ) {}

  static async start(opts: GatewayOptions): Promise<Gateway> {
    const logger = opts.logger ?? createLogger();
    const env = opts.env ?? process.env;
    const loaded = await loadConfigFile(opts.configFile, { env });
    if (!loaded.ok) throw new Error(`configuration rejected:\n${formatIssues(loaded.issues)}`);
    const cfg = loaded.config;
    // before anything is created: a data_dir that cannot be written stops the start with a clear message
    await ensureWritableDir(
      cfg.dataDir,
      'data_dir',
      'It holds the secret key, the state and the first admin password: make it writable by this user (the container image runs as 10001:10001 with data_dir /var/lib/portcullis on a volume), or set data_dir to a writable directory.',
    );
    const first = await ensureUsersFile(cfg.usersFile, new PasswordHasher(opts.argon2 ?? paramsFromEnv(env)), opts.random ?? cryptoRandom).catch(
      (e: unknown) => {
        if (!isUnwritable(e)) throw e;
        throw new Error(unwritableMessage(e, 'the users file', cfg.usersFile, usersFileHint(cfg)), { cause: e });
      },
    );
    if (first.created && first.adminPassword) {
      const say = opts.announce ?? ((l: string) => process.stderr.write(`${l}\n`));
      // a container's log may be gone (or shared) by the time someone looks: keep it in a file too
      const file = await writeInitialPassword(cfg.dataDir, first.adminPassword).catch((err: Error) => {
        logger.warn({ err: err.message }, 'could not write the first admin password to data_dir');
        return null;
      });
      say(`portcullis: created ${cfg.usersFile} with user "admin" and password: ${first.adminPassword}`);
      if (file) say(`portcullis: the password is also in ${file} (mode 0600); delete that file once you have signed in and changed it.`);
      say('portcullis: sign in and enrol an authenticator; change the password with `portcullis user passwd admin --password-stdin`.');
    }
    const rt = await createRuntime(cfg, { ...opts, logger });
    // before the listener opens: a lockdown state that cannot be read is assumed on
    const lockdownWatch = await watchLockdownState(rt, opts.lockdownRetryMs !== undefined ? { retryMs: opts.lockdownRetryMs } : {});
    const metrics = new GatewayMetrics(rt);
    const accessLog = new AccessLog(cfg.accessLog.file, { clock: rt.clock, logger });
    const server = await createGatewayServer(rt, { observe: metrics.observeUpstream, decision: metrics.countDecision, accessLog, ...(opts.connectionLimits ? { limits: opts.connectionLimits } : {}) });
    const port = await server.listen(opts.port, opts.host);
    const gw = new Gateway(rt, server, port, opts);
    gw.accessLog = accessLog;
    gw.lockdownWatch = lockdownWatch;
    gw.metrics = metrics;
    gw.notifier = attachNotifier(rt);
    followLockdown(rt);
    rt.attack.startTicking();
    try {
      gw.admin = await startAdminServer(rt, {
        metrics,
        reload: (trigger) => gw.reload(trigger),
        notReady: () => (gw.stopping ? `shutting down (${gw.stopping})` : null),
        limits: opts.connectionLimits,
      });
    } catch (err) {
      await gw.close();
      throw new Error(`admin listener ${cfg.admin.listen.host}:${cfg.admin.listen.port}: ${(err as Error).message}`, { cause: err });
    }
    if (opts.watch !== false) gw.watchFiles();
    logger.info({ listen: `${opts.host ?? cfg.listen.host}:${port}`, admin: gw.admin.url, apps: cfg.apps.map((a) => a.name) }, 'portcullis listening');
    return gw;
  }

  /**
   * Validate the whole new config (and users file) and swap it in at once, or keep the running
   * one and record every error. Requests in flight keep the snapshot they started with.
   */
  reload(trigger = 'reload'): Promise<ReloadOutcome> {
    const run = this.reloading.then(() => this.doReload(trigger));
    const outcome = run.catch((err: unknown): ReloadOutcome => {
      this.rt.logger.error({ err: (err as Error).message, trigger }, 'reload failed; the running configuration stays');
      return { ok: false, reason: `reload failed: ${(err as Error).message}` };
    });
    this.reloading = outcome.then(() => undefined);
    return outcome;
  }

  private async doReload(trigger: string): Promise<ReloadOutcome> {
    const rt = this.rt;
    const loaded = await loadConfigFile(this.opts.configFile, { env: this.opts.env ?? process.env });
    if (!loaded.ok) {
      rt.audit.record({ event: 'config_rejected', ip: '-', outcome: 'failure', reason: `${trigger}: ${formatIssues(loaded.issues).replace(/\n/g, '; ')}` });
      rt.logger.error({ errors: loaded.issues.length, trigger }, `configuration rejected, keeping the running one:\n${formatIssues(loaded.issues)}`);
      return { ok: false, reason: formatIssues(loaded.issues) };
    }
    const next: CompiledConfig = loaded.config;
    const users = await loadUsersFile(next.usersFile);
    if (!users.ok) {
      const text = users.issues.map(formatIssue).join('; ');
      rt.audit.record({ event: 'config_rejected', ip: '-', outcome: 'failure', reason: `${trigger}: users file: ${text}` });
      rt.logger.error({ trigger }, `users file rejected, keeping the running one: ${text}`);
      return { ok: false, reason: `users file: ${text}` };
    }
    const needsRestart = restartKeys(rt.config, next);
    if (next.tls && rt.config.tls) {
      // a renewed certificate is served to new connections from now on; one that cannot be
      // loaded refuses the whole reload (the running certificate and config stay)
      try {
        await this.http.reloadTls(next.tls);
      } catch (err) {
        const reason = `TLS certificate ${next.tls.cert} and key ${next.tls.key}: ${(err as Error).message}`;
        rt.audit.record({ event: 'config_rejected', ip: '-', outcome: 'failure', reason: `${trigger}: ${reason}` });
        rt.logger.error({ trigger }, `${reason}; keeping the running configuration and certificate`);
        return { ok: false, reason };
      }
    }
    // sessions survive a reload, except those of users removed or disabled, or whose password changed
    for (const [name, u] of rt.users) {
      const now = users.users.get(name);
      const why = !now ? 'user removed' : now.disabled && !u.disabled ? 'user disabled' : now.passwordHash !== u.passwordHash ? 'password changed' : null;
      if (why) this.pendingRevocations.set(name, why);
    }
    rt.config = next;
    rt.users = users.users;
    if (JSON.stringify(rt.config.ldap) !== JSON.stringify(rt.directory?.cfg ?? null) || (next.ldap === null) !== !rt.directory) {
      // a changed ldap section: a new client (the old one's connections are closed)
      const old = rt.directory ?? null;
      rt.directory = next.ldap ? new LdapDirectory(next.ldap, { clock: rt.clock, logger: rt.logger }) : null;
      void old?.close();
    }
    (rt as { throttle: LoginThrottle }).throttle = new LoginThrottle({ limits: next.loginLimits, rates: rt.stores.rates, state: rt.stores.state, clock: rt.clock, witness: rt.throttle.witness });
    this.http.pools.prune(next);
    await this.applyRevocations();
    // logrotate moved the audit file away (or audit.file changed): write to the named file again
    try {
      await rt.audit.reopen(next.audit.file);
    } catch (err) {
      rt.logger.error({ err: (err as Error).message, file: next.audit.file }, 'the audit file could not be reopened; audit events keep going to the previous one');
    }
    try {
      await this.accessLog?.reopen(next.accessLog.file);
    } catch (err) {
      rt.logger.error({ err: (err as Error).message, file: next.accessLog.file }, 'the access log could not be reopened');
    }
    const later = needsRestart.length ? `; needs restart: ${needsRestart.join(', ')}` : '';
    rt.audit.record({ event: 'config_reloaded', ip: '-', outcome: 'success', reason: `${trigger}${later}` });
    if (needsRestart.length) {
      rt.logger.warn({ trigger, apps: next.apps.length, needsRestart }, `configuration reloaded, but these changes need a restart to take effect (the running process keeps the old values): ${needsRestart.join(', ')}`);
    } else rt.logger.info({ trigger, apps: next.apps.length, tls: next.tls ? 'reloaded' : undefined }, 'configuration reloaded');
    if (this.watchers.length) this.watchFiles(); // the users file may have moved
    return needsRestart.length ? { ok: true, needsRestart } : { ok: true };
  }

  /**
   * End the sessions (and open connections) of the users a reload marked. What the store cannot
   * do now stays pending and is tried again every few seconds until it succeeds.
   */
  private async applyRevocations(): Promise<void> {
    const rt = this.rt;
    for (const [name, why] of [...this.pendingRevocations]) {
      try {
        const n = await rt.stores.sessions.deleteByUser(name);
        if (why === 'user removed') await rt.stores.state.forgetUser(name);
        this.pendingRevocations.delete(name);
        closeLiveConnections(rt, (c) => c.user === name, why);
        if (n > 0) rt.audit.record({ event: 'session_revoked', ip: '-', user: name, outcome: 'info', reason: why });
      } catch (err) {
        rt.logger.error({ err: (err as Error).message, user: name, why }, 'sessions could not be revoked now; trying again shortly');
      }
    }
    if (this.pendingRevocations.size > 0 && !this.revocationRetry) {
      this.revocationRetry = setTimeout(() => {
        this.revocationRetry = null;
        void this.applyRevocations();
      }, REVOCATION_RETRY_MS);
      this.revocationRetry.unref();
    }
  }

  private watchFiles(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    const cfg = this.rt.config;
    // watch directories, not files: editors and our own atomic writes replace files by rename
    const targets = new Map<string, Set<string>>();
    for (const f of [this.opts.configFile, cfg.usersFile]) {
      const d = dirname(f);
      if (!targets.has(d)) targets.set(d, new Set());
      targets.get(d)!.add(basename(f));
    }
    for (const [dir, names] of targets) {
      try {
        const w = watch(dir, { persistent: false }, (_ev, file) => {
          if (file && !names.has(file.toString())) return;
          if (this.reloadTimer) clearTimeout(this.reloadTimer);
    if (this.revocationRetry) clearTimeout(this.revocationRetry);
          this.reloadTimer = setTimeout(() => void this.reload('file changed'), 100);
        });
        w.on('error', () => undefined);
        this.watchers.push(w);
      } catch (err) {
        this.rt.logger.warn({ dir, err: (err as Error).message }, 'cannot watch for changes; use SIGHUP to reload');
      }
    }
  }

  /**
   * A graceful shutdown (SIGTERM), each phase logged:
   * 1. not ready: /readyz answers 503 at once, while the listener serves on for `shutdown.drain`
   *    so that a load balancer notices and sends new clients elsewhere;
   * 2. no new connections; WebSockets are closed; requests in flight get up to `shutdown.grace`
   *    (keep-alive connections end as they fall idle);
   * 3. what is left is cut, then everything else is closed.
   * Calling it again (a second signal) skips what is left of the drain and the grace.
   */
  shutdown(trigger = 'SIGTERM', opts: { drainMs?: number; graceMs?: number } = {}): Promise<void> {
    if (this.shuttingDown) {
      this.rt.logger.warn({ trigger }, 'shutdown: asked again; closing now');
      this.hurryNow();
      return this.shuttingDown;
    }
    this.shuttingDown = this.runShutdown(trigger, opts);
    return this.shuttingDown;
  }

  private async runShutdown(trigger: string, opts: { drainMs?: number; graceMs?: number }): Promise<void> {
    const log = this.rt.logger;
    const drainMs = opts.drainMs ?? this.rt.config.shutdown.drainMs;
    const graceMs = opts.graceMs ?? this.rt.config.shutdown.graceMs;
    this.stopping = trigger;
    log.info({ trigger, drainMs, graceMs }, `shutdown: not ready (/readyz answers 503); still serving for the drain (${drainMs} ms)`);
    let drainTimer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise<void>((resolve) => (drainTimer = setTimeout(resolve, drainMs))), this.hurried]);
    clearTimeout(drainTimer);
    const started = Date.now();
    log.info({ trigger, graceMs }, `shutdown: drain over; no new connections; requests in flight have up to ${graceMs} ms`);
    const report = await this.http.shutdown({ graceMs, hurry: this.hurried });
    if (report.websockets > 0) log.info({ websockets: report.websockets }, 'shutdown: WebSockets closed');
    if (report.cut > 0) log.warn({ inFlight: report.inFlight, cut: report.cut }, 'shutdown: grace over; connections with requests unfinished were closed');
    else log.info({ inFlight: report.inFlight, ms: Date.now() - started }, 'shutdown: every request in flight finished');
    await this.close();
    log.info({ trigger }, 'shutdown: done');
  }

  /** The port the admin listener is bound to. */
  get adminPort(): number {
    return this.admin?.port ?? 0;
  }

  async close(): Promise<void> {
    this.stopping ??= 'closing';
    for (const w of this.watchers) w.close();
    this.lockdownWatch?.stop();
    await this.notifier?.close();
    this.notifier = null;
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    await this.rt.attack.stopTicking();
    await this.admin?.close();
    this.admin = null;
    this.metrics?.close();
    await this.http.close();
    await this.rt.audit.close();
    await this.accessLog?.close();
    await this.rt.stores.close();
    await this.rt.directory?.close();
    await this.rt.hasher.close();
  }
}

/** Where the first-start admin password is written (besides the log), mode 0600. */
export const INITIAL_PASSWORD_FILE = 'initial-admin-password';

async function writeInitialPassword(dataDir: string, password: string): Promise<string> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const file = join(dataDir, INITIAL_PASSWORD_FILE);
  // a file left from an earlier first start belongs to a users file that no longer exists
  await unlink(file).catch(() => undefined);
  await createFileExclusive(file, `${password}\n`, 0o600);
  return file;
}

/**
 * The changed keys a reload cannot apply to a running process: the listeners are bound, the
 * workers forked, the store and data_dir (keys, state) opened, the admin token file read, at
 * start. Everything else applies at once (the TLS certificate and key are re-read).
 */
export function restartKeys(a: CompiledConfig, b: CompiledConfig): string[] {
  const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);
  const out: string[] = [];
  if (!same(a.listen, b.listen)) out.push('listen');
  if ((a.tls === null) !== (b.tls === null)) out.push('tls');
  if (!same(a.admin.listen, b.admin.listen)) out.push('admin.listen');
  if (a.admin.tokenFile !== b.admin.tokenFile) out.push('admin.token_file');
  if (a.workers !== b.workers) out.push('workers');
  if (!same(a.store, b.store)) out.push('store');
  if (a.dataDir !== b.dataDir) out.push('data_dir');
  return out;
}
