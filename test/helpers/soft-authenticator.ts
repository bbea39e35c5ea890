/**
 * A software WebAuthn authenticator for tests: an ECDSA P-256 key (node:crypto), hand-made CBOR
 * for the attestation object (fmt "none") and authenticator data, and the client data a browser
 * would write. It answers the options `/.portcullis/passkey` hands out with the JSON the portal's
 * script would post, and lets a test lie where a browser never would (another origin, a counter
 * going backwards, another session's challenge).
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';

// ---- minimal CBOR (major types 0, 1, 2, 3, 5)

function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) {
    const b = Buffer.alloc(3);
    b[0] = (major << 5) | 25;
    b.writeUInt16BE(n, 1);
    return b;
  }
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

export type Cbor = number | string | Buffer | Map<Cbor, Cbor>;

export function cbor(v: Cbor): Buffer {
  if (typeof v === 'number') return v >= 0 ? head(0, v) : head(1, -1 - v);
  if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    return Buffer.concat([head(3, b.length), b]);
  }
  if (Buffer.isBuffer(v)) return Buffer.concat([head(2, v.length), v]);
  const parts: Buffer[] = [head(5, v.size)];
  for (const [k, x] of v) parts.push(cbor(k), cbor(x));
  return Buffer.concat(parts);
}

const b64u = (b: Buffer | string) => Buffer.from(b).toString('base64url');
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest();

export interface CreationOptions {
  challenge: string;
  rp: { id?: string; name: string };
  user: { id: string; name: string };
}

export interface RequestOptions {
  challenge: string;
  rpId?: string;
  allowCredentials?: Array<{ id: string }>;
}

export class SoftAuthenticator {
  readonly credentialId: Buffer = randomBytes(32);
  private readonly privateKey: KeyObject;
  private readonly cose: Buffer;
  /** The signature counter the next assertion carries (incremented before signing). */
  counter = 0;
  /** Whether the UV flag is set (a PIN or biometric checked); a test may clear it. */
  uv = true;
  /** Whether the credential is discoverable (resident): it then returns the user handle. */
  discoverable = true;
  /** The user handle given at registration (kept by a discoverable credential). */
  userHandle: string | undefined;

  constructor(
    /** The origin the "browser" puts in the client data. */
    public origin: string,
    /** Whether this authenticator keeps a counter (0 forever when false, as many passkeys do). */
    readonly counting = true,
  ) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.privateKey = privateKey;
    const jwk = publicKey.export({ format: 'jwk' });
    this.cose = cbor(
      new Map<Cbor, Cbor>([
        [1, 2], // kty: EC2
        [3, -7], // alg: ES256
        [-1, 1], // crv: P-256
        [-2, Buffer.from(jwk.x!, 'base64url')],
        [-3, Buffer.from(jwk.y!, 'base64url')],
      ]),
    );
  }

  get id(): string {
    return b64u(this.credentialId);
  }

  private authData(rpId: string, attested: boolean): Buffer {
    const flags = 0x01 | (this.uv ? 0x04 : 0) | (attested ? 0x40 : 0); // UP, UV, AT
    const ctr = Buffer.alloc(4);
    ctr.writeUInt32BE(this.counter >>> 0, 0);
    const parts: Buffer[] = [sha256(rpId), Buffer.from([flags]), ctr];
    if (attested) {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(this.credentialId.length, 0);
      parts.push(Buffer.alloc(16), len, this.credentialId, this.cose);
    }
    return Buffer.concat(parts);
  }

  private clientData(type: 'webauthn.create' | 'webauthn.get', challenge: string): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin: this.origin, crossOrigin: false }));
  }

  /** navigator.credentials.create(), as the portal's script posts it. */
  register(o: CreationOptions, rpId = o.rp.id!): Record<string, unknown> {
    if (this.counting) this.counter++;
    if (this.discoverable) this.userHandle = o.user.id;
    const clientDataJSON = this.clientData('webauthn.create', o.challenge);
    const attestationObject = cbor(new Map<Cbor, Cbor>([['fmt', 'none'], ['attStmt', new Map()], ['authData', this.authData(rpId, true)]]));
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key',
      response: { clientDataJSON: b64u(clientDataJSON), attestationObject: b64u(attestationObject), transports: ['internal'] },
      clientExtensionResults: {},
    };
  }

  /** navigator.credentials.get(), as the portal's script posts it. */
  assert(o: RequestOptions, rpId = o.rpId!): Record<string, unknown> {
    if (this.counting) this.counter++;
    const clientDataJSON = this.clientData('webauthn.get', o.challenge);
    const authenticatorData = this.authData(rpId, false);
    const signature = sign('sha256', Buffer.concat([authenticatorData, sha256(clientDataJSON)]), this.privateKey);
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key',
      response: {
        clientDataJSON: b64u(clientDataJSON),
        authenticatorData: b64u(authenticatorData),
        signature: b64u(signature),
        ...(this.discoverable && this.userHandle ? { userHandle: this.userHandle } : {}),
      },
      clientExtensionResults: {},
    };
  }
}
