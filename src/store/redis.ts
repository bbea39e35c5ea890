/**
 * Redis implementation of the store ports, so that several gateway instances act as one:
 * sessions, counters, blocks, TOTP replay claims and credentials live in one Redis, and
 * revocations and lockdown changes are broadcast over pub/sub.
 *
 * Key layout (P = prefix, default `portcullis:`); every key an attacker can make us create
 * carries a TTL:
 *   P s:<idHash>      hash {u: user, r: sealed record}   TTL = session ttl
 *   P su:<user>       set of idHash (per-user index)     TTL = longest session ttl
 *   P r:<key>         hash {e: window end, n: count, m:<digest>...}  TTL = window
 *   P b:<key>         hash {u: until, r: reason}          TTL = until - now
 *   P blocks          zset key -> until (index, pruned)   TTL = latest until - now
 *   P c:<key>         claim marker (SET NX PX)            TTL = claim ttl
 *   P totp:<user>     JSON TotpRecord (secret sealed by the caller)      durable
 *   P rc:<user>       set of recovery code hashes                         durable
 *   P ap:<user>       hash label -> JSON AppPasswordRecord (keyed hash)   durable
 *   P kn:<user>       zset network -> last seen, capped                   durable
 *   P pk:<user>       hash credential id -> JSON PasskeyRecord (key sealed) durable
 *   P pkid            hash credential id -> user (passwordless lookup)    durable
 *   P lockdown:state  JSON {on, since, by}                                durable
 * Channels: `P revoked` (session deletions), `P lockdown` (lockdown changes).
 *
 * Secrets: session ids are never stored (only the caller's id hash); the session record
 * (which holds the CSRF secret) is sealed with the SecretBox, bound to its id hash, so a
 * party who can read Redis learns no CSRF secret and a party who can write Redis cannot
 * forge or transplant a session without the box key. Distinct members (user names tried
 * from one address) are stored as digests, so mistyped passwords never sit in Redis.
 *
 * Failure: commands are never queued while disconnected. While Redis is unreachable every
 * store call rejects at once (or after the command timeout) with PC_STORE_UNAVAILABLE, the
 * connections keep reconnecting with a bounded back-off, and `healthy()` / `onStateChange`
 * report the state. Standalone (or replicated) Redis only; Redis Cluster is not supported.
 *
 * Sentinel (`redis-sentinel://h1:26379,h2:26379/mymaster`, see redis-url.ts): the connections
 * ask the Sentinels for the current primary on every (re)connect, refuse a server that is not a
 * primary (ioredis's role check), reconnect when a Sentinel announces `+switch-master`, on a
 * READONLY reply and when the heartbeat finds the server demoted. Replication is asynchronous, so in this mode a write that
 * matters (sessions, failure counts and blocks, TOTP claims, credentials, lockdown) is followed by
 * `WAIT 1` on the same connection: the caller hears "done" only once a replica holds the write, so
 * a failover after that cannot lose it. A WAIT that fails (the connection dropped) fails the call
 * with PC_STORE_UNAVAILABLE. While no replica is in sync (WAIT timed out, or none is connected,
 * e.g. right after a failover that left no replica) writes go on unconfirmed and this is reported
 * once through `onError`; a failover in that state can lose the writes since then.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import type { Clock } from '../clock.js';
import { PortcullisError } from '../errors.js';
import type {
  AppPasswordRecord,
  Factor,
  RateStore,
  LockdownState,
  ReserveRequest,
  ReserveResult,
  SessionRecord,
  SessionStore,
  StateStore,
  Stores,
  TotpRecord,
  PasskeyRecord,
} from './ports.js';
import { SCRIPTS, type ScriptName } from './redis-scripts.js';
import { describeSentinelUrl, isSentinelUrl, parseSentinelUrl, type SentinelUrl } from './redis-url.js';

/** The SecretBox operations this store needs (AES-256-GCM in src/auth/secret-box.ts). */
export interface Sealer {
  seal(plaintext: string, aad: string): string;
  /** Throws when the sealed value is not authentic for `aad`. */
  open(sealed: string, aad: string): string;
}


export interface RedisStoreOptions {
  /** `redis://[user:pass@]host:port/db`, `rediss://...` (TLS) or `redis-sentinel://...` (redis-url.ts). */
  url: string;
  /** Prefix of every key and channel (default `portcullis:`); instances that share state share it. */
  prefix?: string;
  clock: Clock;
  box: Sealer;
  /** Called when `healthy()` changes, after creation. */
  onStateChange?: (up: boolean) => void;
  /** Connection errors (deduplicated) and errors thrown by listeners; never secrets. */
  onError?: (err: Error) => void;
  /** How long creation waits for Redis, and one connection attempt's limit (default 3000 ms). */
  connectTimeoutMs?: number;
  /** Resolve even when Redis cannot be reached yet (fail closed until it can) instead of rejecting. */
  startUnavailable?: boolean;
  /** A command without a reply by then fails with PC_STORE_UNAVAILABLE (default 1000 ms). */
  commandTimeoutMs?: number;
  /** How often idle connections are checked with PING (default 5000 ms). */
  heartbeatMs?: number;
  /** Known networks kept per user, most recently seen first to stay (default 50). */
  maxKnownNetworks?: number;
  /** Sentinel mode: how long a write waits for a replica's acknowledgement (default 250 ms). */
  replicaWaitMs?: number;
}

/** Where the store connects: one server, or the primary the Sentinels name. */
type Target = { kind: 'server'; url: URL } | { kind: 'sentinel'; sentinel: SentinelUrl };

function describeTarget(t: Target): string {
  return t.kind === 'server' ? describeUrl(t.url) : describeSentinelUrl(t.sentinel);
}


/** The store ports, with the lockdown broadcast (Stores.onLockdown) always present. */
export interface RedisStores extends Stores {
  /** Also called for `state.setLockdown` on this instance. */
  onLockdown(listener: (state: LockdownState) => void): void;
}

const DEFAULT_PREFIX = 'portcullis:';
/** Distinct members counted per window at most; the count saturates here (far above any limit). */
const MEMBER_CAP = 10_000;
/** A user's session index is pruned of expired ids once it holds more than this. */
const SESSION_INDEX_PRUNE_AT = 32;
const SCAN_COUNT = 500;
const MAX_ID_HASH_LENGTH = 256;

