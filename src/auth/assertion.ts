/**
 * The signed identity assertion sent to apps as `X-Portcullis-Assertion`: an ES256 JWT that an
 * app verifies against `GET /.portcullis/jwks.json`, so it can trust the identity even if
 * someone reaches it without going through the gateway and forges `Remote-User`.
 *
 * Keys live in `data_dir/assertion-keys.json` (0600; private JWKs). Each key's `kid` is its
 * RFC 7638 thumbprint, written in every token's JWS header. Rotation (by `rotate()`, or on its
 * own when `rotateAfterMs` is set) retires the signing key but keeps it in the JWKS until every
 * token it signed has expired (retiredAt + MAX_TTL_SEC), then drops it.
 *
 * Several gateway workers may share the file: each rotation first merges what is on disk and
 * checks after writing that its key is there (retrying if another worker's write won), and
 * `refresh()` picks up keys another worker added.
 */
import { LRUCache } from 'lru-cache';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cryptoRandom, type Clock, type Random } from '../clock.js';
import { PortcullisError } from '../errors.js';
import type { Factor } from '../store/ports.js';
import { assertPrivateFile, createFileExclusive, writeFileAtomic } from '../util/atomic-write.js';

export const ASSERTION_KEYS_FILE = 'assertion-keys.json';
/** No assertion lives longer than this (the SPEC's "at most 5 minutes"). */
export const MAX_TTL_SEC = 300;
const ALG = 'ES256';
const FILE_VERSION = 1;
/** How often `sign` re-reads the key file to follow other workers' rotations. */
const REFRESH_MS = 30_000;
/** Reuse window of AssertionCache: signed under a minute ago, over a minute left. */
const REUSE_MS = 60_000;

export interface AssertionClaims {
  /** The app's name. */
  aud: string;
  sub: string;
  email?: string | null | undefined;
  name?: string | null | undefined;
  groups: readonly string[];
  amr: readonly Factor[];
  /** Client address the session is used from. */
  ip: string;
}

export interface SignedAssertion {
  token: string;
  /** Expiry, seconds since the epoch (the `exp` claim). */
  exp: number;
}

interface StoredKey {
  kid: string;
  createdAt: number;
  retiredAt: number | null;
  jwk: JWK;
}

interface LiveKey extends StoredKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export interface AssertionSignerOptions {
  dataDir: string;
  clock: Clock;
  /** The `iss` claim, e.g. the gateway's public origin. */
  issuer: string;
  /** Rotate the signing key on its own once it is this old (default: only on `rotate()`). */
  rotateAfterMs?: number;
  /** For `jti` (default: the CSPRNG). */
  random?: Random;
}

export class AssertionSigner {
  private keys: LiveKey[] = [];
  /** Serialises rotations within this process. */
  private rotating: Promise<void> | null = null;
  private lastRefresh: number;

  private constructor(
    private readonly file: string,
    private readonly clock: Clock,
    private readonly issuer: string,
    private readonly rotateAfterMs: number | null,
    private readonly random: Random,
  ) {
    this.lastRefresh = clock.now();
  }

  /** Load the keys from `dataDir`, creating a first key (and the file, 0600) if there is none. */
  static async open(opts: AssertionSignerOptions): Promise<AssertionSigner> {
    if (typeof opts.issuer !== 'string' || opts.issuer.length === 0) {
      throw new PortcullisError('PC_CONFIG_INVALID', 'the assertion issuer must be a non-empty string');
    }
    if (opts.rotateAfterMs !== undefined && !(Number.isFinite(opts.rotateAfterMs) && opts.rotateAfterMs >= MAX_TTL_SEC * 1000)) {
      // Rotating faster than tokens expire would pile up retired keys in the JWKS.
      throw new PortcullisError('PC_CONFIG_INVALID', `assertion key rotation must be at least ${MAX_TTL_SEC}s apart`);
    }
    await mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
    const file = join(opts.dataDir, ASSERTION_KEYS_FILE);
    const s = new AssertionSigner(file, opts.clock, opts.issuer, opts.rotateAfterMs ?? null, opts.random ?? cryptoRandom);
    let stored = await s.readFile();
    if (stored === null) {
      const first = await newKey(s.clock.now());
      await createFileExclusive(file, serialise([first]), 0o600);
      stored = await s.readFile();
      if (stored === null) throw new PortcullisError('PC_CONFIG_INVALID', `${file} vanished while being created`);
    }
    s.keys = await s.merge(stored);
    s.prune();
    if (!s.active()) await s.rotate();
    return s;
  }

