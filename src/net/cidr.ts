import IPCIDR from 'ip-cidr';
import { bytesToIp, ipv4ToBytes, ipv6ToBytes, maskBytes, parseIp, type IpFamily } from './ip.js';

export interface Cidr {
  family: IpFamily;
  /** Network address (host bits clear), canonical text. */
  network: string;
  prefix: number;
  /** Canonical `network/prefix`. */
  text: string;
}

export type CidrParse = { ok: true; cidr: Cidr } | { ok: false; error: string };

/**
 * Parse a CIDR strictly: a bare address means a single host; host bits must be clear
 * (`10.0.0.1/24` is refused as a likely typo); IPv4-mapped IPv6 ranges become IPv4.
 */
export function parseCidr(input: string): CidrParse {
  if (typeof input !== 'string') return { ok: false, error: 'must be a string' };
  const s = input.trim();
  if (s !== input || s.length === 0) return { ok: false, error: `"${input}" is not a CIDR (stray white space)` };
  const slash = s.indexOf('/');
  const addrText = slash < 0 ? s : s.slice(0, slash);
  const prefixText = slash < 0 ? null : s.slice(slash + 1);
  const ip = parseIp(addrText);
  if (!ip) return { ok: false, error: `"${input}" is not a valid IPv4 or IPv6 address or CIDR` };
  const mapped = ip.family === 4 && addrText.includes(':');
  const maxBits = mapped ? 128 : ip.family === 4 ? 32 : 128;
  let prefix = maxBits;
  if (prefixText !== null) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) return { ok: false, error: `"${input}" has an invalid prefix length` };
    prefix = Number(prefixText);
    if (prefix > maxBits) return { ok: false, error: `"${input}" has a prefix longer than ${maxBits} bits` };
  }
  if (mapped) {
    if (prefix < 96) return { ok: false, error: `"${input}" mixes IPv4-mapped and native IPv6 addresses` };
    prefix -= 96;
  }
  const bytes = ip.family === 4 ? ipv4ToBytes(ip.address) : ipv6ToBytes(ip.address)!;
  const masked = maskBytes(bytes, prefix);
  const network = bytesToIp(masked);
  if (network !== ip.address) {
    return { ok: false, error: `"${input}" has host bits set; did you mean ${network}/${prefix}?` };
  }
  const text = `${network}/${prefix}`;
  // cross-check with ip-cidr, the reference parser
  if (!IPCIDR.isValidCIDR(text)) return { ok: false, error: `"${input}" is not a valid CIDR` };
  return { ok: true, cidr: { family: ip.family, network, prefix, text } };
}

/**
 * Whether a trusted-proxy range is so wide that it would let anyone forge client addresses:
 * all addresses, all of IPv4, or all of IPv4 through the `::ffff:0:0/96` mapped range.
 */
export function coversEveryone(input: string): boolean {
  const s = input.trim();
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const addr = s.slice(0, slash);
  const prefixText = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) return false;
  const prefix = Number(prefixText);
  if (!addr.includes(':')) return prefix === 0;
  const b = ipv6ToBytes(addr);
  if (!b) return false;
  if (prefix > 96) return false;
  // the range contains ::ffff:0:0/96 (or ::/96) when its first `prefix` bits match them
  const mappedNet = new Uint8Array(16);
  mappedNet[10] = 0xff;
  mappedNet[11] = 0xff;
  const compatNet = new Uint8Array(16);
  const same = (x: Uint8Array, y: Uint8Array) => maskBytes(x, prefix).every((v, i) => v === maskBytes(y, prefix)[i]);
  return same(b, mappedNet) || same(b, compatNet);
}

/**
 * An immutable set of CIDRs with a fast membership test. IPv4 ranges are (network, mask) pairs
 * of 32-bit integers and a dotted quad is parsed without allocating; node's BlockList costs
 * microseconds per lookup (it builds a native SocketAddress each time) and this runs several
 * times per request. An IPv6 range that contains ::ffff:0:0/96 also covers the IPv4 addresses
 * in it, as with BlockList.
 */