function unavailable(cause?: unknown, message?: string): PortcullisError {
  return new PortcullisError('PC_STORE_UNAVAILABLE', message, cause === undefined ? undefined : { cause });
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/** `redis://host:port/db` without credentials, for messages. */
function describeUrl(u: URL): string {
  return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
}

/** Escape glob metacharacters for SCAN MATCH. */
function globEscape(s: string): string {
  return s.replace(/[\\*?[\]]/g, (c) => `\\${c}`);
}

function memberDigest(member: string): string {
  return createHash('sha256').update(member, 'utf8').digest('base64url').slice(0, 22);
}

function positiveMs(ms: number, what: string): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0) throw new TypeError(`${what} must be a positive number of milliseconds`);
  return Math.ceil(ms);
}

function epochMs(ms: number, what: string): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) throw new TypeError(`${what} must be a finite time in milliseconds`);
  return Math.floor(ms);
}

function nonEmpty(s: string, what: string): string {
  if (typeof s !== 'string' || s.length === 0) throw new TypeError(`${what} must be a non-empty string`);
  return s;
}

function validIdHash(idHash: string): boolean {
  return typeof idHash === 'string' && idHash.length > 0 && idHash.length <= MAX_ID_HASH_LENGTH;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const FACTORS: ReadonlySet<string> = new Set<Factor>(['pwd', 'otp', 'hwk']);
const PENDING: ReadonlySet<string> = new Set<SessionRecord['pending']>(['none', 'mfa', 'enrol', 'password']);

/**
 * Parse an opened (hence authentic) session record, checking the shape of every field the
 * port defines. Fields added to SessionRecord later pass through unchanged.
 */
function parseSessionRecord(json: string): SessionRecord | null {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return null;
  }
  if (!isRecord(v)) return null;
  const { user, amr, pending, createdAt, lastSeenAt, ip, csrf, rd, enrolSecret, mustChangePassword, reauthAt, factorAt, scope, passkeyChallenge, hwkAt, reenteredAt } = v;
  if (typeof user !== 'string' || typeof ip !== 'string' || typeof csrf !== 'string') return null;
  if (!Array.isArray(amr) || !amr.every((f) => typeof f === 'string' && FACTORS.has(f))) return null;
  if (typeof pending !== 'string' || !PENDING.has(pending)) return null;
  if (typeof createdAt !== 'number' || typeof lastSeenAt !== 'number') return null;
  if (rd !== undefined && typeof rd !== 'string') return null;
  if (enrolSecret !== undefined && typeof enrolSecret !== 'string') return null;
  if (mustChangePassword !== undefined && typeof mustChangePassword !== 'boolean') return null;
  if (reauthAt !== undefined && typeof reauthAt !== 'number') return null;
  if (factorAt !== undefined && typeof factorAt !== 'number') return null;
  if (hwkAt !== undefined && typeof hwkAt !== 'number') return null;
  if (reenteredAt !== undefined && typeof reenteredAt !== 'number') return null;
  if (scope !== undefined && typeof scope !== 'string') return null;
  if (passkeyChallenge !== undefined && !(isRecord(passkeyChallenge) && typeof passkeyChallenge.challenge === 'string' && typeof passkeyChallenge.expiresAt === 'number')) return null;
  return v as unknown as SessionRecord;
}

function parseJson(raw: string, what: string): unknown {
  try {
    return JSON.parse(raw);
  } catch (e) {
    throw unavailable(e, `stored ${what} is corrupt`);
  }
}

function parseTotp(raw: string): TotpRecord {
  const v = parseJson(raw, 'TOTP record');
  if (
    !isRecord(v) ||
    typeof v.secret !== 'string' ||
    typeof v.enrolledAt !== 'number' ||
    (v.source !== 'enrolled' && v.source !== 'provisioned')
  ) {
    throw unavailable(undefined, 'stored TOTP record is corrupt');
  }
  return { secret: v.secret, enrolledAt: v.enrolledAt, source: v.source };
}

function parsePasskey(raw: string): PasskeyRecord {
  const v = parseJson(raw, 'passkey');
  if (
    !isRecord(v) ||
    typeof v.id !== 'string' ||
    typeof v.publicKey !== 'string' ||
    typeof v.counter !== 'number' ||
    // cjson writes an empty list back as {}
    !(isRecord(v.transports) ? Object.keys(v.transports).length === 0 : Array.isArray(v.transports) && v.transports.every((t) => typeof t === 'string')) ||
    typeof v.name !== 'string' ||
    typeof v.createdAt !== 'number' ||
    (v.lastUsedAt !== undefined && typeof v.lastUsedAt !== 'number')
  ) {
    throw unavailable(undefined, 'stored passkey is corrupt');
  }
  return { id: v.id, publicKey: v.publicKey, counter: v.counter, transports: Array.isArray(v.transports) ? (v.transports as string[]) : [], name: v.name, createdAt: v.createdAt, ...(v.lastUsedAt !== undefined ? { lastUsedAt: v.lastUsedAt } : {}) };
}

function passkeyJson(rec: PasskeyRecord): string {
  return JSON.stringify({ id: rec.id, publicKey: rec.publicKey, counter: rec.counter, transports: [...rec.transports], name: rec.name, createdAt: rec.createdAt, lastUsedAt: rec.lastUsedAt });
}

function parseAppPassword(raw: string): AppPasswordRecord {
  const v = parseJson(raw, 'app password');
  if (
    !isRecord(v) ||
    typeof v.label !== 'string' ||
    typeof v.hash !== 'string' ||
    typeof v.createdAt !== 'number' ||
    (v.lastUsedAt !== undefined && typeof v.lastUsedAt !== 'number')
  ) {
    throw unavailable(undefined, 'stored app password is corrupt');
  }
  const rec: AppPasswordRecord = { label: v.label, hash: v.hash, createdAt: v.createdAt };
  if (typeof v.lastUsedAt === 'number') rec.lastUsedAt = v.lastUsedAt;
  return rec;
}

function isLockdownState(v: unknown): v is LockdownState {
  return isRecord(v) && typeof v.on === 'boolean' && typeof v.since === 'number' && typeof v.by === 'string';
}

function parseLockdown(raw: string): LockdownState {
  const v = parseJson(raw, 'lockdown state');
  if (!isLockdownState(v)) throw unavailable(undefined, 'stored lockdown state is corrupt');
  return { on: v.on, since: v.since, by: v.by };
}

type ScriptFn = (...args: Array<string | number>) => Promise<unknown>;
type RevokedListener = (idHash: string | '*', user?: string) => void;
type LockdownListener = (state: LockdownState) => void;

