/**
 * Who is the client? The address of the TCP peer (after the PROXY header, if any) unless that
 * peer is a trusted proxy, in which case the forwarded headers it added are believed, and only
 * as far back as the chain of trusted proxies reaches.
 *
 * A forwarding chain is read right to left: each proxy appends the address it received the
 * request from, so the right-most entries were written by the proxies closest to us. The walk
 * stops at the first address that is not a trusted proxy: everything to its left was written by
 * that untrusted party (or whoever it claims to have talked to) and is worthless.
 */
import type { CidrSet } from './cidr.js';
import { normaliseIp, parseIp } from './ip.js';

export interface ForwardedInfo {
  /** The client address, canonical (IPv4-mapped IPv6 shown as IPv4). */
  ip: string;
  /**
   * The scheme the client used. `ownProto` unless a trusted proxy says otherwise; null when a
   * trusted proxy sent a value that is neither `http` nor `https`.
   */
  proto: 'http' | 'https' | null;
  /** The host the client asked for, lower case, as stated by a trusted proxy; null if none or invalid. */
  host: string | null;
  /** Whether the TCP peer is a trusted proxy (so forwarded headers were read). */
  viaTrustedProxy: boolean;
}

type Headers = Record<string, string | string[] | undefined>;

/** At most this many hops of a forwarding chain are examined. */
export const MAX_FORWARDED_HOPS = 32;

/** Longest header value examined; anything longer is treated as malformed. */
const MAX_HEADER_LENGTH = 8192;

export function resolveClient(peer: string, headers: Headers, trusted: CidrSet, ownProto: 'http' | 'https'): ForwardedInfo {
  const peerIp = normaliseIp(peer) ?? peer;
  if (!trusted.contains(peerIp)) return { ip: peerIp, proto: ownProto, host: null, viaTrustedProxy: false };

  let ip = peerIp;
  let fwdProto: string | undefined;
  let fwdHost: string | undefined;
  const xff = headerValue(headers['x-forwarded-for']);
  if (xff !== undefined) {
    ip = walkXForwardedFor(xff, peerIp, trusted);
  } else {
    const fwd = headerValue(headers['forwarded']);
    if (fwd !== undefined) {
      const r = walkForwarded(fwd, peerIp, trusted);
      ip = r.ip;
      fwdProto = r.proto;
      fwdHost = r.host;
    } else {
      const real = headerValue(headers['x-real-ip']);
      if (real !== undefined) ip = parseNode(real) ?? peerIp;
    }
  }

  // X-Forwarded-Proto/-Host win; Forwarded's proto=/host= are read only when XFF was absent
  // (a proxy that writes X-Forwarded-For writes the X-Forwarded-* family).
  const xfp = headerValue(headers['x-forwarded-proto']);
  const protoText = xfp !== undefined ? lastListItem(xfp) : fwdProto;
  const xfh = headerValue(headers['x-forwarded-host']);
  const hostText = xfh !== undefined ? lastListItem(xfh) : fwdHost;

  return {
    ip,
    proto: protoText === undefined ? ownProto : parseProto(protoText),
    host: hostText === undefined ? null : validHost(hostText),
    viaTrustedProxy: true,
  };
}

/** All instances of a header joined as one list; undefined when absent or blank. */
function headerValue(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  const s = typeof v === 'string' ? v : v.join(',');
  // Longer than any honest chain: return a value no parser accepts, so the walk stops at once
  // (at the peer) and proto/host read as invalid, rather than spending time on it.
  if (s.length > MAX_HEADER_LENGTH) return '\u0000';
  return isBlank(s) ? undefined : s;
}

function isBlank(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09) return false;
  }
  return true;
}

function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 0x20 || s.charCodeAt(a) === 0x09)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

function lastListItem(s: string): string {
  return trimOws(s.slice(s.lastIndexOf(',') + 1));
}

/**
 * Walk `X-Forwarded-For` right to left; the first untrusted address is the client. A malformed
 * entry ends the walk: the last trusted hop examined is then the client (it is the furthest
 * party we can vouch for).
 */