export class CidrSet {
  readonly entries: readonly Cidr[];
  /** Pairs of (network, mask), unsigned 32-bit. */
  private readonly v4: Uint32Array;
  private readonly v6: ReadonlyArray<{ bytes: Uint8Array; prefix: number }>;

  constructor(entries: Cidr[]) {
    this.entries = Object.freeze([...entries]);
    const v4: number[] = [];
    const v6: Array<{ bytes: Uint8Array; prefix: number }> = [];
    const mapped = new Uint8Array(16);
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    for (const c of entries) {
      if (c.family === 4) {
        v4.push(u32(ipv4ToBytes(c.network)), maskOf(c.prefix));
        continue;
      }
      const bytes = ipv6ToBytes(c.network)!;
      v6.push({ bytes, prefix: c.prefix });
      // the IPv4 block ::ffff:0:0/96 lies inside this range: all of IPv4 is in the set
      if (c.prefix <= 96 && prefixMatch(mapped, bytes, c.prefix)) v4.push(0, 0);
    }
    this.v4 = Uint32Array.from(v4);
    this.v6 = Object.freeze(v6);
    Object.freeze(this);
  }

  /** Parse strictly; throws on the first invalid entry (config validation reports them all beforehand). */
  static parse(entries: readonly string[]): CidrSet {
    return new CidrSet(
      entries.map((e) => {
        const r = parseCidr(e);
        if (!r.ok) throw new TypeError(r.error);
        return r.cidr;
      }),
    );
  }

  static readonly empty = new CidrSet([]);

  get size(): number {
    return this.entries.length;
  }

  /** Whether `ip` (any textual form; mapped IPv6 is normalised) lies in the set. */
  contains(ip: string): boolean {
    if (this.entries.length === 0 || typeof ip !== 'string') return false;
    let a = dottedQuad(ip);
    if (a < 0) {
      const p = parseIp(ip);
      if (!p) return false;
      if (p.family === 6) return this.containsV6(ipv6ToBytes(p.address)!);
      a = dottedQuad(p.address);
    }
    const v4 = this.v4;
    for (let i = 0; i < v4.length; i += 2) if ((a & v4[i + 1]!) >>> 0 === v4[i]) return true;
    return false;
  }

  private containsV6(b: Uint8Array): boolean {
    for (const r of this.v6) if (prefixMatch(b, r.bytes, r.prefix)) return true;
    return false;
  }

  union(other: CidrSet): CidrSet {
    return new CidrSet([...this.entries, ...other.entries]);
  }

  toStrings(): string[] {
    return this.entries.map((e) => e.text);
  }
}

function u32(b: Uint8Array): number {
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Whether the first `prefix` bits of `a` and `b` agree. */
function prefixMatch(a: Uint8Array, b: Uint8Array, prefix: number): boolean {
  const full = prefix >> 3;
  for (let i = 0; i < full; i++) if (a[i] !== b[i]) return false;
  const rest = prefix & 7;
  if (rest === 0) return true;
  const m = (0xff << (8 - rest)) & 0xff;
  return (a[full]! & m) === (b[full]! & m);
}

/**
 * `s` as a strict dotted quad (no leading zeros, each part 0..255, nothing else), as an unsigned
 * 32-bit number; -1 for anything else (which the caller hands to parseIp).
 */
function dottedQuad(s: string): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  const n = s.length;
  if (n < 7 || n > 15) return -1;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
      continue;
    }
    const d = c - 0x30;
    if (d < 0 || d > 9) return -1;
    if (digits === 1 && part === 0) return -1; // leading zero
    part = part * 10 + d;
    if (part > 255) return -1;
    digits++;
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + part;
}

/** The loopback networks (127.0.0.0/8 and ::1). */
export const LOOPBACK = CidrSet.parse(['127.0.0.0/8', '::1/128']);