/** Key and channel names under one prefix. */
class Keys {
  readonly sessionPrefix: string;
  readonly userIndexPrefix: string;
  readonly blockPrefix: string;
  readonly blockIndex: string;
  readonly lockdown: string;
  readonly revokedChannel: string;
  readonly lockdownChannel: string;
  constructor(readonly prefix: string) {
    this.sessionPrefix = `${prefix}s:`;
    this.userIndexPrefix = `${prefix}su:`;
    this.blockPrefix = `${prefix}b:`;
    this.blockIndex = `${prefix}blocks`;
    this.lockdown = `${prefix}lockdown:state`;
    this.revokedChannel = `${prefix}revoked`;
    this.lockdownChannel = `${prefix}lockdown`;
  }
  session(idHash: string): string {
    return this.sessionPrefix + idHash;
  }
  userIndex(user: string): string {
    return this.userIndexPrefix + user;
  }
  rate(key: string): string {
    return `${this.prefix}r:${key}`;
  }
  block(key: string): string {
    return this.blockPrefix + key;
  }
  claim(key: string): string {
    return `${this.prefix}c:${key}`;
  }
  totp(user: string): string {
    return `${this.prefix}totp:${user}`;
  }
  recovery(user: string): string {
    return `${this.prefix}rc:${user}`;
  }
  appPasswords(user: string): string {
    return `${this.prefix}ap:${user}`;
  }
  knownNetworks(user: string): string {
    return `${this.prefix}kn:${user}`;
  }
  passkeys(user: string): string {
    return `${this.prefix}pk:${user}`;
  }
  get passkeyOwners(): string {
    return `${this.prefix}pkid`;
  }
}

/**
 * The two connections (commands, subscriptions), their health, and the local listeners.
 * Every store call goes through `run`, which fails fast while the command connection is
 * down and turns any failure into PC_STORE_UNAVAILABLE.
 */
class Backend {
  readonly keys: Keys;
  /** Tags this instance's broadcasts so it does not notify its own listeners twice. */
  readonly origin = randomUUID();
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly revokedListeners: RevokedListener[] = [];
  private readonly lockdownListeners: LockdownListener[] = [];
  private subscribed = false;
  private lockdownRefreshPending = false;
  private everSubscribed = false;
  private lastHealthy = false;
  private started = false;
  private closed = false;
  private lastErrorMessage: string | null = null;
  private lastError: Error | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly readyWaiters = new Set<() => void>();

  /** Sentinel mode: writes that matter are confirmed with WAIT (see the file comment). */
  private readonly confirmWrites: boolean;
  private readonly replicaWaitMs: number;
  /** Replicas in sync with the primary, as last seen (INFO replication / WAIT). */
  private replicasInSync = 0;
  private unconfirmedReported = false;
  /** After a WAIT timed out: -1 until the next INFO, then the primary's offset a replica must reach. */
  private syncedFrom: number | null = null;
  /** Sentinel mode: subscribers to `+switch-master`, one per Sentinel. */
  private readonly failoverWatchers: Redis[] = [];

  constructor(
    private readonly opts: RedisStoreOptions,
    target: Target,
    prefix: string,
  ) {
    this.keys = new Keys(prefix);
    const connectTimeout = opts.connectTimeoutMs ?? 3000;
    const commandTimeout = opts.commandTimeoutMs ?? 1000;
    const options: RedisOptions = {
      lazyConnect: true,
      // Fail fast while disconnected instead of queueing forever.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      // A command cut off by a disconnect is never replayed: it has already failed for the caller.
      autoResendUnfulfilledCommands: false,
      // We subscribe ourselves after each reconnect, then resynchronise (see onSubReady).
      autoResubscribe: false,
      // Reconnect for ever, backing off to at most 2 s between attempts.
      retryStrategy: (attempt: number) => Math.min(attempt * 100, 2000),
      connectTimeout,
      commandTimeout,
      // A server that accepts commands but never answers is treated as gone.
      socketTimeout: commandTimeout * 3,
      keepAlive: 10_000,
      connectionName: 'portcullis',
    };
    this.confirmWrites = target.kind === 'sentinel';
    this.replicaWaitMs = Math.max(1, Math.min(opts.replicaWaitMs ?? 250, Math.floor(commandTimeout / 2)));
    if (target.kind === 'sentinel') {
      const t = target.sentinel;
      // during a switch the Sentinels still name the dead primary for a moment: retry briskly
      options.retryStrategy = (attempt: number) => Math.min(attempt * 100, 500);
      this.cmd = new Redis({
        ...options,
        sentinels: t.sentinels.map((x) => ({ host: x.host, port: x.port })),
        name: t.name,
        role: 'master',
        db: t.db,
        ...(t.username !== undefined ? { username: t.username } : {}),
        ...(t.password !== undefined ? { password: t.password } : {}),
        ...(t.sentinelUsername !== undefined ? { sentinelUsername: t.sentinelUsername } : {}),
        ...(t.sentinelPassword !== undefined ? { sentinelPassword: t.sentinelPassword } : {}),
        sentinelCommandTimeout: connectTimeout,
        // All Sentinels unreachable: ask them again soon, for ever.
        sentinelRetryStrategy: (attempt: number) => Math.min(attempt * 100, 1000),
        // ioredis's own failover detector is not used: its Sentinel connections have no error
        // listener and print "[ioredis] Unhandled error event" on stderr every second while one
        // Sentinel is down. watchFailovers() does the same job with reported, deduplicated errors.
        failoverDetector: false,
        // A demoted primary answers writes with READONLY: reconnect (through the Sentinels); the command fails.
        reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 1 : false),
      });
      this.watchFailovers(t, connectTimeout);
    } else {
      if (target.url.protocol === 'rediss:') options.tls = {};
      this.cmd = new Redis(target.url.href, options);
    }
    this.sub = this.cmd.duplicate({ connectionName: 'portcullis-sub' });
    for (const [name, def] of Object.entries(SCRIPTS)) {
      this.cmd.defineCommand(name, def.numberOfKeys === null ? { lua: def.lua } : { lua: def.lua, numberOfKeys: def.numberOfKeys });
    }

