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
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import type * as http from 'node:http';
import type * as https from 'node:https';
import type { CidrSet } from './cidr.js';
import { normalizeIp } from './ip.js';
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
}

export const DEFAULT_PROXY_HEADER_TIMEOUT_MS = 5000;

/** The client address of a connection, once known (PROXY source or normalised peer address). */
const kPeer = Symbol('portcullis.peerAddress');
type Tagged = { [kPeer]?: string };

/** Servers whose connection tracking (headers/request timeouts) has been started by us. */
const primed = new WeakSet<object>();

export function createListener(opts: ListenerOptions): net.Server {
  const { server, trusted, proxyProtocol, onRefused } = opts;
  const timeoutMs = opts.headerTimeoutMs ?? DEFAULT_PROXY_HEADER_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError('headerTimeoutMs must be a positive number of milliseconds');
  const isTls = server instanceof tls.Server;

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
    const peer = normalizeIp(socket.remoteAddress ?? '') ?? '';
    try {
      enabled = proxyProtocol();
      if (enabled) trustedPeer = peer !== '' && trusted().contains(peer);
    } catch (err) {
      refuse(socket, peer, `configuration unavailable: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
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
    addr = normalizeIp(remote) ?? remote;
  }
  s[kPeer] = addr;
  return addr;
}
