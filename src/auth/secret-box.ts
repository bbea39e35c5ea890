/**
 * Encryption at rest for per-user secrets (TOTP seeds) and keyed hashing (recovery codes).
 *
 * One 32-byte master key, from `PORTCULLIS_SECRET_KEY` (base64 or hex), from the file named by
 * `PORTCULLIS_SECRET_KEY_FILE` (a mounted container secret), or from `data_dir/secret.key`
 * (created 0600 on first start). Two sub-keys are derived from it with
 * HKDF-SHA256 under distinct labels, so the encryption key and the HMAC key are never the same
 * bytes:
 *
 * - `seal`/`open`: AES-256-GCM, a fresh random 96-bit IV per value, and the value's purpose
 *   (e.g. `totp:alice`) as additional authenticated data. A sealed secret copied onto another
 *   user's record, or used for another purpose, fails to open.
 *   Format: `v1.<iv>.<ciphertext>.<tag>`, each part base64url.
 * - `hmac(purpose, value)`: HMAC-SHA256, purpose-separated, base64url.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cryptoRandom, type Random } from '../clock.js';
import { PortcullisError } from '../errors.js';
import { assertPrivateFile, createFileExclusive } from '../util/atomic-write.js';

export const SECRET_KEY_ENV = 'PORTCULLIS_SECRET_KEY';
export const SECRET_KEY_FILE_ENV = 'PORTCULLIS_SECRET_KEY_FILE';
export const SECRET_KEY_FILE = 'secret.key';

const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
/** What a purpose (AAD or HMAC domain) may contain: enough for `totp:alice@example.org`. */
const PURPOSE_RE = /^[A-Za-z0-9:._@-]{1,200}$/;
const B64URL_RE = /^[A-Za-z0-9_-]*$/;
/** Sealed values are small secrets; refuse to parse anything huge. */
const MAX_SEALED = 64 * 1024;

export class SecretBox {
  private readonly encKey: Buffer;
  private readonly macKey: Buffer;
  private readonly random: Random;

  /** `masterKey`: exactly 32 bytes. */
  constructor(masterKey: Uint8Array, random: Random = cryptoRandom) {
    if (masterKey.length !== KEY_BYTES) throw new PortcullisError('PC_CONFIG_INVALID', `the secret key must be ${KEY_BYTES} bytes`);
    this.encKey = derive(masterKey, 'portcullis/secret-box/v1/aes-256-gcm');
    this.macKey = derive(masterKey, 'portcullis/secret-box/v1/hmac-sha256');
    this.random = random;
  }

  /**
   * The key from env `PORTCULLIS_SECRET_KEY` if set (refused unless it decodes to 32 bytes), else
   * from the file env `PORTCULLIS_SECRET_KEY_FILE` names (never created; setting both is refused),
   * else from `dataDir/secret.key`, which is created (0600, in a 0700 directory if that is new)
   * when missing. A key file others can access is refused; one the group may read (0640) is
   * accepted when root or this user owns it, as Kubernetes Secret volumes mount it
   * (see assertPrivateFile).
   */
  static async fromDataDir(dataDir: string, env: NodeJS.ProcessEnv, random: Random = cryptoRandom): Promise<SecretBox> {
    const fromEnv = env[SECRET_KEY_ENV];
    const keyFile = env[SECRET_KEY_FILE_ENV];
    if (fromEnv !== undefined && fromEnv !== '' && keyFile !== undefined && keyFile !== '') {
      throw new PortcullisError('PC_CONFIG_INVALID', `set ${SECRET_KEY_ENV} or ${SECRET_KEY_FILE_ENV}, not both`);
    }
    if (fromEnv !== undefined && fromEnv !== '') return new SecretBox(decodeKey(fromEnv, SECRET_KEY_ENV), random);
    if (keyFile !== undefined && keyFile !== '') {
      let text: string;
      try {
        await assertPrivateFile(keyFile);
        text = await readFile(keyFile, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new PortcullisError('PC_CONFIG_INVALID', `${SECRET_KEY_FILE_ENV}: ${keyFile}: no such file`);
        }
        throw e;
      }
      return new SecretBox(decodeKey(text.trim(), `${SECRET_KEY_FILE_ENV} (${keyFile})`), random);
    }
    const file = join(dataDir, SECRET_KEY_FILE);
    if ((await readIfExists(file)) === null) {
      await mkdir(dataDir, { recursive: true, mode: 0o700 });
      const fresh = random.bytes(KEY_BYTES);
      // Exclusive create: if two workers start at once, both end up with the winner's key.
      await createFileExclusive(file, `${fresh.toString('base64')}\n`, 0o600);
    }
    await assertPrivateFile(file);
    const text = await readFile(file, 'utf8');
    return new SecretBox(decodeKey(text.trim(), file), random);
  }

