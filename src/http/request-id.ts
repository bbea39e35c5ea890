/**
 * The request id: one per request, passed to the app as X-Request-Id, returned to a forward-auth
 * proxy on its 200s, written in the access log and in the audit events the request raises.
 *
 * It is taken from the request only when the peer is in `trusted_proxies` and the value is
 * well-formed: `X-Request-Id` (1 to 128 characters of `A-Z a-z 0-9 . _ : + / = -`, starting
 * with a letter or digit; nginx's `$request_id` and UUIDs fit), else the trace id of a W3C
 * `traceparent` (version 00-fe, a non-zero trace id). Otherwise (an untrusted client, or a
 * malformed value) a new one is made: 32 hex digits from the runtime's Random. A client's own
 * X-Request-Id never reaches the app (proxy/headers.ts strips it).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Random } from '../clock.js';

const REQUEST_ID = /^[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}$/;
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}(?:-|$)/;
const ZERO_TRACE = '0'.repeat(32);

/** A header's one value; undefined when absent or sent more than once. */
export function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : v;
}

/** A well-formed id from a (trusted) request's headers, or null. */
export function requestIdFrom(headers: IncomingHttpHeaders): string | null {
  const x = one(headers['x-request-id']);
  if (x !== undefined && REQUEST_ID.test(x)) return x;
  const tp = one(headers['traceparent']);
  if (tp !== undefined && tp.length <= 512) {
    const m = TRACEPARENT.exec(tp);
    if (m && m[1] !== 'ff' && m[2] !== ZERO_TRACE) return m[2]!;
  }
  return null;
}


/** Made ids: 16 random bytes each (32 hex digits), drawn from `random` 1,024 ids at a time. */
export class RequestIds {
  private pool: Buffer = Buffer.alloc(0);
  private at = 0;

  constructor(private readonly random: Random) {}

  next(): string {
    if (this.at + 16 > this.pool.length) {
      this.pool = this.random.bytes(16 * 1024);
      this.at = 0;
      if (this.pool.length < 16) throw new Error('the random source returned too few bytes');
    }
    const id = this.pool.toString('hex', this.at, this.at + 16);
    this.at += 16;
    return id;
  }
}
