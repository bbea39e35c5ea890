/**
 * The reverse proxy: streams request and response bodies both ways through undici with
 * back-pressure (constant memory for any size), maps upstream failures to 502/504 pages, and
 * leaves other apps unaffected by one app's trouble.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { errors as undiciErrors, type Dispatcher } from 'undici';
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
  onUpstreamError?: (code: ErrorCode, err: unknown, app: string) => void;
  /** Filled with the time to the app's response headers (ms), for the access log. */
  timing?: { upstreamMs: number | null } | null;
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
  const h = new Forwarding(res, ctx);
  res.on('close', h.onClose);
  pool.dispatch(
    {
      path: rawTarget,
      method: req.method as 'GET',
      headers: headers as Record<string, string>,
      body: hasBody(req) ? req : null,
    },
    h,
  );
}

/**
 * One request to the app, as an undici dispatch handler: no promise, no Readable wrapper around the
 * app's answer and no abort signal per request. The app's body is written straight to the client
 * with back-pressure (undici's parser is paused while the client's socket is full); the upstream
 * request is aborted when the client goes away.
 */
class Forwarding implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  /** The client went away before the response was complete. */
  private aborted = false;
  private status = 0;
  private readonly started = performance.now();
  private draining = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly ctx: ForwardContext,
  ) {}

  readonly onClose = (): void => {
    if (this.res.writableFinished) return;
    this.aborted = true;
    // before the request reached a connection there is no controller yet: onRequestStart aborts it
    this.controller?.abort(new undiciErrors.RequestAbortedError());
  };

  private readonly onDrain = (): void => {
    this.draining = false;
    this.controller?.resume();
  };

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.aborted) controller.abort(new undiciErrors.RequestAbortedError());
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // 1xx informational heads are not passed on (node:http writes its own 100-continue)
    if (statusCode < 200) return;
    this.status = statusCode;
    if (this.ctx.timing) this.ctx.timing.upstreamMs = performance.now() - this.started;
    this.res.writeHead(statusCode, clientResponseHeaders(headers, this.ctx.sessionCookie));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk) && !this.aborted) {
      controller.pause();
      if (!this.draining) {
        this.draining = true;
        this.res.once('drain', this.onDrain);
      }
    }
  }

  onResponseEnd(): void {
    const { res, ctx } = this;
    res.off('close', this.onClose);
    res.end();
    ctx.observe?.(ctx.app.name, this.status, (performance.now() - this.started) / 1000);
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    const { res, ctx } = this;
    res.off('close', this.onClose);
    if (this.draining) res.off('drain', this.onDrain);
    ctx.observe?.(ctx.app.name, this.status || 502, (performance.now() - this.started) / 1000);
    if (this.aborted) return; // the client went away
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const timeout = err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError;
    const code = timeout ? 'PC_UPSTREAM_TIMEOUT' : 'PC_UPSTREAM_UNREACHABLE';
    ctx.onUpstreamError?.(code, err, ctx.app.name);
    sendPage(res, ERRORS[code].status);
  }
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
