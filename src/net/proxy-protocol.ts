/**
 * PROXY protocol (HAProxy, versions 1 and 2) header parser. Pure: bytes in, verdict out.
 *
 * Version 1 is one text line, at most 107 bytes with its CRLF:
 *   `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`, `PROXY TCP6 ...`, `PROXY UNKNOWN[ ...]\r\n`.
 * Version 2 is binary: a 12-byte signature, version/command, family/transport, a 16-bit length,
 * the addresses, then TLVs.
 *
 * Validation is strict (single spaces, canonical decimal ports, addresses of the announced
 * family) because the header decides which address every access rule sees: a sender that
 * cannot write it exactly is not one to believe.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { bytesToIpv6, normaliseIp } from './ip.js';

export interface ProxySource {
  address: string;
  port: number;
}

export type ProxyHeaderResult =
  | { kind: 'incomplete' }
  /** Not a PROXY header: plain traffic. */
  | { kind: 'none' }
  | { kind: 'invalid'; reason: string }
  | {
      kind: 'ok';
      /** Bytes taken by the header; what follows belongs to the proxied connection. */
      consumed: number;
      /** null for v1 UNKNOWN, v2 LOCAL, and v2 PROXY over an unspecified or UNIX family. */
      source: ProxySource | null;
      version: 1 | 2;
    };

/** The v2 signature: `\r\n\r\n\0\r\nQUIT\n`. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');

/** Longest v1 header, CRLF included (spec section 2.1). */
export const V1_MAX_LENGTH = 107;
/** Longest v2 address-and-TLV block accepted (the 16-byte fixed part comes on top). */
export const V2_MAX_PAYLOAD = 4096;

const V2_HEADER = 16;

/**
 * Which header, if any, `buf` starts with, judging by its signature only.
 * `incomplete` while `buf` is a strict prefix of a signature.
 */
export function detectProxyHeader(buf: Buffer): 'incomplete' | 'none' | 'v1' | 'v2' {
  if (buf.length === 0) return 'incomplete';
  if (buf[0] === 0x50 /* P */) return prefixVerdict(buf, V1_PREFIX, 'v1');
  if (buf[0] === 0x0d) return prefixVerdict(buf, V2_SIGNATURE, 'v2');
  return 'none';
}

function prefixVerdict<T extends 'v1' | 'v2'>(buf: Buffer, sig: Buffer, kind: T): 'incomplete' | 'none' | T {
  const n = Math.min(buf.length, sig.length);
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return 'none';
  return buf.length >= sig.length ? kind : 'incomplete';
}

/** Parse a PROXY header at the start of `buf`. Never throws. */
export function parseProxyHeader(buf: Buffer): ProxyHeaderResult {
  const kind = detectProxyHeader(buf);
  if (kind === 'incomplete') return { kind: 'incomplete' };
  if (kind === 'none') return { kind: 'none' };
  return kind === 'v1' ? parseV1(buf) : parseV2(buf);
}

function invalid(reason: string): ProxyHeaderResult {
  return { kind: 'invalid', reason };
}