    this.cmd.on('error', (e: Error) => this.reportConnectionError(e));
    this.sub.on('error', (e: Error) => this.reportConnectionError(e));
    this.cmd.on('ready', () => {
      if (this.confirmWrites) void this.refreshReplicas();
      this.update();
      if (this.lockdownRefreshPending && this.started) void this.refreshLockdown();
    });
    this.cmd.on('close', () => this.update());
    this.cmd.on('end', () => this.update());
    this.sub.on('ready', () => void this.onSubReady());
    this.sub.on('close', () => {
      this.subscribed = false;
      this.update();
    });
    this.sub.on('end', () => {
      this.subscribed = false;
      this.update();
    });
    this.sub.on('message', (channel: string, message: string) => this.onMessage(channel, message));
  }

  /**
   * Sentinel mode: one subscriber per Sentinel on `+switch-master`. When the master we use is
   * switched while our connections are still up (the old primary is alive but cut off from the
   * Sentinels, or is being demoted), drop them so that they ask the Sentinels again. A primary
   * that died has already closed them: the reconnect finds the new one by itself.
   */
  private watchFailovers(t: SentinelUrl, connectTimeout: number): void {
    const lastError = new Map<string, string>();
    let lastSwitch = '';
    for (const s of t.sentinels) {
      const where = `${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`;
      const w = new Redis({
        host: s.host,
        port: s.port,
        ...(t.sentinelUsername !== undefined ? { username: t.sentinelUsername } : {}),
        ...(t.sentinelPassword !== undefined ? { password: t.sentinelPassword } : {}),
        lazyConnect: true,
        enableReadyCheck: false,
        connectTimeout,
        retryStrategy: (attempt: number) => Math.min(attempt * 200, 2000),
        connectionName: 'portcullis-failover',
      });
      w.on('error', (e: Error) => {
        // one line per Sentinel and kind of failure, not one per retry
        if (lastError.get(where) === e.message) return;
        lastError.set(where, e.message);
        this.report(new Error(`redis store: Sentinel ${where}: ${e.message}`));
      });
      w.on('ready', () => lastError.delete(where));
      w.on('message', (channel: string, message: string) => {
        const [name, , , newHost, newPort] = message.split(' ');
        if (channel !== '+switch-master' || name !== t.name || this.closed) return;
        const to = `${newHost}:${newPort}`;
        if (to === lastSwitch) return; // every Sentinel announces the same switch
        lastSwitch = to;
        this.report(new Error(`redis store: the Sentinels switched ${t.name} to ${to}; reconnecting`));
        for (const c of [this.cmd, this.sub]) if (c.status === 'ready') c.disconnect(true);
      });
      w.subscribe('+switch-master').catch(() => {}); // queued until connected; resubscribed after a reconnect
      this.failoverWatchers.push(w);
    }
  }

  /** Connect both connections; resolves once healthy, rejects after `connectTimeoutMs`. */
  async start(target: Target): Promise<void> {
    for (const w of this.failoverWatchers) w.connect().catch(() => {});
    this.cmd.connect().catch(() => {});
    this.sub.connect().catch(() => {});
    const timeoutMs = this.opts.connectTimeoutMs ?? 3000;
    const ok = await new Promise<boolean>((resolve) => {
      if (this.isHealthy()) return resolve(true);
      const done = (v: boolean): void => {
        clearTimeout(timer);
        this.readyWaiters.delete(onReady);
        resolve(v);
      };
      const onReady = (): void => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.readyWaiters.add(onReady);
    });
    if (!ok && this.opts.startUnavailable) {
      // serve anyway: every store call fails closed (503) until Redis answers, then it heals
      this.opts.onError?.(new Error(`cannot reach Redis at ${describeTarget(target)} yet; retrying in the background`));
    } else if (!ok) {
      const cause = this.lastError;
      await this.close();
      throw unavailable(cause ?? undefined, `cannot reach Redis at ${describeTarget(target)}`);
    }
    this.started = true;
    this.lastHealthy = this.isHealthy();
    this.heartbeat = setInterval(() => this.beat(), this.opts.heartbeatMs ?? 5000);
    this.heartbeat.unref();
  }

  isHealthy(): boolean {
    return !this.closed && this.cmd.status === 'ready' && this.subscribed;
  }

  /**
   * Run `op` on the command connection. `durable`: a write that must survive a failover; in
   * Sentinel mode it is confirmed by a replica (WAIT) before this resolves.
   */
  async run<T>(op: (cmd: Redis) => Promise<T>, durable = false): Promise<T> {
    if (this.closed) throw unavailable(undefined, 'the Redis store is closed');
    if (this.cmd.status !== 'ready') throw unavailable(this.lastError ?? undefined);
    try {
      const out = await op(this.cmd);
      if (durable) await this.confirm(this.cmd);
      return out;
    } catch (e) {
      if (e instanceof PortcullisError) throw e;
      throw unavailable(e);
    }
  }

  /** `run` for a write that must survive a failover (see `run`). */
  write<T>(op: (cmd: Redis) => Promise<T>): Promise<T> {
    return this.run(op, true);
  }

  /**
   * Wait until a replica has every write sent so far on `cmd` (WAIT counts this connection's
   * writes; one connection carries them all). Skipped, and reported once, while no replica is in
   * sync: waiting for one that is not there would only slow every write down.
   */
  private async confirm(cmd: Redis): Promise<void> {
    if (!this.confirmWrites) return;
    if (this.replicasInSync < 1) return this.reportUnconfirmed();
    const acked = Number(await cmd.wait(1, this.replicaWaitMs));
    if (acked >= 1) return;
    this.replicasInSync = 0;
    this.syncedFrom = -1;
    this.reportUnconfirmed();
  }

  private reportUnconfirmed(): void {
    if (this.unconfirmedReported) return;
    this.unconfirmedReported = true;
    this.report(new Error('redis store: no replica is in sync with the primary; writes go on unconfirmed and a failover now could lose them'));
  }

  /** Sentinel mode: count the replicas in sync (online, acknowledged within 2 s) from INFO replication. */
  private async refreshReplicas(): Promise<void> {
    if (!this.confirmWrites || this.closed || this.cmd.status !== 'ready') return;
    try {
      const info = await this.cmd.info('replication');
      const role = /^role:(\w+)/m.exec(info)?.[1];
      if (role !== undefined && role !== 'master') {
        // demoted (the Sentinels chose another primary): ask them again
        this.reportConnectionError(new Error('redis store: the server is no longer the primary; reconnecting through the Sentinels'));
        if (!this.closed) {
          this.cmd.disconnect(true);
          this.sub.disconnect(true);
        }
        return;
      }
      const masterOffset = Number(/^master_repl_offset:([0-9]+)/m.exec(info)?.[1] ?? 0);
      if (this.syncedFrom === -1) {
        // a WAIT timed out: a replica counts again only once it has acknowledged what was written until now
        this.syncedFrom = masterOffset;
        this.replicasInSync = 0;
        return;
      }
      let n = 0;
      for (const line of info.split(/\r?\n/)) {
        const m = /^slave[0-9]+:(.*)$/.exec(line);
        if (!m) continue;
        const f = new Map(m[1]!.split(',').map((kv) => kv.split('=') as [string, string]));
        const acked = Number(f.get('offset') ?? -1);
        if (f.get('state') === 'online' && Number(f.get('lag') ?? 99) <= 2 && (this.syncedFrom === null || acked >= this.syncedFrom)) n++;
      }
      const before = this.replicasInSync;
      this.replicasInSync = n;
      if (n > 0) this.syncedFrom = null;
      if (n > 0 && before < 1 && this.unconfirmedReported) {
        this.unconfirmedReported = false;
        this.report(new Error(`redis store: ${n} replica(s) in sync again; writes that matter are confirmed by a replica`));
      }
    } catch (e) {
      this.reportConnectionError(asError(e));
    }
  }

  script(cmd: Redis, name: ScriptName, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    const def = SCRIPTS[name];
    if (def.numberOfKeys !== null && def.numberOfKeys !== keys.length) throw new TypeError(`script ${name} takes ${def.numberOfKeys} keys`);
    const fn = (cmd as unknown as Record<ScriptName, ScriptFn>)[name];
    const head: Array<string | number> = def.numberOfKeys === null ? [keys.length] : [];
    return fn.call(cmd, ...head, ...keys, ...args);
  }

  onRevoked(listener: RevokedListener): void {
    this.revokedListeners.push(listener);
  }

  onLockdown(listener: LockdownListener): void {
    this.lockdownListeners.push(listener);
  }

  emitRevoked(idHash: string | '*', user?: string): void {
    for (const l of this.revokedListeners) {
      try {
        l(idHash, user);
      } catch (e) {
        this.report(asError(e));
      }
    }
  }

  emitLockdown(state: LockdownState): void {
    for (const l of this.lockdownListeners) {
      try {
        l({ ...state });
      } catch (e) {
        this.report(asError(e));
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    for (const w of this.failoverWatchers) w.disconnect(false);
    await Promise.all([quit(this.cmd), quit(this.sub)]);
    // a deliberate close is not an outage: no state-change report (nobody should be paged)
    this.lastHealthy = false;
  }

  private async onSubReady(): Promise<void> {
    if (this.closed) return;
    try {
      await this.sub.subscribe(this.keys.revokedChannel, this.keys.lockdownChannel);
    } catch (e) {
      this.reportConnectionError(asError(e));
      // Still connected but not subscribed: start over so 'ready' fires again.
      if (!this.closed && this.sub.status === 'ready') this.sub.disconnect(true);
      return;
    }
    if (this.closed) return;
    this.subscribed = true;
    const resync = this.everSubscribed;
    this.everSubscribed = true;
    this.update();
    if (resync) await this.resynchronise();
  }

  /**
   * After a reconnect, broadcasts sent while we were away are lost: tell listeners to drop
   * anything they cached about sessions, and re-read the lockdown state.
   */
  private async resynchronise(): Promise<void> {
    this.emitRevoked('*');
    await this.refreshLockdown();
  }

  /** Re-read the lockdown state for listeners; retried when the command connection is next ready. */
  private async refreshLockdown(): Promise<void> {
    this.lockdownRefreshPending = true;
    if (this.cmd.status !== 'ready') return;
    try {
      const raw = await this.run((cmd) => cmd.get(this.keys.lockdown));
      this.lockdownRefreshPending = false;
      if (raw !== null) this.emitLockdown(parseLockdown(raw));
    } catch (e) {
      this.report(asError(e));
    }
  }

  private onMessage(channel: string, message: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(message);
    } catch {
      return;
    }
    if (!isRecord(msg) || msg.o === this.origin) return;
    if (channel === this.keys.revokedChannel) {
      const user = typeof msg.u === 'string' ? msg.u : undefined;
      if (msg.all === true) this.emitRevoked('*');
      else if (Array.isArray(msg.h)) {
        for (const h of msg.h) if (typeof h === 'string' && h !== '*') this.emitRevoked(h, user);
      }
    } else if (channel === this.keys.lockdownChannel && isLockdownState(msg.s)) {
      this.emitLockdown(msg.s);
    }
  }

  private beat(): void {
    void this.refreshReplicas();
    for (const client of [this.cmd, this.sub]) {
      if (this.closed || client.status !== 'ready') continue;
      client.ping().catch((e: unknown) => {
        this.reportConnectionError(asError(e));
        // No answer in time: drop the connection and let the retry strategy reconnect.
        if (!this.closed && client.status === 'ready') client.disconnect(true);
      });
    }
  }

  private update(): void {
    const h = this.isHealthy();
    if (h) {
      this.lastErrorMessage = null;
      for (const w of [...this.readyWaiters]) w();
    }
    if (!this.started || h === this.lastHealthy) return;
    this.lastHealthy = h;
    try {
      this.opts.onStateChange?.(h);
    } catch (e) {
      this.report(asError(e));
    }
  }

  private reportConnectionError(e: Error): void {
    this.lastError = e;
    if (e.message === this.lastErrorMessage) return;
    this.lastErrorMessage = e.message;
    this.report(e);
  }

  private report(e: Error): void {
    try {
      this.opts.onError?.(e);
    } catch {
      // An error reporter that throws must not take the gateway down.
    }
  }
}

