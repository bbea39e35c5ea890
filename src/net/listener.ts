/**
 * The TCP listener in front of the HTTP(S) server: it accepts connections, reads the PROXY
 * header where one is expected, and hands the connection to the server.
 *
 * With `proxyProtocol()` on:
 * - a peer in `trusted()` must open with a valid PROXY v1/v2 header; anything else (plain HTTP,
 *   a TLS ClientHello, a malformed header, silence for `headerTimeoutMs`) closes the connection,
 *   because a proxy that was configured to send the header and did not is misconfigured, and
 *   serving it would attribute every client to the proxy's own address;
 * - any other peer is a direct client: a PROXY header from it closes the connection (it would be
 *   a forged source address), plain traffic is served.
 * With it off, connections go straight to the server; a PROXY header then fails HTTP parsing.
 *
 * Both switches are read per connection, so a config reload applies to new connections.
 *
 * Connections per source: at most `maxConnectionsPerSource` open at once from one client address
 * (IPv6 grouped to its /ipv6Prefix network, as the login throttle groups it); one more is closed
 * at once, before a byte is read. The client is the TCP peer, or the PROXY header's source when a
 * trusted proxy sends one. A trusted proxy itself is not counted when it does not send PROXY
 * headers: every client behind it shares its address, and it enforces its own limits.
 *
 * `guardHttpServer` sets the timeouts of the HTTP server behind a listener (see there).
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import type * as http from 'node:http';
import type * as https from 'node:https';
import type { CidrSet } from './cidr.js';
import { normaliseIp, sourceKey } from './ip.js';
import { detectProxyHeader, parseProxyHeader, V1_MAX_LENGTH, V2_MAX_PAYLOAD } from './proxy-protocol.js';

export interface ListenerOptions {
  server: http.Server | https.Server;
  trusted: () => CidrSet;
  proxyProtocol: () => boolean;
  /**
   * How long a trusted proxy may take to deliver its PROXY header (default 5 s). A direct client
   * gets as long as the server's `headersTimeout` (it is waiting to send a request, not a header).
   */
  headerTimeoutMs?: number;
  /** Called when a connection is refused before reaching the server (for logs and metrics). */
  onRefused?: (peer: string, reason: string) => void;
  /** Open connections allowed per client address (default 256; 0: no cap). */
  maxConnectionsPerSource?: number;
  /** IPv6 clients are counted per network of this prefix (default 64). */
  ipv6Prefix?: () => number;
}

export const DEFAULT_PROXY_HEADER_TIMEOUT_MS = 5000;
export const DEFAULT_MAX_CONNECTIONS_PER_SOURCE = 256;
export const TOO_MANY_CONNECTIONS = 'too many connections from this source';

/**
 * Limits on what one connection may hold (both listeners). Internal settings, not config keys;
 * tests inject short ones.
 */
export interface ConnectionLimits {
  /** A request's headers must have arrived within this (every route; default 30 s). */
  headersMs: number;
  /**
   * The whole request, headers and body, on the routes that need no long bodies (the portal and
   * authz routes under /.portcullis/, and the admin listener): default 30 s. Proxied requests are
   * not limited as a whole: a long upload or download that keeps moving is never cut.
   */
  requestMs: number;
  /**
   * No byte either way for this long while the client owes us one (the rest of a request, or
   * reading the response) ends the connection (default 60 s). Waiting for the app is not the
   * client's idleness: `upstream_timeouts` covers that, as nginx's proxy_read_timeout does.
   */
  idleMs: number;
  /** Between requests on a keep-alive connection (default 65 s, above common load balancers' 60 s). */
  keepAliveMs: number;
  /** See `ListenerOptions.maxConnectionsPerSource`. */
  maxPerSource: number;
}

export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = Object.freeze({
  headersMs: 30_000,
  requestMs: 30_000,
  idleMs: 60_000,
  keepAliveMs: 65_000,
  maxPerSource: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
});

export function connectionLimits(partial: Partial<ConnectionLimits> = {}): ConnectionLimits {
  const l = { ...DEFAULT_CONNECTION_LIMITS, ...partial };
  for (const k of ['headersMs', 'requestMs', 'idleMs', 'keepAliveMs'] as const) {
    if (!Number.isFinite(l[k]) || l[k] <= 0) throw new RangeError(`${k} must be a positive number of milliseconds`);
  }
  if (!Number.isInteger(l.maxPerSource) || l.maxPerSource < 0) throw new RangeError('maxPerSource must be a whole number (0: no cap)');
  return l;
}