function walkXForwardedFor(list: string, peer: string, trusted: CidrSet): string {
  let client = peer;
  let end = list.length;
  for (let hops = 0; hops < MAX_FORWARDED_HOPS && end >= 0; hops++) {
    const comma = list.lastIndexOf(',', end - 1);
    const entry = parseNode(trimOws(list.slice(comma + 1, end)));
    if (entry === null) return client;
    client = entry;
    if (!trusted.contains(entry)) return entry;
    if (comma < 0) break;
    end = comma;
  }
  return client;
}

/**
 * One address as proxies write them: `v4`, `v6`, `[v6]`, `v4:port`, `[v6]:port`.
 * Returns the canonical address or null (including for RFC 7239's `unknown` and `_obfuscated`).
 */
function parseNode(s: string): string | null {
  if (s.length === 0 || s.length > 53) return null;
  if (s.charCodeAt(0) === 0x5b /* [ */) {
    const close = s.indexOf(']');
    if (close < 0) return null;
    if (close !== s.length - 1 && !isPortSuffix(s, close + 1)) return null;
    const p = parseIp(s.slice(1, close));
    // brackets are for IPv6 only; `[1.2.3.4]` is junk, `[::ffff:1.2.3.4]` is fine
    return p && s.slice(1, close).includes(':') ? p.address : null;
  }
  const colon = s.indexOf(':');
  if (colon >= 0 && colon === s.lastIndexOf(':')) {
    // exactly one colon: IPv4 with a port
    if (!isPortSuffix(s, colon)) return null;
    const p = parseIp(s.slice(0, colon));
    return p && p.family === 4 && !s.slice(0, colon).includes(':') ? p.address : null;
  }
  return normaliseIp(s);
}

/** `:` followed by a decimal port 0..65535 running to the end of `s`. */
function isPortSuffix(s: string, at: number): boolean {
  if (s.charCodeAt(at) !== 0x3a) return false;
  const digits = s.length - at - 1;
  if (digits < 1 || digits > 5) return false;
  let n = 0;
  for (let i = at + 1; i < s.length; i++) {
    const c = s.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) return false;
    n = n * 10 + c;
  }
  return n <= 65535;
}

