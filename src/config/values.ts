/** Small pure helpers on config values (exported for the CLI and tests): listen addresses, host names, URL text, "did you mean". */
import { parseIp } from '../net/ip.js';
import type { ListenAddress } from './types.js';

export const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;


/**
 * `127.0.0.1:8080`, `0.0.0.0:443`, `[::1]:8080`, `[::]:443`: an IP literal and a port (0-65535;
 * 0 asks the OS for a free port). Host names are refused: the bind address must be unambiguous.
 * IPv6 hosts are returned without brackets, as `net.Server.listen` wants them.
 */
export function parseListen(s: string): ListenAddress | null {
  if (typeof s !== 'string') return null;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):(0|[1-9][0-9]{0,4})$/.exec(s);
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  if (m[1] !== undefined) {
    const ip = parseIp(m[1]);
    if (!ip || ip.family !== 6) return null;
    return { host: ip.address, port };
  }
  const ip = parseIp(m[2]!);
  if (!ip || ip.family !== 4) return null;
  return { host: ip.address, port };
}

/** The closest candidate to a mistyped word, if one is close enough to be what was meant. */
export function didYouMean(word: string, candidates: Iterable<string>): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = c === word ? 0 : levenshtein(w, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  if (best === null || best === word) return null;
  const limit = Math.max(1, Math.floor(Math.max(word.length, best.length) / 3));
  return bestDistance <= limit ? best : null;
}

export function levenshtein(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 8) return Math.abs(a.length - b.length);
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * Why a URL-like string is unsafe to pass on (to a proxy, an HTTP client, a Redis or SMTP
 * client, a log line), or null. WHATWG URL parsing silently drops tabs and line breaks and
 * rewrites backslashes, so the raw text is checked before parsing.
 */
export function unsafeUrlText(s: string): string | null {
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\r' || ch === '\n') return 'contains a line break (CR/LF)';
    if (ch === ' ') return 'contains a space';
    if (cp < 0x20 || cp === 0x7f) return `contains a control character (U+${cp.toString(16).toUpperCase().padStart(4, '0')})`;
    if (cp > 0x7e) return 'contains a non-ASCII character; write host names in punycode and percent-encode the rest';
    if ('"\'`'.includes(ch)) return `contains a quote (${ch})`;
    if ('<>\\{}|^'.includes(ch)) return `contains "${ch}"; percent-encode it if it is really meant`;
  }
  return null;
}

/** A host name as `appsByHost` keys it: lower-case DNS name, IPv4 dotted quad, or `[ipv6]`. */
export function normaliseHost(input: string): { ok: true; host: string } | { ok: false; error: string } {
  const h = input.toLowerCase();
  if (h.length === 0) return { ok: false, error: 'a host cannot be empty' };
  const bracketed = /^\[(.*)\]$/.exec(h);
  const ipText = bracketed ? bracketed[1]! : h;
  const ip = parseIp(ipText);
  if (ip) {
    if (ip.family === 4 && ipText.includes(':')) return { ok: false, error: `"${input}" is an IPv4-mapped address; write ${ip.address}` };
    if (bracketed && ip.family === 4) return { ok: false, error: `"${input}": only IPv6 addresses go in brackets; write ${ip.address}` };
    return { ok: true, host: ip.family === 6 ? `[${ip.address}]` : ip.address };
  }
  if (bracketed) return { ok: false, error: `"${input}" is not a valid IPv6 address` };
  if (h.includes('*')) return { ok: false, error: `"${input}": wildcard hosts are not supported; list each host name` };
  if (/:[0-9]*$/.test(h)) return { ok: false, error: `"${input}": hosts are matched without the port; remove "${h.slice(h.lastIndexOf(':'))}"` };
  if (h.endsWith('.')) return { ok: false, error: `"${input}": write the name without the trailing dot` };
  if (/[^\x21-\x7e]/.test(h)) return { ok: false, error: `"${input}" is not a valid DNS name (write internationalised names in punycode, xn--...)` };
  if (h.length > 253) return { ok: false, error: `"${input}" is longer than 253 characters` };
  const labels = h.split('.');
  const badLabel = labels.find((l) => !DNS_LABEL.test(l));
  if (badLabel !== undefined) {
    return { ok: false, error: `"${input}" is not a valid DNS name (label "${badLabel}": letters, digits and inner "-", 1 to 63 characters)` };
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return { ok: false, error: `"${input}" is neither a valid IP address nor a DNS name` };
  return { ok: true, host: h };
}