  /**
   * Sign an assertion for `c`, valid for `ttlSec` seconds (default and maximum 300; larger
   * values are reduced to 300).
   */
  async sign(c: AssertionClaims, ttlSec = MAX_TTL_SEC): Promise<SignedAssertion> {
    if (!c.aud || !c.sub) throw new PortcullisError('PC_CONFIG_INVALID', 'an assertion needs an audience and a subject');
    await this.maybeRefresh();
    await this.maybeRotate();
    const key = this.active();
    if (!key) throw new PortcullisError('PC_CONFIG_INVALID', 'no assertion signing key');
    const ttl = Math.min(MAX_TTL_SEC, Math.max(1, Math.floor(Number.isFinite(ttlSec) ? ttlSec : MAX_TTL_SEC)));
    const iat = Math.floor(this.clock.now() / 1000);
    const exp = iat + ttl;
    const payload: Record<string, unknown> = { groups: [...c.groups], amr: [...c.amr], ip: c.ip };
    if (c.email) payload['email'] = c.email;
    if (c.name) payload['name'] = c.name;
    const token = await new SignJWT(payload)
      .setProtectedHeader({ alg: ALG, typ: 'JWT', kid: key.kid })
      .setIssuer(this.issuer)
      .setAudience(c.aud)
      .setSubject(c.sub)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(this.random.bytes(16).toString('base64url'))
      .sign(key.privateKey);
    return { token, exp };
  }

  /** Public keys for `/.portcullis/jwks.json`: the signing key and retired keys still needed. */
  jwks(): { keys: JWK[] } {
    this.prune();
    return { keys: this.keys.map((k) => ({ ...k.publicJwk })) };
  }

  /** The kid tokens are signed with now. */
  currentKid(): string {
    const k = this.active();
    if (!k) throw new PortcullisError('PC_CONFIG_INVALID', 'no assertion signing key');
    return k.kid;
  }

  /** Make a new signing key; the previous one is retired (still published until its tokens expire). */
  async rotate(): Promise<void> {
    await this.serialised(() => this.rotateNow());
  }

  /**
   * Pick up keys (and rotations) other workers wrote to the shared file; if the file lacks a key
   * this process knows (a concurrent writer replaced it), write the union back.
   */
  async refresh(): Promise<void> {
    const stored = (await this.readFile()) ?? [];
    this.keys = await this.merge(stored);
    this.prune();
    this.lastRefresh = this.clock.now();
    if (!sameKeys(stored, this.keys)) await writeFileAtomic(this.file, serialise(this.keys), { mode: 0o600 });
  }

  private active(): LiveKey | undefined {
    for (let i = this.keys.length - 1; i >= 0; i--) if (this.keys[i]!.retiredAt === null) return this.keys[i];
    return undefined;
  }

  private async maybeRefresh(): Promise<void> {
    if (this.clock.now() - this.lastRefresh < REFRESH_MS) return;
    try {
      await this.refresh();
    } catch {
      // A transient read problem must not stop signing: keep the keys in memory, retry later.
      this.lastRefresh = this.clock.now();
    }
  }

  private async maybeRotate(): Promise<void> {
    if (this.rotateAfterMs === null) return;
    const due = () => {
      const k = this.active();
      return !k || this.clock.now() - k.createdAt >= this.rotateAfterMs!;
    };
    if (!due()) return;
    await this.serialised(async () => {
      // Another worker (or a concurrent call here) may have rotated already: adopt its key.
      await this.refresh();
      if (due()) await this.rotateNow();
    });
  }

  private async serialised(f: () => Promise<void>): Promise<void> {
    while (this.rotating) await this.rotating.catch(() => undefined);
    const p = f();
    this.rotating = p;
    try {
      await p;
    } finally {
      this.rotating = null;
    }
  }