async function quit(client: Redis): Promise<void> {
  if (client.status === 'ready') {
    try {
      await client.quit();
    } catch {
      // fall through to a hard disconnect
    }
  }
  // (a hard disconnect after QUIT also stops a reconnect timer)
  client.disconnect(false);
}

class RedisSessionStore implements SessionStore {
  constructor(
    private readonly b: Backend,
    private readonly box: Sealer,
  ) {}

  private aad(idHash: string): string {
    return `session:${idHash}`;
  }

  private open(idHash: string, user: string, sealed: string): SessionRecord | null {
    let json: string;
    try {
      json = this.box.open(sealed, this.aad(idHash));
    } catch {
      return null; // not authentic for this id (tampered, transplanted, or another key)
    }
    const rec = parseSessionRecord(json);
    return rec && rec.user === user ? rec : null;
  }

  async get(idHash: string): Promise<SessionRecord | null> {
    if (!validIdHash(idHash)) return null;
    return this.b.run(async (cmd) => {
      const [u, r] = await cmd.hmget(this.b.keys.session(idHash), 'u', 'r');
      if (u == null || r == null) return null;
      return this.open(idHash, u, r);
    });
  }

  async set(idHash: string, rec: SessionRecord, ttlMs: number): Promise<void> {
    if (!validIdHash(idHash)) throw new TypeError('invalid session id hash');
    nonEmpty(rec.user, 'session user');
    if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs)) throw new TypeError('ttlMs must be a finite number');
    const k = this.b.keys;
    if (ttlMs <= 0) {
      // Already past its lifetime: drop it (an expiry, not a revocation: no broadcast).
      await this.b.write((cmd) => this.b.script(cmd, 'pcSessionDelete', [k.session(idHash)], [idHash, k.userIndexPrefix, '', this.b.origin]));
      return;
    }
    const sealed = this.box.seal(JSON.stringify(rec), this.aad(idHash));
    await this.b.write((cmd) =>
      this.b.script(
        cmd,
        'pcSessionSet',
        [k.session(idHash), k.userIndex(rec.user)],
        [idHash, rec.user, sealed, Math.ceil(ttlMs), k.sessionPrefix, k.userIndexPrefix, SESSION_INDEX_PRUNE_AT],
      ),
    );
  }

  async replace(idHash: string, rec: SessionRecord, ttlMs: number): Promise<boolean> {
    if (!validIdHash(idHash)) return false;
    nonEmpty(rec.user, 'session user');
    if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs)) throw new TypeError('ttlMs must be a finite number');
    const sealed = this.box.seal(JSON.stringify(rec), this.aad(idHash));
    const k = this.b.keys;
    const n = await this.b.write((cmd) => this.b.script(cmd, 'pcSessionReplace', [k.session(idHash)], [rec.user, sealed, Math.max(1, Math.ceil(ttlMs))]));
    return Number(n) === 1;
  }

  async delete(idHash: string): Promise<boolean> {
    if (!validIdHash(idHash)) return false;
    const k = this.b.keys;
    const user = await this.b.write((cmd) =>
      this.b.script(cmd, 'pcSessionDelete', [k.session(idHash)], [idHash, k.userIndexPrefix, k.revokedChannel, this.b.origin]),
    );
    if (typeof user !== 'string') return false;
    this.b.emitRevoked(idHash, user);
    return true;
  }

  async list(user?: string): Promise<Array<{ idHash: string; rec: SessionRecord }>> {
    const k = this.b.keys;
    const out: Array<{ idHash: string; rec: SessionRecord }> = [];
    if (user !== undefined) {
      const flat = await this.b.run((cmd) => this.b.script(cmd, 'pcSessionList', [k.userIndex(user)], [k.sessionPrefix, user]));
      const arr = Array.isArray(flat) ? (flat as unknown[]) : [];
      for (let i = 0; i + 1 < arr.length; i += 2) {
        const idHash = arr[i];
        const sealed = arr[i + 1];
        if (typeof idHash !== 'string' || typeof sealed !== 'string') continue;
        const rec = this.open(idHash, user, sealed);
        if (rec) out.push({ idHash, rec });
      }
    } else {
      await this.b.run((cmd) =>
        scan(cmd, `${globEscape(k.sessionPrefix)}*`, async (keys) => {
          const rows = await Promise.all(keys.map((key) => cmd.hmget(key, 'u', 'r')));
          rows.forEach(([u, r], i) => {
            const idHash = keys[i]!.slice(k.sessionPrefix.length);
            if (u == null || r == null) return;
            const rec = this.open(idHash, u, r);
            if (rec) out.push({ idHash, rec });
          });
        }),
      );
    }
    // SCAN may return a key twice; keep one of each.
    const seen = new Set<string>();
    return out
      .filter((s) => (seen.has(s.idHash) ? false : (seen.add(s.idHash), true)))
      .sort((a, b) => a.rec.createdAt - b.rec.createdAt || (a.idHash < b.idHash ? -1 : 1));
  }

  async deleteByUser(user: string): Promise<number> {
    nonEmpty(user, 'user');
    const k = this.b.keys;
    const ids = await this.b.write((cmd) =>
      this.b.script(cmd, 'pcSessionDeleteByUser', [k.userIndex(user)], [k.sessionPrefix, user, k.revokedChannel, this.b.origin]),
    );
    const deleted = Array.isArray(ids) ? ids.filter((x): x is string => typeof x === 'string') : [];
    for (const idHash of deleted) this.b.emitRevoked(idHash, user);
    return deleted.length;
  }

  async deleteAll(): Promise<number> {
    const k = this.b.keys;
    let total = 0;
    try {
      await this.b.write((cmd) =>
        scan(cmd, `${globEscape(k.sessionPrefix)}*`, async (keys) => {
          const n = await this.b.script(cmd, 'pcSessionDeleteMany', keys, [k.userIndexPrefix, k.sessionPrefix]);
          total += Number(n);
        }),
      );
    } finally {
      // Even a partial sweep revoked sessions: say so everywhere.
      if (total > 0) {
        this.b.emitRevoked('*');
        await this.b.run((cmd) => cmd.publish(k.revokedChannel, JSON.stringify({ o: this.b.origin, all: true }))).catch(() => {});
      }
    }
    return total;
  }

  onRevoked(listener: (idHash: string | '*', user?: string) => void): void {
    this.b.onRevoked(listener);
  }
}