function parseProto(s: string): 'http' | 'https' | null {
  const l = s.toLowerCase();
  return l === 'http' || l === 'https' ? l : null;
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * Answers of `validHost`, remembered for the last few distinct values: a gateway sees the same
 * handful of hosts (Host, X-Forwarded-Host, X-Original-URL) on nearly every request. At most
 * HOSTS_REMEMBERED entries, forgotten all at once when full, so a client sending a new host on
 * every request only makes the memo useless.
 */
const HOSTS_REMEMBERED = 64;
const hostMemo = new Map<string, string | null>();

/**
 * A host as in a Host header: a DNS name, an IPv4 address or a bracketed IPv6 address, with an
 * optional port; lower-cased. Null when there is anything else (user info, paths, spaces,
 * trailing dots, several values).
 */
export function validHost(input: string): string | null {
  if (typeof input !== 'string' || input.length === 0 || input.length > 261) return null;
  const hit = hostMemo.get(input);
  if (hit !== undefined) return hit;
  const v = parseHost(input);
  if (hostMemo.size >= HOSTS_REMEMBERED) hostMemo.clear();
  hostMemo.set(input, v);
  return v;
}

function parseHost(input: string): string | null {
  const s = input.toLowerCase();
  let name = s;
  if (s.charCodeAt(0) === 0x5b) {
    const close = s.indexOf(']');
    if (close < 0 || (close !== s.length - 1 && !isPortSuffix(s, close + 1))) return null;
    const p = parseIp(s.slice(1, close));
    if (!p || p.family !== 6 || s.slice(1, close).includes('%')) return null;
    return s;
  }
  const colon = s.indexOf(':');
  if (colon >= 0) {
    if (!isPortSuffix(s, colon)) return null;
    name = s.slice(0, colon);
  }
  if (name.length === 0 || name.length > 253) return null;
  const labels = name.split('.');
  for (const l of labels) if (!LABEL.test(l)) return null;
  // all-numeric names must be real IPv4 addresses (refuses `1.2.3`, `0x7f.1`, `01.2.3.4`)
  if (/^[0-9.]+$/.test(name) && parseIp(name)?.family !== 4) return null;
  return s;
}

interface ForwardedElement {
  /** The `for=` value as an address; null when absent, `unknown`, obfuscated or malformed. */
  for: string | null;
  proto: string | undefined;
  host: string | undefined;
  malformed: boolean;
}

/**
 * Walk RFC 7239 `Forwarded` like X-Forwarded-For, using each element's `for=`. proto=/host= are
 * taken from the right-most element that has them among the elements written by trusted proxies
 * (those to the right of, and including, the element where the walk stopped).
 */
function walkForwarded(value: string, peer: string, trusted: CidrSet): { ip: string; proto: string | undefined; host: string | undefined } {
  const elements = parseForwarded(value);
  let client = peer;
  let proto: string | undefined;
  let host: string | undefined;
  const stop = Math.max(0, elements.length - MAX_FORWARDED_HOPS);
  for (let i = elements.length - 1; i >= stop; i--) {
    const e = elements[i]!;
    // this element was appended by `client`, a trusted proxy, unless it is malformed
    if (e.malformed) break;
    if (proto === undefined) proto = e.proto;
    if (host === undefined) host = e.host;
    if (e.for === null) break;
    client = e.for;
    if (!trusted.contains(e.for)) break;
  }
  return { ip: client, proto, host };
}

const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Split `s` at every `sep` that is outside a quoted string. A quoted string left open runs to
 * the end, so everything after its opening quote stays in the last part (which then fails to
 * parse as a pair and is malformed).
 */
function splitOutsideQuotes(s: string, sep: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === sep) {
      parts.push(s.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(s.slice(start));
  return parts;
}

/** A `forwarded-pair` value: a token, or a complete quoted-string (unescaped). Null when neither. */
function pairValue(v: string): string | null {
  if (v.charCodeAt(0) !== 0x22) return TCHAR.test(v) ? v : null;
  let out = '';
  for (let i = 1; i < v.length; i++) {
    const c = v[i]!;
    if (c === '\\') {
      if (i + 1 >= v.length) return null;
      out += v[++i];
    } else if (c === '"') {
      return i === v.length - 1 ? out : null;
    } else out += c;
  }
  return null; // unterminated
}

/** Parse a Forwarded header into its elements, left to right; empty list elements are skipped. */
function parseForwarded(s: string): ForwardedElement[] {
  const out: ForwardedElement[] = [];
  for (const part of splitOutsideQuotes(s, ',')) {
    const text = trimOws(part);
    if (text.length === 0) continue;
    const el: ForwardedElement = { for: null, proto: undefined, host: undefined, malformed: false };
    const seen = new Set<string>();
    for (const pairText of splitOutsideQuotes(text, ';')) {
      const pair = trimOws(pairText);
      if (pair.length === 0) continue;
      const eq = pair.indexOf('=');
      const key = eq < 0 ? '' : pair.slice(0, eq).toLowerCase();
      const value = eq < 0 ? null : pairValue(pair.slice(eq + 1));
      if (!TCHAR.test(key) || value === null || seen.has(key)) {
        el.malformed = true;
        break;
      }
      seen.add(key);
      if (key === 'for') el.for = parseForwardedNode(value);
      else if (key === 'proto') el.proto = value;
      else if (key === 'host') el.host = value;
    }
    out.push(el);
  }
  return out;
}

const OBFPORT = /:_[A-Za-z0-9._-]+$/;

/**
 * RFC 7239 node: IPv4 or "[" IPv6 "]", with an optional port (numeric or obfuscated).
 * `unknown` and obfuscated node names are not addresses: null.
 */
function parseForwardedNode(v: string): string | null {
  if (v.length === 0 || v.length > 80 || v === 'unknown' || v.charCodeAt(0) === 0x5f /* _ */) return null;
  const node = OBFPORT.test(v) ? v.slice(0, v.lastIndexOf(':')) : v;
  if (node.charCodeAt(0) !== 0x5b && node.indexOf(':') !== node.lastIndexOf(':')) return null; // IPv6 must be bracketed
  return parseNode(node);
}