  /**
   * Add a fresh key to (disk ∪ memory), retire the others, write, and read back to confirm the
   * fresh key survived a concurrent writer; retry a few times if it did not.
   */
  private async rotateNow(): Promise<void> {
    const fresh = await live(await newKey(this.clock.now()));
    for (let attempt = 0; attempt < 5; attempt++) {
      const keys = await this.merge((await this.readFile()) ?? []);
      const now = this.clock.now();
      if (attempt === 0) {
        for (const k of keys) if (k.retiredAt === null) k.retiredAt = now;
        keys.push({ ...fresh });
      } else if (!keys.some((k) => k.kid === fresh.kid)) {
        // A concurrent writer replaced the file without our key. Put it back: as the newest
        // active key it wins, unless a newer one exists (then merge already retired ours).
        keys.push({ ...fresh });
      }
      this.keys = normalise(keys, now);
      this.prune();
      await writeFileAtomic(this.file, serialise(this.keys), { mode: 0o600 });
      const check = (await this.readFile()) ?? [];
      // Present is enough: if another worker has since retired it, it rotated after us.
      if (check.some((k) => k.kid === fresh.kid)) {
        this.lastRefresh = now;
        return;
      }
    }
    throw new PortcullisError('PC_CONFIG_INVALID', `could not record a new assertion key in ${this.file} (concurrent writers?)`);
  }

  /**
   * Union of `stored` and the keys in memory. A key retired on either side is retired, at the
   * latest time anyone still signed with it (for a key this process was signing with: now), so
   * it stays published until all its tokens have expired. Of the keys still active, only the
   * newest stays so: two workers that rotated at once converge on the same signing key.
   */
  private async merge(stored: StoredKey[]): Promise<LiveKey[]> {
    const now = this.clock.now();
    const byKid = new Map<string, LiveKey>();
    for (const k of this.keys) byKid.set(k.kid, { ...k });
    for (const s of stored) {
      const mine = byKid.get(s.kid);
      if (!mine) byKid.set(s.kid, await live(s));
      else if (s.retiredAt !== null) mine.retiredAt = Math.max(s.retiredAt, mine.retiredAt ?? now);
    }
    return normalise([...byKid.values()], now);
  }

  /** Drop retired keys whose every token has expired. */
  private prune(): void {
    const now = this.clock.now();
    this.keys = this.keys.filter((k) => k.retiredAt === null || now < k.retiredAt + MAX_TTL_SEC * 1000);
  }

  private async readFile(): Promise<StoredKey[] | null> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    await assertPrivateFile(this.file);
    return parseKeysFile(text, this.file);
  }
}

/** Sort by age; of the keys still active, only the newest stays so (the others retire `now`). */
function normalise(keys: LiveKey[], now: number): LiveKey[] {
  keys.sort((a, b) => a.createdAt - b.createdAt || (a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0));
  let newest = true;
  for (let i = keys.length - 1; i >= 0; i--) {
    const k = keys[i]!;
    if (k.retiredAt !== null) continue;
    if (newest) newest = false;
    else k.retiredAt = now;
  }
  return keys;
}

