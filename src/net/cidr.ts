import { BlockList } from 'node:net';
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
  const prefix = Number(s.slice(slash + 1));
  if (!Number.isInteger(prefix)) return false;
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

/** An immutable set of CIDRs with a fast membership test (node's BlockList). */
export class CidrSet {
  readonly entries: readonly Cidr[];
  private readonly list = new BlockList();

  constructor(entries: Cidr[]) {
    this.entries = Object.freeze([...entries]);
    for (const c of entries) this.list.addSubnet(c.network, c.prefix, c.family === 4 ? 'ipv4' : 'ipv6');
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
    if (this.entries.length === 0) return false;
    const p = parseIp(ip);
    if (!p) return false;
    return this.list.check(p.address, p.family === 4 ? 'ipv4' : 'ipv6');
  }

  union(other: CidrSet): CidrSet {
    return new CidrSet([...this.entries, ...other.entries]);
  }

  toStrings(): string[] {
    return this.entries.map((e) => e.text);
  }
}
