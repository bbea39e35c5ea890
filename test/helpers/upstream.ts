/**
 * A real HTTP app for end-to-end tests to put behind the gateway (or nginx, or HAProxy).
 *
 * Routes (any method, any Host):
 *   /big?bytes=N     N bytes of application/octet-stream, generated as the client reads (never
 *                    buffered whole); byte i is `i & 0xff` (see `bigBodyByte`).
 *   /upload          reads the request body and answers {"bytes": n, "sha256": "<hex>"}.
 *   /slow?ms=N       answers the echo after N ms (at most 60 s).
 *   anything else    the echo: {"app", "method", "url", "httpVersion", "headers", "rawHeaders",
 *                    "remoteAddress", "bodyBytes"} as JSON; the body, if any, is read and counted.
 *   WebSocket upgrade on any path: every message is sent back unchanged (text as text, binary as
 *   binary).
 *
 * Every request that reaches the app, upgrades included, is appended to `requests` before it is
 * answered, so a test can assert that a request was stopped before the app (`requests.length`).
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { strict as assert } from 'node:assert';
import { WebSocketServer } from 'ws';

export interface RecordedRequest {
  method: string;
  /** The request target exactly as received (path and query). */
  url: string;
  /** Lower-cased header names, as node parses them. */
  headers: IncomingHttpHeaders;
  /** Names and values in the order and letter case they arrived. */
  rawHeaders: string[];
  remoteAddress: string;
  /** True for a WebSocket upgrade request. */
  upgrade: boolean;
}

/** The JSON body of an echo response. */
export interface EchoBody {
  app: string;
  method: string;
  url: string;
  httpVersion: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  remoteAddress: string;
  bodyBytes: number;
}

export interface UpstreamOptions {
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /** Reported as `app` in the echo, to tell two upstreams apart (default "upstream"). */
  name?: string;
}

export interface Upstream {
  /** `http://host:port` (no trailing slash). */
  url: string;
  port: number;
  /** Every request that reached the app, in arrival order. */
  requests: RecordedRequest[];
  /** Closes the listener, every open connection and every WebSocket. */
  close(): Promise<void>;
}

/** The byte at offset `i` of a `/big` body. */
export function bigBodyByte(i: number): number {
  return i & 0xff;
}

const CHUNK = 64 * 1024;
/** One chunk of the `/big` pattern; CHUNK is a multiple of 256 so every chunk starts at byte 0. */
const PATTERN = Buffer.allocUnsafe(CHUNK);
for (let i = 0; i < CHUNK; i++) PATTERN[i] = bigBodyByte(i);
const MAX_SLOW_MS = 60_000;

function intParam(url: URL, name: string, max: number): number | null {
  const raw = url.searchParams.get(name);
  if (raw === null || !/^\d{1,16}$/.test(raw)) return null;
  const n = Number(raw);
  return n <= max ? n : null;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Reads and discards a request body, returning its length and SHA-256. */
async function consume(req: IncomingMessage): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of req) {
    bytes += (chunk as Buffer).length;
    hash.update(chunk as Buffer);
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** A readable stream of `total` pattern bytes, produced only as fast as it is consumed. */
function bigBody(total: number): Readable {
  let sent = 0;
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      if (sent >= total) {
        this.push(null);
        return;
      }
      const n = Math.min(CHUNK, total - sent);
      sent += n;
      // PATTERN is never mutated, so a view of it can be handed out without a copy.
      this.push(n === CHUNK ? PATTERN : PATTERN.subarray(0, n));
    },
  });
}

export async function startUpstream(opts: UpstreamOptions = {}): Promise<Upstream> {
  const host = opts.host ?? '127.0.0.1';
  const app = opts.name ?? 'upstream';
  const requests: RecordedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();

  const record = (req: IncomingMessage, upgrade: boolean): void => {
    requests.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      remoteAddress: req.socket.remoteAddress ?? '',
      upgrade,
    });
  };

  const echo = (req: IncomingMessage, bodyBytes: number): EchoBody => ({
    app,
    method: req.method ?? '',
    url: req.url ?? '',
    httpVersion: req.httpVersion,
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    remoteAddress: req.socket.remoteAddress ?? '',
    bodyBytes,
  });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    record(req, false);
    const url = new URL(req.url ?? '/', 'http://upstream.invalid');
    switch (url.pathname) {
      case '/big': {
        const total = intParam(url, 'bytes', Number.MAX_SAFE_INTEGER);
        if (total === null) return sendJson(res, 400, { error: 'bytes must be a non-negative integer' });
        await consume(req);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
        if (req.method === 'HEAD') return void res.end();
        // pipeline respects backpressure and destroys the generator if the client goes away.
        await pipeline(bigBody(total), res).catch(() => undefined);
        return;
      }
      case '/upload':
        return sendJson(res, 200, await consume(req));
      case '/slow': {
        const ms = intParam(url, 'ms', MAX_SLOW_MS);
        if (ms === null) return sendJson(res, 400, { error: `ms must be an integer 0..${MAX_SLOW_MS}` });
        const { bytes } = await consume(req);
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!res.destroyed) sendJson(res, 200, echo(req, bytes));
        }, ms);
        timers.add(timer);
        res.once('close', () => {
          clearTimeout(timer);
          timers.delete(timer);
        });
        return;
      }
      default: {
        const { bytes } = await consume(req);
        return sendJson(res, 200, echo(req, bytes));
      }
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: err instanceof Error ? err.message : String(err) });
      else res.destroy();
    });
  });
  // Tests send slow and large bodies on purpose; node's default request timeout must not cut them.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;

  const wss = new WebSocketServer({ noServer: true });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    record(req, true);
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${urlHost}:${port}`,
    port,
    requests,
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

/** The echo upstream's answer in a response that must be the app's (200, from this upstream). */
export function echoOf(r: { status: number; body: string }): EchoBody {
  assert.equal(r.status, 200, `expected the app's answer, got ${r.status}: ${r.body.slice(0, 300)}`);
  const body = JSON.parse(r.body) as EchoBody;
  assert.equal(body.app, 'upstream');
  return body;
}
