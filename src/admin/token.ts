/**
 * The admin API's bearer token (`admin.token_file`).
 *
 * On first start the gateway writes 32 random bytes (base64url, 256 bits) to the file, mode 0600,
 * creating its directory 0700 if needed; the CLI, running as the same user, reads it back. A file
 * that group or others can read is refused, like ssh refuses a private key. An admin may put a
 * token of their own in the file (at least 32 printable characters, no spaces): the gateway notices
 * a changed file within a second, so rotating the token needs no restart. A file that disappears or
 * becomes unreadable or invalid while running makes every request fail (closed) until it is fixed.
 *
 * Tokens are compared in constant time over their SHA-256 digests, so neither the content nor the
 * length of the real token leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Clock, Random } from '../clock.js';
import type { Logger } from '../audit/logger.js';
import { PortcullisError } from '../errors.js';
import { assertPrivateFile, createFileExclusive } from '../util/atomic-write.js';

const TOKEN_BYTES = 32;
/** What a token may look like: printable ASCII without spaces, 32 to 512 characters. */
const TOKEN_RE = /^[\x21-\x7e]{32,512}$/;
/** `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110 11.1). */
const BEARER_RE = /^bearer +([\x21-\x7e]{1,1024}) *$/i;
/** How often (at most) the file is checked for a new token. */
const RECHECK_MS = 1000;

/** The token presented in an `Authorization` header, or null if there is none in Bearer form. */
export function bearerToken(authorization: string | undefined): string | null {
  if (typeof authorization !== 'string') return null;
  const m = BEARER_RE.exec(authorization);
  return m ? m[1]! : null;
}

/** Parse the content of a token file: the token, or a reason it is unusable (never echoing it). */
export function parseTokenFile(text: string, file: string): string {
  const t = text.trim();
  if (!TOKEN_RE.test(t)) {
    throw new PortcullisError(
      'PC_CONFIG_INVALID',
      `${file} must hold one admin token of 32 to 512 printable characters without spaces (delete the file and restart the gateway to generate one)`,
    );
  }
  return t;
}

/**
 * Create the token file if it does not exist (0600; its directory 0700 if new). Concurrent
 * creators agree on one token. Returns true if this call created it.
 */
export async function ensureTokenFile(file: string, random: Random): Promise<boolean> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  try {
    await stat(file);
    return false;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const bytes = random.bytes(TOKEN_BYTES);
  if (bytes.length !== TOKEN_BYTES) throw new PortcullisError('PC_CONFIG_INVALID', 'the random source returned too few bytes');
  return createFileExclusive(file, `${bytes.toString('base64url')}\n`, 0o600);
}

/** Read and check a token file (the CLI side). */
export async function readTokenFile(file: string): Promise<string> {
  await assertPrivateFile(file);
  return parseTokenFile(await readFile(file, 'utf8'), file);
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The gateway's view of the token: checked in constant time, re-read when the file changes. */
export class AdminToken {
  private digest: Buffer | null;
  private signature: string;
  private checkedAt: number;
  private refreshing: Promise<void> | null = null;

  private constructor(
    private readonly file: string | null,
    token: string | null,
    signature: string,
    private readonly clock: Clock,
    private readonly logger: Logger | null,
  ) {
    this.digest = token === null ? null : digest(token);
    this.signature = signature;
    this.checkedAt = clock.now();
  }

  /** Create the file if missing, then load it. Throws PC_CONFIG_INVALID on an unsafe or invalid file. */
  static async open(file: string, deps: { random: Random; clock: Clock; logger?: Logger }): Promise<AdminToken> {
    await ensureTokenFile(file, deps.random);
    const token = await readTokenFile(file);
    return new AdminToken(file, token, await signatureOf(file), deps.clock, deps.logger ?? null);
  }

  /** A token held in memory only (tests, embedding). */
  static fixed(token: string, clock: Clock): AdminToken {
    return new AdminToken(null, parseTokenFile(token, 'the admin token'), '', clock, null);
  }

  /** Whether `presented` is the token. Constant time in the content of both. */
  matches(presented: string | null): boolean {
    const want = this.digest;
    // Compare even when there is nothing to compare against, so timing says nothing either way.
    const ok = timingSafeEqual(digest(presented ?? ''), want ?? digest('\u0000no token'));
    return ok && want !== null && presented !== null;
  }

  /** Re-read the file if it changed since the last look (at most once a second). */
  async refresh(): Promise<void> {
    if (this.file === null) return;
    if (this.clock.now() - this.checkedAt < RECHECK_MS) return;
    this.refreshing ??= this.reread().finally(() => {
      this.refreshing = null;
    });
    await this.refreshing;
  }

  private async reread(): Promise<void> {
    const file = this.file!;
    this.checkedAt = this.clock.now();
    let sig: string;
    try {
      sig = await signatureOf(file);
    } catch (e) {
      this.fail(`cannot read the admin token file: ${(e as Error).message}`);
      return;
    }
    if (sig === this.signature && this.digest !== null) return;
    try {
      const token = await readTokenFile(file);
      this.digest = digest(token);
      this.signature = sig;
      this.logger?.info({ file }, 'admin token file changed; using the new token');
    } catch (e) {
      this.signature = sig;
      this.fail((e as Error).message);
    }
  }

  private fail(message: string): void {
    if (this.digest !== null) this.logger?.error({ file: this.file }, `${message}; the admin API refuses every request until it is fixed`);
    this.digest = null;
  }
}

async function signatureOf(file: string): Promise<string> {
  const st = await stat(file);
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.mode}`;
}