/** Visit every key matching `pattern` in batches (SCAN: complete for keys that exist throughout). */
async function scan(cmd: Redis, pattern: string, onBatch: (keys: string[]) => Promise<void>): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await cmd.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT);
    cursor = next;
    if (keys.length > 0) await onBatch(keys);
  } while (cursor !== '0');
}

class RedisRateStore implements RateStore {
  constructor(
    private readonly b: Backend,
    private readonly clock: Clock,
  ) {}

  async hit(key: string, windowMs: number, now: number, member?: string): Promise<number> {
    nonEmpty(key, 'rate key');
    const win = positiveMs(windowMs, 'windowMs');
    const t = epochMs(now, 'now');
    const digest = member === undefined ? '' : memberDigest(member);
    const n = await this.b.write((cmd) => this.b.script(cmd, 'pcRateHit', [this.b.keys.rate(key)], [t, win, digest, MEMBER_CAP]));
    return Number(n);
  }

  async count(key: string, now: number): Promise<number> {
    nonEmpty(key, 'rate key');
    const t = epochMs(now, 'now');
    const [e, n] = await this.b.run((cmd) => cmd.hmget(this.b.keys.rate(key), 'e', 'n'));
    if (e == null || n == null || !(t < Number(e))) return 0;
    return Number(n);
  }

  async reset(key: string): Promise<void> {
    nonEmpty(key, 'rate key');
    await this.b.run((cmd) => cmd.del(this.b.keys.rate(key)));
  }

  /** Blocks never shorten: a longer block already in force stays (lift it with `unblock`). */
  async block(key: string, until: number, reason: string): Promise<void> {
    nonEmpty(key, 'block key');
    const u = epochMs(until, 'until');
    const now = epochMs(this.clock.now(), 'now');
    const k = this.b.keys;
    await this.b.write((cmd) => this.b.script(cmd, 'pcBlock', [k.block(key), k.blockIndex], [key, u, now, String(reason)]));
  }

  async blockedUntil(key: string, now: number): Promise<{ until: number; reason: string } | null> {
    nonEmpty(key, 'block key');
    const t = epochMs(now, 'now');
    const [u, r] = await this.b.run((cmd) => cmd.hmget(this.b.keys.block(key), 'u', 'r'));
    if (u == null) return null;
    const until = Number(u);
    if (!Number.isFinite(until) || until <= t) return null;
    return { until, reason: r ?? '' };
  }

