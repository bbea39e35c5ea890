/**
 * Where the gateway may send a browser after sign-in or sign-out. Only paths on the current host
 * and absolute http(s) URLs on the hosts of configured apps; every open-redirect trick is refused:
 * `//evil`, `/\evil`, encoded slashes, backslashes or white space, userinfo (`@`), look-alike
 * suffixes (`mail.example.org.evil.net`), `javascript:` and other schemes.
 */
import type { CompiledConfig } from '../config/types.js';

const MAX = 2048;

function hasTrick(s: string): boolean {
  // control characters, white space, backslashes, and their encodings
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f\\]/.test(s)) return true;
  if (/%(0[0-9a-f]|1[0-9a-f]|20|7f|5c)/i.test(s)) return true;
  return false;
}

/** A safe redirect target (relative path or absolute URL on an app host), or null. */
export function safeRedirect(rd: string | undefined | null, cfg: CompiledConfig): string | null {
  if (!rd || typeof rd !== 'string' || rd.length > MAX) return null;
  if (hasTrick(rd)) return null;
  let decodedOnce: string;
  try {
    decodedOnce = decodeURIComponent(rd);
  } catch {
    return null;
  }
  if (hasTrick(decodedOnce)) return null;
  if (rd.startsWith('/')) {
    // a path on this host: never protocol-relative, in any encoding
    if (rd.startsWith('//') || decodedOnce.startsWith('//')) return null;
    const u = new URL(rd, 'http://portcullis.invalid');
    if (u.host !== 'portcullis.invalid') return null;
    return rd;
  }
  let u: URL;
  try {
    u = new URL(rd);
  } catch {
    return null;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return null;
  if (u.username || u.password || rd.slice(0, rd.indexOf('/', 8) >>> 0).includes('@')) return null;
  // exact host match against configured apps (no suffix, no prefix matching)
  if (!cfg.appsByHost.has(u.hostname.toLowerCase())) return null;
  // the scheme must be written with exactly two slashes (no `https:/\evil` games; the parser would repair them)
  if (!/^https?:\/\/[^/\\]/i.test(rd)) return null;
  return u.href;
}