async function newKey(now: number): Promise<StoredKey> {
  const { privateKey } = await generateKeyPair(ALG, { extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(publicPart(jwk), 'sha256');
  return { kid, createdAt: now, retiredAt: null, jwk };
}

async function live(s: StoredKey): Promise<LiveKey> {
  if ((await calculateJwkThumbprint(publicPart(s.jwk), 'sha256')) !== s.kid) {
    throw new PortcullisError('PC_CONFIG_INVALID', `assertion key ${s.kid} does not match its thumbprint`);
  }
  const privateKey = (await importJWK(s.jwk, ALG)) as CryptoKey;
  return { ...s, privateKey, publicJwk: { ...publicPart(s.jwk), kid: s.kid, alg: ALG, use: 'sig' } };
}

function publicPart(jwk: JWK): JWK {
  return { kty: jwk.kty!, crv: jwk.crv!, x: jwk.x!, y: jwk.y! };
}

/** Whether the file already says what `keys` says (ignoring keys dropped as expired). */
function sameKeys(stored: readonly StoredKey[], keys: readonly StoredKey[]): boolean {
  const onDisk = new Map(stored.map((k) => [k.kid, k.retiredAt]));
  return keys.every((k) => onDisk.has(k.kid) && onDisk.get(k.kid) === k.retiredAt);
}

function serialise(keys: ReadonlyArray<StoredKey>): string {
  const out = keys.map(({ kid, createdAt, retiredAt, jwk }) => ({ kid, createdAt, retiredAt, jwk }));
  return `${JSON.stringify({ version: FILE_VERSION, keys: out }, null, 2)}\n`;
}

/** Strict parse: a damaged or hand-edited key file is refused, never half-used. */
function parseKeysFile(text: string, file: string): StoredKey[] {
  const bad = (why: string) => new PortcullisError('PC_CONFIG_INVALID', `${file}: ${why}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw bad('not valid JSON');
  }
  if (!isObject(doc) || doc['version'] !== FILE_VERSION || !Array.isArray(doc['keys'])) throw bad(`expected {"version": ${FILE_VERSION}, "keys": [...]}`);
  const keys: StoredKey[] = [];
  for (const [i, k] of (doc['keys'] as unknown[]).entries()) {
    if (!isObject(k)) throw bad(`keys[${i}] is not an object`);
    const { kid, createdAt, retiredAt, jwk } = k;
    if (typeof kid !== 'string' || typeof createdAt !== 'number' || !(retiredAt === null || typeof retiredAt === 'number')) {
      throw bad(`keys[${i}] needs kid, createdAt and retiredAt`);
    }
    if (!isObject(jwk) || jwk['kty'] !== 'EC' || jwk['crv'] !== 'P-256' || ![jwk['x'], jwk['y'], jwk['d']].every((v) => typeof v === 'string')) {
      throw bad(`keys[${i}].jwk is not a private P-256 key`);
    }
    keys.push({ kid, createdAt, retiredAt, jwk: { kty: 'EC', crv: 'P-256', x: jwk['x'] as string, y: jwk['y'] as string, d: jwk['d'] as string } });
  }
  return keys;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reuse of signed assertions, keyed by the caller (session, app and client address: every
 * input of the claims). A token is reused only if it was signed less than a minute ago and has
 * more than a minute left, so each session signs at most once per app per minute and an app
 * never receives a token about to expire. Bounded (LRU), so sessions cannot grow it without limit.
 */
/** Until when a token signed at `signedAt` (ms) expiring at `exp` (s) may be reused: a minute, and never in its last minute. */
export function reusableUntil(signedAt: number, exp: number): number {
  return Math.min(signedAt + REUSE_MS, exp * 1000 - REUSE_MS);
}

export class AssertionCache {
  private readonly lru: LRUCache<string, { token: string; exp: number; signedAt: number }>;

  constructor(max = 10_000) {
    this.lru = new LRUCache({ max });
  }

  get(key: string, now: number): string | null {
    return this.entry(key, now)?.token ?? null;
  }

  /**
   * The reusable token for `key` and the window in which it stays reusable ([from, until) in ms),
   * or null. A caller may keep the token for that window without asking again.
   */
  entry(key: string, now: number): { token: string; from: number; until: number } | null {
    const e = this.lru.get(key);
    if (!e) return null;
    const until = reusableUntil(e.signedAt, e.exp);
    if (now >= e.signedAt && now < until) return { token: e.token, from: e.signedAt, until };
    this.lru.delete(key);
    return null;
  }

  /** `exp` in seconds since the epoch (as returned by `sign`), `now` in ms. */
  set(key: string, token: string, exp: number, now: number): void {
    this.lru.set(key, { token, exp, signedAt: now });
  }

  /** Forget a session's tokens (e.g. on logout), given the key prefix the caller used. */
  deletePrefix(prefix: string): void {
    const doomed = [...this.lru.keys()].filter((k) => k.startsWith(prefix));
    for (const k of doomed) this.lru.delete(k);
  }
}