  async unblock(key: string): Promise<boolean> {
    nonEmpty(key, 'block key');
    const k = this.b.keys;
    const n = await this.b.write((cmd) => this.b.script(cmd, 'pcUnblock', [k.block(key), k.blockIndex], [key]));
    return Number(n) > 0;
  }

  async listBlocks(now: number): Promise<Array<{ key: string; until: number; reason: string }>> {
    const t = epochMs(now, 'now');
    const k = this.b.keys;
    const flat = await this.b.run((cmd) => this.b.script(cmd, 'pcListBlocks', [k.blockIndex], [t, k.blockPrefix]));
    const arr = Array.isArray(flat) ? (flat as unknown[]) : [];
    const out: Array<{ key: string; until: number; reason: string }> = [];
    for (let i = 0; i + 2 < arr.length; i += 3) {
      const key = arr[i];
      const until = Number(arr[i + 1]);
      const reason = arr[i + 2];
      if (typeof key === 'string' && Number.isFinite(until)) out.push({ key, until, reason: typeof reason === 'string' ? reason : '' });
    }
    return out;
  }

  async reserve(req: ReserveRequest, now: number): Promise<ReserveResult> {
    const t = epochMs(now, 'now');
    const k = this.b.keys;
    const keys: string[] = [];
    const args: Array<string | number> = [req.blocks.length, t, MEMBER_CAP, req.seen ? memberDigest(req.seen.member) : ''];
    for (const b of req.blocks) {
      nonEmpty(b, 'block key');
      keys.push(k.block(b));
    }
    for (const c of req.counters) {
      nonEmpty(c.key, 'rate key');
      keys.push(k.rate(c.key));
      args.push(positiveMs(c.windowMs, 'windowMs'), c.member === undefined ? '' : memberDigest(c.member), c.max);
    }
    if (req.seen) {
      nonEmpty(req.seen.key, 'rate key');
      keys.push(k.rate(req.seen.key));
    }
    const r = (await this.b.write((cmd) => this.b.script(cmd, 'pcRateReserve', keys, args))) as unknown[];
    if (Number(r[0]) === 1) {
      const counts: number[] = [];
      const added: boolean[] = [];
      for (let i = 1; i + 1 < r.length; i += 2) {
        counts.push(Number(r[i]));
        added.push(Number(r[i + 1]) === 1);
      }
      return { ok: true, counts, added };
    }
    if (r[1] === 's') return { ok: false, seen: true };
    if (r[1] === 'b') {
      const i = Number(r[2]) - 1;
      return { ok: false, block: { key: req.blocks[i]!, until: Number(r[3]), reason: String(r[4] ?? '') } };
    }
    return { ok: false, full: Number(r[2]) - 1 };
  }

  async unhit(key: string, now: number, member?: string): Promise<void> {
    nonEmpty(key, 'rate key');
    const t = epochMs(now, 'now');
    const digest = member === undefined ? '' : memberDigest(member);
    await this.b.run((cmd) => this.b.script(cmd, 'pcRateUnhit', [this.b.keys.rate(key)], [t, digest]));
  }

  async acquire(key: string, max: number, ttlMs: number, _now: number): Promise<boolean> {
    nonEmpty(key, 'slot key');
    const r = await this.b.run((cmd) => this.b.script(cmd, 'pcSlotAcquire', [this.b.keys.claim(`slot:${key}`)], [max, Math.max(1, Math.ceil(ttlMs))]));
    return Number(r) === 1;
  }

  async releaseSlot(key: string): Promise<void> {
    nonEmpty(key, 'slot key');
    await this.b.run((cmd) => this.b.script(cmd, 'pcSlotRelease', [this.b.keys.claim(`slot:${key}`)], []));
  }

  async claim(key: string, ttlMs: number, now: number): Promise<boolean> {
    nonEmpty(key, 'claim key');
    if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs)) throw new TypeError('ttlMs must be a finite number');
    const ttl = Math.max(1, Math.ceil(ttlMs));
    const t = epochMs(now, 'now');
    const r = await this.b.write((cmd) => cmd.set(this.b.keys.claim(key), String(t), 'PX', ttl, 'NX'));
    return r === 'OK';
  }
}

class RedisStateStore implements StateStore {
  constructor(
    private readonly b: Backend,
    private readonly clock: Clock,
    private readonly maxKnownNetworks: number,
  ) {}

  async getTotp(user: string): Promise<TotpRecord | null> {
    nonEmpty(user, 'user');
    const raw = await this.b.run((cmd) => cmd.get(this.b.keys.totp(user)));
    return raw === null ? null : parseTotp(raw);
  }

  async setTotp(user: string, rec: TotpRecord | null): Promise<void> {
    nonEmpty(user, 'user');
    const key = this.b.keys.totp(user);
    if (rec === null) {
      await this.b.write((cmd) => cmd.del(key));
      return;
    }
    const json = JSON.stringify({ secret: rec.secret, enrolledAt: rec.enrolledAt, source: rec.source });
    await this.b.write((cmd) => cmd.set(key, json));
  }

  async setRecoveryCodes(user: string, hashes: string[]): Promise<void> {
    nonEmpty(user, 'user');
    for (const h of hashes) nonEmpty(h, 'recovery code hash');
    await this.b.write((cmd) => this.b.script(cmd, 'pcSetRecoveryCodes', [this.b.keys.recovery(user)], hashes));
  }

  async consumeRecoveryCode(user: string, hash: string): Promise<boolean> {
    nonEmpty(user, 'user');
    if (typeof hash !== 'string' || hash.length === 0) return false;
    const n = await this.b.write((cmd) => cmd.srem(this.b.keys.recovery(user), hash));
    return n === 1;
  }

  async countRecoveryCodes(user: string): Promise<number> {
    nonEmpty(user, 'user');
    return this.b.run((cmd) => cmd.scard(this.b.keys.recovery(user)));
  }

  async listAppPasswords(user: string): Promise<AppPasswordRecord[]> {
    nonEmpty(user, 'user');
    const values = await this.b.run((cmd) => cmd.hvals(this.b.keys.appPasswords(user)));
    return values.map(parseAppPassword).sort((a, b) => a.createdAt - b.createdAt || (a.label < b.label ? -1 : 1));
  }

  /** Adds, or replaces the record with the same label (e.g. to record `lastUsedAt`). */
  async addAppPassword(user: string, rec: AppPasswordRecord): Promise<void> {
    nonEmpty(user, 'user');
    nonEmpty(rec.label, 'app password label');
    const json = JSON.stringify({ label: rec.label, hash: rec.hash, createdAt: rec.createdAt, lastUsedAt: rec.lastUsedAt });
    await this.b.write((cmd) => cmd.hset(this.b.keys.appPasswords(user), rec.label, json));
  }