/**
 * How often node's http server looks for requests past `headersTimeout` / `requestTimeout`
 * (node's default, 30 s, would let a slow sender hold a request up to twice the limit).
 */
export function checkingIntervalMs(l: ConnectionLimits): number {
  return Math.max(10, Math.min(1000, Math.floor(Math.min(l.headersMs, l.requestMs) / 10)));
}

/**
 * Timeouts of an http(s) server served through `createListener` (node's defaults leave a
 * request open for ever):
 * - headers within `headersMs` (node's `headersTimeout`; 408 and close);
 * - with `wholeRequest`, the whole request within `requestMs` (node's `requestTimeout`): for a
 *   server with no long bodies (the admin listener). The gateway limits its portal routes per
 *   request instead (see http/server.ts), so proxied uploads are not cut;
 * - between requests, `keepAliveMs`;
 * - idle: no byte either way for `idleMs` while a request is being received or its response is
 *   waiting for the client to read closes the connection (408 when nothing was answered yet),
 *   found by a sweep at most `idleSweepMs(idleMs)` late (see `watchIdle`). While the response
 *   waits for the app (nothing unsent), the connection is left alone.
 * The server must have been created with `connectionsCheckingInterval: checkingIntervalMs(l)`.
 */
export function guardHttpServer(server: http.Server | https.Server, l: ConnectionLimits, opts: { wholeRequest: boolean }): void {
  server.headersTimeout = l.headersMs;
  server.requestTimeout = opts.wholeRequest ? Math.max(l.requestMs, l.headersMs) : 0;
  server.keepAliveTimeout = l.keepAliveMs;
  watchIdle(server, l.idleMs);
}

/**
 * How often connections are looked at for idleness: a tenth of `idleMs` (10 ms to 1 s), so a
 * connection is closed at most that much after `idleMs` without a byte.
 */
export function idleSweepMs(idleMs: number): number {
  return Math.max(10, Math.min(1000, Math.floor(idleMs / 10)));
}

/**
 * Idle connections found by a sweep, not by a timer per socket. Node's socket timeout
 * (`server.timeout`) re-arms a timer on every request and refreshes it on every read and write:
 * a cost every request pays. The sweep compares each connection's byte counts with the last
 * sweep's, so a request pays nothing and a connection idle for `idleMs` is found at most one
 * sweep later. Only connections with a request in hand are judged (see `onIdle`); between
 * requests node's keep-alive timeout applies, before the headers its headers timeout, and an
 * upgraded connection (WebSocket) belongs to its tunnel.
 */
function watchIdle(server: http.Server | https.Server, idleMs: number): void {
  const every = idleSweepMs(idleMs);
  const conns = new Map<net.Socket, { read: number; written: number; since: number }>();
  let timer: NodeJS.Timeout | null = null;
  // a monotonic clock: a step of the wall clock (NTP, a resumed VM) must not make every
  // connection look idle at once, nor give a stalled one the length of the step
  const sweep = () => {
    const now = performance.now();
    for (const [socket, seen] of conns) {
      if (socket.destroyed || !(socket as { parser?: unknown }).parser) {
        // closed, or upgraded: no longer an HTTP connection of this server
        conns.delete(socket);
        continue;
      }
      const read = socket.bytesRead;
      const written = socket.bytesWritten;
      if (read !== seen.read || written !== seen.written) {
        seen.read = read;
        seen.written = written;
        seen.since = now;
      } else if (now - seen.since >= idleMs) {
        seen.since = now;
        onIdle(socket);
      }
    }
    if (conns.size === 0 && timer) {
      clearInterval(timer);
      timer = null;
    }
  };
  // the TLS server's HTTP connections are its TLS sockets ('secureConnection'), not the TCP ones
  server.on(server instanceof tls.Server ? 'secureConnection' : 'connection', (socket: net.Socket) => {
    conns.set(socket, { read: -1, written: -1, since: performance.now() });
    socket.once('close', () => conns.delete(socket));
    timer ??= setInterval(sweep, every).unref();
  });
  server.once('close', () => {
    if (timer) clearInterval(timer);
    timer = null;
  });
}

