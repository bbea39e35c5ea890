/**
 * The reverse proxy: streams request and response bodies both ways through undici with
 * back-pressure (constant memory for any size), maps upstream failures to 502/504 pages, and
 * leaves other apps unaffected by one app's trouble.
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { errors as undiciErrors } from 'undici';
import type { CompiledApp, CompiledConfig } from '../config/types.js';
import type { UpstreamPools } from './upstreams.js';
import { clientResponseHeaders } from './headers.js';
import { errorPage, PAGE_HEADERS } from '../http/html.js';
import { ERRORS, type ErrorCode } from '../errors.js';

export interface ForwardContext {
  cfg: CompiledConfig;
  app: CompiledApp;
  pools: UpstreamPools;
  /** The gateway's cookie name: an app may not set it. */
  sessionCookie: string;
  /** Observed upstream latency (seconds) per app, for metrics. */
  observe?: (app: string, status: number, seconds: number) => void;
  /** Told when the app could not be reached or timed out (the client gets the code's 502/504 page). */
  onUpstreamError?: (code: ErrorCode, err: unknown) => void;
  /** Filled with the time to the app's response headers (ms), for the access log. */
  timing?: { upstreamMs: number | null };
}

export function sendPage(res: ServerResponse, status: number, extra?: Record<string, string>, message?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorPage(status, message);
  res.writeHead(status, { ...PAGE_HEADERS, 'content-length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
}

/** Send the request to the app with `headers` (see appRequestHeaders) and stream the answer back. */
export function forward(req: IncomingMessage, res: ServerResponse, rawTarget: string, headers: OutgoingHttpHeaders, ctx: ForwardContext): void {
  const up = ctx.app.upstream;
  if (up.kind === 'builtin') {
    whoami(req, res, rawTarget, headers);
    return;
  }
  const pool = ctx.pools.get(ctx.cfg, up.origin);
  // undici accepts an EventEmitter as the abort signal: far cheaper per request than an
  // AbortController (a DOM EventTarget), and it ends the upstream request when the client leaves
  const abort = new EventEmitter();
  let aborted = false;
  const onClose = () => {
    if (!res.writableFinished) {
      aborted = true;
      abort.emit('abort');
    }
  };
  res.on('close', onClose);
  const started = performance.now();
  let status = 0;
  pool
    .stream(
      {
        path: rawTarget,
        method: req.method as 'GET',
        headers: headers as Record<string, string>,
        body: hasBody(req) ? req : null,
        signal: abort,
      },
      ({ statusCode, headers: upHeaders }) => {
        status = statusCode;
        if (ctx.timing) ctx.timing.upstreamMs = performance.now() - started;
        res.writeHead(statusCode, clientResponseHeaders(upHeaders as Record<string, string | string[]>, ctx.sessionCookie));
        return res;
      },
    )
    .then(
      () => {
        ctx.observe?.(ctx.app.name, status, (performance.now() - started) / 1000);
      },
      (err: unknown) => {
        res.off('close', onClose);
        ctx.observe?.(ctx.app.name, status || 502, (performance.now() - started) / 1000);
        if (aborted) return; // the client went away
        if (res.headersSent) {
          res.destroy();
          return;
        }
        const timeout = err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError;
        const code = timeout ? 'PC_UPSTREAM_TIMEOUT' : 'PC_UPSTREAM_UNREACHABLE';
        ctx.onUpstreamError?.(code, err);
        sendPage(res, ERRORS[code].status);
      },
    );
}

/** builtin:whoami: echoes what an app behind the gateway receives. */
function whoami(req: IncomingMessage, res: ServerResponse, rawTarget: string, headers: Record<string, unknown>): void {
  const q = rawTarget.indexOf('?');
  const body = JSON.stringify(
    { method: req.method, path: q < 0 ? rawTarget : rawTarget.slice(0, q), query: q < 0 ? '' : rawTarget.slice(q), headers },
    null,
    2,
  );
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}
