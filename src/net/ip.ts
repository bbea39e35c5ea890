import { isIPv4, isIPv6 } from 'node:net';

export type IpFamily = 4 | 6;

export interface ParsedIp {
  family: IpFamily;
  /** Canonical text: IPv4 dotted quad, IPv6 compressed lower case; IPv4-mapped IPv6 becomes IPv4. */
  address: string;
}

/** Strictly parse an IP address (no zone ids, no leading zeros); IPv4-mapped IPv6 is normalised to IPv4. */
export function parseIp(input: string): ParsedIp | null {
  if (typeof input !== 'string' || input.length === 0 || input.length > 45) return null;
  if (isIPv4(input)) return { family: 4, address: input };
  if (!isIPv6(input) || input.includes('%')) return null;
  const bytes = ipv6ToBytes(input);
  if (!bytes) return null;
  if (isMapped(bytes)) return { family: 4, address: `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}` };
  return { family: 6, address: bytesToIpv6(bytes) };
}

/** Canonical address text, or null when the input is not an IP address. */
export function normaliseIp(input: string): string | null {
  return parseIp(input)?.address ?? null;
}

function isMapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

export function ipv4ToBytes(s: string): Uint8Array {
  return Uint8Array.from(s.split('.').map(Number));
}

export function ipv6ToBytes(s: string): Uint8Array | null {
  let text = s.toLowerCase();
  const out = new Uint8Array(16);
  // embedded IPv4 tail
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  let tailWords: number[] = [];
  if (tail.includes('.')) {
    if (!isIPv4(tail)) return null;
    const b = ipv4ToBytes(tail);
    tailWords = [(b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!];
    text = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const words = halves.length === 2 ? 8 - head.length - rest.length : 0;
  // `::` stands for at least one group; more than eight groups is not an address (and `new Array(-1)` throws)
  if (halves.length === 2 && words < 1) return null;
  const all = [...head, ...new Array(words).fill('0'), ...rest];
  if (all.length !== 8) return null;
  for (let i = 0; i < 8; i++) {
    const w = parseInt(all[i]!, 16);
    if (!/^[0-9a-f]{1,4}$/.test(all[i]!) || Number.isNaN(w)) return null;
    out[i * 2] = w >> 8;
    out[i * 2 + 1] = w & 0xff;
  }
  if (tailWords.length) {
    out[12] = tailWords[0]! >> 8;
    out[13] = tailWords[0]! & 0xff;
    out[14] = tailWords[1]! >> 8;
    out[15] = tailWords[1]! & 0xff;
  }
  return out;
}

export function bytesToIpv6(b: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i]! << 8) | b[i + 1]!);
  // longest run of zeros (length >= 2) is compressed, per RFC 5952
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}

export function bytesToIp(b: Uint8Array): string {
  return b.length === 4 ? Array.from(b).join('.') : bytesToIpv6(b);
}

/** The address with every bit past `prefix` cleared. */
export function maskBytes(b: Uint8Array, prefix: number): Uint8Array {
  const out = Uint8Array.from(b);
  for (let i = 0; i < out.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    out[i] = out[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

/**
 * The key under which attempts from one source are counted: an IPv4 address as is,
 * an IPv6 address grouped to its `/ipv6Prefix` network (one subscriber usually holds a whole /64).
 */
export function sourceKey(ip: string, ipv6Prefix: number): string {
  const p = parseIp(ip);
  if (!p) return ip;
  if (p.family === 4) return p.address;
  const b = ipv6ToBytes(p.address)!;
  return `${bytesToIpv6(maskBytes(b, ipv6Prefix))}/${ipv6Prefix}`;
}

/**
 * The network an address belongs to, for familiarity and for grouping attack sources: the /24 of
 * an IPv4 address, the /ipv6Prefix of an IPv6 one (`192.0.2.0/24`, `2001:db8:1:2::/64`). Input
 * that is not an IP address is returned unchanged (it then matches no known network).
 */
export function networkKey(ip: string, ipv6Prefix: number): string {
  const p = parseIp(ip);
  if (!p) return ip;
  if (p.family === 4) return `${p.address.slice(0, p.address.lastIndexOf('.'))}.0/24`;
  return `${bytesToIpv6(maskBytes(ipv6ToBytes(p.address)!, ipv6Prefix))}/${ipv6Prefix}`;
}