/** A connection without a byte either way for `idleMs`: closed if the client owes us one. */
function onIdle(socket: net.Socket): void {
  const res = (socket as { _httpMessage?: http.ServerResponse | null })._httpMessage ?? null;
  const req = res?.req;
  if (!res || !req || res.writableEnded) {
    // answered (or between requests): only a client that is not reading what was sent is idle;
    // an idle keep-alive connection is left to keepAliveMs, a request's headers to headersMs
    if (socket.writableLength > 0) socket.destroy();
    return;
  }
  if (!req.complete) {
    // the client stopped sending its body
    requestTimedOut(res, socket);
    return;
  }
  if (socket.writableLength > 0 || res.writableNeedDrain) {
    // the client stopped reading the response
    socket.destroy();
    return;
  }
  // the request is in and nothing is waiting to be sent: the app (or argon2) is working
}

/** Answer 408 and close if nothing has been answered yet, else just close. */
export function requestTimedOut(res: http.ServerResponse, socket: net.Socket): void {
  if (!res.headersSent && !res.writableEnded && res.socket === socket && !socket.destroyed) {
    try {
      res.writeHead(408, { connection: 'close', 'content-type': 'text/plain; charset=utf-8', 'content-length': '16' });
      res.end('request timeout\n');
      // the client may still be sending: do not wait for it
      setTimeout(() => socket.destroy(), 50).unref();
      return;
    } catch {
      // fall through
    }
  }
  socket.destroy();
}

/** The client address of a connection, once known (PROXY source or normalised peer address). */
const kPeer = Symbol('portcullis.peerAddress');
type Tagged = { [kPeer]?: string };

/** Servers whose connection tracking (headers/request timeouts) has been started by us. */
const primed = new WeakSet<object>();