function parseV1(buf: Buffer): ProxyHeaderResult {
  // the CR may sit at index 105 at the latest, so that the line with its CRLF fits in 107 bytes
  const limit = Math.min(buf.length, V1_MAX_LENGTH - 1);
  let cr = -1;
  for (let i = V1_PREFIX.length; i < limit; i++) {
    const c = buf[i]!;
    if (c === 0x0d) {
      cr = i;
      break;
    }
    // only printable ASCII and spaces may appear before the CRLF
    if (c < 0x20 || c > 0x7e) return invalid('v1: unexpected byte in header');
  }
  if (cr < 0) return buf.length >= V1_MAX_LENGTH - 1 ? invalid('v1: header longer than 107 bytes') : { kind: 'incomplete' };
  if (cr + 1 >= buf.length) return { kind: 'incomplete' };
  if (buf[cr + 1] !== 0x0a) return invalid('v1: CR not followed by LF');
  const consumed = cr + 2;
  const line = buf.toString('latin1', V1_PREFIX.length, cr);

  if (line === 'UNKNOWN' || line.startsWith('UNKNOWN ')) {
    // the sender may add anything after UNKNOWN; the receiver ignores it (spec 2.1)
    return { kind: 'ok', consumed, source: null, version: 1 };
  }
  const f = line.split(' ');
  if (f.length !== 5) return invalid('v1: expected protocol, two addresses and two ports separated by single spaces');
  const [proto, src, dst, sport, dport] = f as [string, string, string, string, string];
  let family: 4 | 6;
  if (proto === 'TCP4') family = 4;
  else if (proto === 'TCP6') family = 6;
  else return invalid('v1: protocol must be TCP4, TCP6 or UNKNOWN');
  const valid = family === 4 ? isIPv4 : (s: string) => isIPv6(s) && !s.includes('%');
  if (!valid(src) || !valid(dst)) return invalid(`v1: address is not a valid ${proto === 'TCP4' ? 'IPv4' : 'IPv6'} address`);
  const sp = parsePort(sport);
  const dp = parsePort(dport);
  if (sp < 0 || dp < 0) return invalid('v1: port must be a decimal number 0..65535 without leading zeros');
  const address = normaliseIp(src);
  if (address === null) return invalid('v1: invalid source address');
  return { kind: 'ok', consumed, source: { address, port: sp }, version: 1 };
}

function parsePort(s: string): number {
  if (s.length === 0 || s.length > 5 || (s.length > 1 && s.charCodeAt(0) === 0x30)) return -1;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const d = s.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n <= 65535 ? n : -1;
}

function parseV2(buf: Buffer): ProxyHeaderResult {
  if (buf.length < V2_HEADER) return { kind: 'incomplete' };
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return invalid('v2: unsupported version');
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return invalid('v2: unknown command');
  const famTrans = buf[13]!;
  const len = buf.readUInt16BE(14);
  if (len > V2_MAX_PAYLOAD) return invalid(`v2: header longer than ${V2_HEADER + V2_MAX_PAYLOAD} bytes`);
  const consumed = V2_HEADER + len;
  if (buf.length < consumed) return { kind: 'incomplete' };

  if (cmd === 0) {
    // LOCAL: the proxy's own connection (health checks); the real endpoints apply, the
    // address block is ignored whatever its family (spec 2.2).
    return { kind: 'ok', consumed, source: null, version: 2 };
  }

  const family = famTrans >> 4;
  const transport = famTrans & 0x0f;
  if (family > 3) return invalid('v2: unknown address family');
  if (transport > 2) return invalid('v2: unknown transport protocol');
  if (family === 0) {
    // UNSPEC: like v1 UNKNOWN, no address is conveyed
    return { kind: 'ok', consumed, source: null, version: 2 };
  }
  if (transport !== 1) return invalid('v2: only STREAM connections can be proxied here');
  const addrLen = family === 1 ? 12 : family === 2 ? 36 : 216;
  if (len < addrLen) return invalid('v2: address block shorter than its family requires');
  if (!tlvsWellFormed(buf, V2_HEADER + addrLen, consumed)) return invalid('v2: malformed TLV');
  if (family === 3) return { kind: 'ok', consumed, source: null, version: 2 }; // AF_UNIX: no IP to report

  let address: string | null;
  let port: number;
  if (family === 1) {
    address = `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`;
    port = buf.readUInt16BE(24);
  } else {
    address = normaliseIp(bytesToIpv6(buf.subarray(16, 32)));
    port = buf.readUInt16BE(48);
  }
  if (address === null) return invalid('v2: invalid source address');
  return { kind: 'ok', consumed, source: { address, port }, version: 2 };
}

/** TLVs (type: 1 byte, length: 2 bytes, value) must tile [start, end) exactly. */
function tlvsWellFormed(buf: Buffer, start: number, end: number): boolean {
  let i = start;
  while (i < end) {
    if (i + 3 > end) return false;
    i += 3 + buf.readUInt16BE(i + 1);
  }
  return i === end;
}