  /** Encrypt `plaintext`, bound to `aad` (the value's purpose, e.g. `totp:alice`). */
  seal(plaintext: string, aad: string): string {
    checkPurpose(aad);
    const iv = this.random.bytes(IV_BYTES);
    if (iv.length !== IV_BYTES) throw new PortcullisError('PC_CONFIG_INVALID', 'the random source returned too few bytes');
    const cipher = createCipheriv('aes-256-gcm', this.encKey, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(aad, 'utf8'));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return `v1.${iv.toString('base64url')}.${ct.toString('base64url')}.${tag.toString('base64url')}`;
  }

  /**
   * Decrypt a value sealed with the same key and `aad`. A value sealed under another key or
   * purpose, tampered with, or not in the v1 format throws PC_CONFIG_INVALID (the stored data
   * and the key do not belong together: an operator problem, never a user's).
   */
  open(sealed: string, aad: string): string {
    checkPurpose(aad);
    const parts = typeof sealed === 'string' && sealed.length <= MAX_SEALED ? sealed.split('.') : [];
    const [v, ivS, ctS, tagS] = parts;
    if (parts.length !== 4 || v !== 'v1' || ![ivS, ctS, tagS].every((p) => p !== undefined && B64URL_RE.test(p))) {
      throw unopenable();
    }
    const iv = Buffer.from(ivS!, 'base64url');
    const ct = Buffer.from(ctS!, 'base64url');
    const tag = Buffer.from(tagS!, 'base64url');
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw unopenable();
    try {
      const d = createDecipheriv('aes-256-gcm', this.encKey, iv, { authTagLength: TAG_BYTES });
      d.setAAD(Buffer.from(aad, 'utf8'));
      d.setAuthTag(tag);
      return Buffer.concat([d.update(ct), d.final()]).toString('utf8');
    } catch {
      throw unopenable();
    }
  }

  /**
   * Keyed hash of `value` for `purpose` (e.g. `recovery:alice`): HMAC-SHA256 over
   * `purpose "\n" value`, base64url. The purpose cannot contain a newline, so no two
   * (purpose, value) pairs share an input.
   */
  hmac(purpose: string, value: string): string {
    checkPurpose(purpose);
    return createHmac('sha256', this.macKey).update(purpose, 'utf8').update('\n').update(value, 'utf8').digest('base64url');
  }
}

async function readIfExists(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

function derive(master: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), info, KEY_BYTES));
}

function checkPurpose(p: string): void {
  if (typeof p !== 'string' || !PURPOSE_RE.test(p)) {
    throw new PortcullisError('PC_CONFIG_INVALID', 'invalid secret-box purpose');
  }
}

function unopenable(): PortcullisError {
  return new PortcullisError('PC_CONFIG_INVALID', 'a sealed secret could not be opened (wrong key, wrong purpose, or altered data)');
}

/** 64 hex digits, or base64 / base64url (padding optional) of exactly 32 bytes. */
function decodeKey(text: string, source: string): Buffer {
  let key: Buffer | null = null;
  if (/^[0-9a-fA-F]{64}$/.test(text)) key = Buffer.from(text, 'hex');
  else if (/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(text)) key = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (key === null || key.length !== KEY_BYTES) {
    // Never echo the value: it is (a mistyped) secret.
    throw new PortcullisError(
      'PC_CONFIG_INVALID',
      `${source} must hold a 32-byte key as 64 hex digits or base64 (e.g. the output of: openssl rand -base64 32)`,
    );
  }
  return key;
}