  async revokeAppPassword(user: string, label: string): Promise<boolean> {
    nonEmpty(user, 'user');
    const n = await this.b.write((cmd) => cmd.hdel(this.b.keys.appPasswords(user), label));
    return n === 1;
  }

  async listPasskeys(user: string): Promise<PasskeyRecord[]> {
    nonEmpty(user, 'user');
    const values = await this.b.run((cmd) => cmd.hvals(this.b.keys.passkeys(user)));
    return values.map(parsePasskey).sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
  }

  async addPasskey(user: string, rec: PasskeyRecord, max: number): Promise<boolean> {
    nonEmpty(user, 'user');
    nonEmpty(rec.id, 'credential id');
    const r = await this.b.write((cmd) => this.b.script(cmd, 'pcPasskeyAdd', [this.b.keys.passkeys(user), this.b.keys.passkeyOwners], [rec.id, passkeyJson(rec), max, user]));
    return Number(r) === 1;
  }

  async usePasskey(user: string, id: string, counter: number, now: number): Promise<'ok' | 'cloned' | 'gone'> {
    nonEmpty(user, 'user');
    nonEmpty(id, 'credential id');
    const r = await this.b.write((cmd) => this.b.script(cmd, 'pcPasskeyUse', [this.b.keys.passkeys(user)], [id, counter, epochMs(now, 'now')]));
    // a credential stored before the owner index existed is indexed at its next use
    if (r === 'ok') await this.b.write((cmd) => cmd.hsetnx(this.b.keys.passkeyOwners, id, user));
    return r === 'ok' || r === 'cloned' ? r : 'gone';
  }

  async renamePasskey(user: string, id: string, name: string): Promise<boolean> {
    nonEmpty(user, 'user');
    const r = await this.b.write((cmd) => this.b.script(cmd, 'pcPasskeyRename', [this.b.keys.passkeys(user)], [id, name]));
    return Number(r) === 1;
  }

  async removePasskey(user: string, id: string): Promise<boolean> {
    nonEmpty(user, 'user');
    const n = await this.b.write((cmd) => this.b.script(cmd, 'pcPasskeyRemove', [this.b.keys.passkeys(user), this.b.keys.passkeyOwners], [id, user]));
    return Number(n) === 1;
  }

  async passkeyOwner(id: string): Promise<string | null> {
    if (!id) return null;
    return this.b.run((cmd) => cmd.hget(this.b.keys.passkeyOwners, id));
  }

  /** Most recently seen last. */
  async knownNetworks(user: string): Promise<string[]> {
    nonEmpty(user, 'user');
    return this.b.run((cmd) => cmd.zrange(this.b.keys.knownNetworks(user), 0, -1));
  }

  async addKnownNetwork(user: string, key: string): Promise<boolean> {
    nonEmpty(user, 'user');
    nonEmpty(key, 'network key');
    const now = epochMs(this.clock.now(), 'now');
    const added = await this.b.run((cmd) =>
      this.b.script(cmd, 'pcKnownNetworkAdd', [this.b.keys.knownNetworks(user)], [key, now, this.maxKnownNetworks]),
    );
    return Number(added) === 1;
  }

  async getLockdown(): Promise<LockdownState | null> {
    const raw = await this.b.run((cmd) => cmd.get(this.b.keys.lockdown));
    return raw === null ? null : parseLockdown(raw);
  }

  async setLockdown(state: LockdownState): Promise<void> {
    if (!isLockdownState(state)) throw new TypeError('invalid lockdown state');
    const s: LockdownState = { on: state.on, since: state.since, by: state.by };
    const k = this.b.keys;
    await this.b.write((cmd) =>
      this.b.script(cmd, 'pcSetLockdown', [k.lockdown], [JSON.stringify(s), k.lockdownChannel, JSON.stringify({ o: this.b.origin, s })]),
    );
    this.b.emitLockdown(s);
  }

  async forgetUser(user: string): Promise<void> {
    nonEmpty(user, 'user');
    const k = this.b.keys;
    await this.b.write((cmd) => this.b.script(cmd, 'pcPasskeyForget', [k.passkeys(user), k.passkeyOwners], [user]));
    await this.b.write((cmd) => cmd.del(k.totp(user), k.recovery(user), k.appPasswords(user), k.knownNetworks(user), k.passkeys(user)));
  }
}

/**
 * Connect to Redis and return the three stores over it. Resolves once both connections
 * (commands and pub/sub) are up; rejects with PC_STORE_UNAVAILABLE if Redis cannot be
 * reached within `connectTimeoutMs`, and with PC_CONFIG_INVALID for a URL that is not
 * `redis://` or `rediss://`. After that, outages are survived: calls reject with
 * PC_STORE_UNAVAILABLE and the store reconnects by itself.
 */
export async function createRedisStores(opts: RedisStoreOptions): Promise<RedisStores> {
  let target: Target;
  if (isSentinelUrl(opts.url)) {
    try {
      target = { kind: 'sentinel', sentinel: parseSentinelUrl(opts.url) };
    } catch (e) {
      throw new PortcullisError('PC_CONFIG_INVALID', `store: ${asError(e).message}`);
    }
  } else {
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw new PortcullisError('PC_CONFIG_INVALID', 'store: not a valid redis://, rediss:// or redis-sentinel:// URL');
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      throw new PortcullisError('PC_CONFIG_INVALID', 'store: the URL must start with redis://, rediss:// or redis-sentinel://');
    }
    target = { kind: 'server', url };
  }
  const prefix = opts.prefix ?? (target.kind === 'sentinel' ? target.sentinel.prefix : undefined) ?? DEFAULT_PREFIX;
  if (typeof prefix !== 'string' || prefix.length === 0) throw new PortcullisError('PC_CONFIG_INVALID', 'store: the key prefix must not be empty');
  const maxKnownNetworks = opts.maxKnownNetworks ?? 50;
  if (!Number.isInteger(maxKnownNetworks) || maxKnownNetworks < 1) throw new TypeError('maxKnownNetworks must be a positive integer');

  const backend = new Backend(opts, target, prefix);
  await backend.start(target);
  return {
    sessions: new RedisSessionStore(backend, opts.box),
    rates: new RedisRateStore(backend, opts.clock),
    state: new RedisStateStore(backend, opts.clock, maxKnownNetworks),
    healthy: () => backend.isHealthy(),
    close: () => backend.close(),
    onLockdown: (listener) => backend.onLockdown(listener),
  };
}

export type { LockdownState };