export function createListener(opts: ListenerOptions): net.Server {
  const { server, trusted, proxyProtocol, onRefused } = opts;
  const timeoutMs = opts.headerTimeoutMs ?? DEFAULT_PROXY_HEADER_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError('headerTimeoutMs must be a positive number of milliseconds');
  const maxPerSource = opts.maxConnectionsPerSource ?? DEFAULT_MAX_CONNECTIONS_PER_SOURCE;
  if (!Number.isInteger(maxPerSource) || maxPerSource < 0) throw new RangeError('maxConnectionsPerSource must be a whole number (0: no cap)');
  const ipv6Prefix = opts.ipv6Prefix ?? (() => 64);
  const isTls = server instanceof tls.Server;
  /** Open connections per source key; an entry exists only while its count is above 0. */
  const open = new Map<string, number>();

  /** Count `socket` against `client`; false (and the socket closed) when the source is at its cap. */
  function admit(socket: net.Socket, client: string): boolean {
    if (maxPerSource === 0 || client === '') return true;
    let key: string;
    try {
      key = sourceKey(client, ipv6Prefix());
    } catch {
      key = client;
    }
    const n = open.get(key) ?? 0;
    if (n >= maxPerSource) {
      refuse(socket, client, TOO_MANY_CONNECTIONS);
      return false;
    }
    open.set(key, n + 1);
    socket.once('close', () => {
      const left = (open.get(key) ?? 1) - 1;
      if (left <= 0) open.delete(key);
      else open.set(key, left);
    });
    return true;
  }

  // Accept sockets with the options `server` would have used had it listened itself
  // (allowHalfOpen, TCP_NODELAY, keep-alive), so that a connection behaves the same either way.
  // net.Server keeps them as plain fields.
  const own = server as unknown as {
    allowHalfOpen?: boolean;
    noDelay?: boolean;
    keepAlive?: boolean;
    keepAliveInitialDelay?: number;
    highWaterMark?: number;
  };
  const socketOptions: net.ServerOpts = {
    allowHalfOpen: own.allowHalfOpen ?? false,
    noDelay: own.noDelay ?? true,
    keepAlive: own.keepAlive ?? false,
    keepAliveInitialDelay: own.keepAliveInitialDelay ?? 0,
  };
  if (typeof own.highWaterMark === 'number') socketOptions.highWaterMark = own.highWaterMark;

  const listener = net.createServer(socketOptions, (socket) => {
    let enabled: boolean;
    let trustedPeer = false;
    const peer = normaliseIp(socket.remoteAddress ?? '') ?? '';
    try {
      enabled = proxyProtocol();
      trustedPeer = peer !== '' && trusted().contains(peer);
    } catch (err) {
      refuse(socket, peer, `configuration unavailable: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    // a direct client is counted now; a trusted proxy's clients by their PROXY source, if any
    if (!trustedPeer && !admit(socket, peer)) return;
    if (!enabled) {
      server.emit('connection', socket);
      return;
    }
    readPreamble(socket, peer, trustedPeer);
  });

  // node's http server starts its connection tracking (which enforces headersTimeout and
  // requestTimeout against slow clients) on its own 'listening' event; the server never listens
  // itself here, so tell it when the listener does.
  listener.on('listening', () => {
    if (primed.has(server)) return;
    primed.add(server);
    server.emit('listening');
  });

  function refuse(socket: net.Socket, peer: string, reason: string): void {
    socket.destroy();
    if (!onRefused) return;
    try {
      onRefused(peer, reason);
    } catch {
      // a failing log hook must not take the listener down
    }
  }

  function readPreamble(socket: net.Socket, peer: string, trustedPeer: boolean): void {
    let buffered: Buffer | null = null;
    const onError = () => socket.destroy();
    const wait = trustedPeer ? timeoutMs : Math.max(timeoutMs, server.headersTimeout || 0);
    const timer = setTimeout(() => {
      cleanup();
      refuse(socket, peer, trustedPeer ? 'no PROXY header in time' : 'no data in time');
    }, wait);
    const cleanup = () => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', cleanup);
    };
    const onEnd = () => {
      cleanup();
      socket.destroy();
    };
    const handOver = (rest: Buffer | null, source: string | null) => {
      cleanup();
      if (trustedPeer && source !== null && !admit(socket, normaliseIp(source) ?? source)) return;
      socket.pause();
      if (source !== null) (socket as Tagged)[kPeer] = source;
      if (rest !== null && rest.length > 0) socket.unshift(rest);
      server.emit('connection', socket);
      // The http server consumes the socket handle directly and only sees bytes that are already
      // buffered in JS through 'data' events, so let those flow (in order, before any new read).
      // The TLS server drains the buffer itself when it wraps the socket.
      if (!isTls) socket.resume();
    };
    const onData = (chunk: Buffer) => {
      const buf: Buffer = buffered === null ? chunk : Buffer.concat([buffered, chunk]);
      if (!trustedPeer) {
        const d = detectProxyHeader(buf);
        if (d === 'incomplete') {
          buffered = buf;
          return;
        }
        if (d === 'none') {
          handOver(buf, null);
        } else {
          cleanup();
          refuse(socket, peer, 'PROXY header from a peer that is not a trusted proxy');
        }
        return;
      }
      const r = parseProxyHeader(buf);
      switch (r.kind) {
        case 'incomplete':
          if (buf.length > V1_MAX_LENGTH + 16 + V2_MAX_PAYLOAD) {
            cleanup();
            refuse(socket, peer, 'PROXY header too long');
            return;
          }
          buffered = buf;
          return;
        case 'none':
          cleanup();
          refuse(socket, peer, 'trusted proxy did not send a PROXY header');
          return;
        case 'invalid':
          cleanup();
          refuse(socket, peer, `invalid PROXY header: ${r.reason}`);
          return;
        case 'ok':
          handOver(r.consumed < buf.length ? buf.subarray(r.consumed) : null, r.source?.address ?? null);
          return;
      }
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('end', onEnd);
    socket.on('close', cleanup);
  }

  return listener;
}

/**
 * The client address of the connection a request arrived on: the PROXY header's source if the
 * connection had one, else the TCP peer address, normalised (IPv4-mapped IPv6 becomes IPv4).
 * Works on the raw socket of an http server and on the TLSSocket an https server wraps around it.
 * Empty string when the address is unknown (the socket is already closed).
 */
export function peerAddress(socket: net.Socket | tls.TLSSocket): string {
  const s = socket as net.Socket & Tagged;
  const cached = s[kPeer];
  if (cached !== undefined) return cached;
  // An https server wraps the raw socket we tagged; node keeps it as `_parent` (lib/_tls_wrap.js).
  const parent = (socket as { _parent?: unknown })._parent;
  let addr: string | undefined;
  if (parent instanceof net.Socket) addr = (parent as net.Socket & Tagged)[kPeer];
  if (addr === undefined) {
    const remote = socket.remoteAddress ?? (parent instanceof net.Socket ? parent.remoteAddress : undefined);
    if (remote === undefined) return '';
    addr = normaliseIp(remote) ?? remote;
  }
  s[kPeer] = addr;
  return addr;
}
