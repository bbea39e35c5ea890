/**
 * The request path for everything that is not a reserved `/.portcullis/` route: resolve the
 * client, ask the gate, then proxy, redirect or refuse. Plain node:http (no framework on the
 * hot path); the reserved routes are served by the fastify app.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ERRORS, isPortcullisError, type ErrorCode } from '../errors.js';
import type { Runtime } from '../runtime.js';
import { clientInfo, gateRequestOf, type ClientInfo } from '../http/request-context.js';
import { gate, hostOnly, loginLocation, type GateResult } from '../access/gate.js';
import type { CompiledConfig } from '../config/types.js';

import { forward, sendPage, type ForwardContext } from './forward.js';
import { identityHeaders } from '../access/identity.js';
import { appRequestHeaders, type IdentityHeaders } from './headers.js';
import type { UpstreamPools } from './upstreams.js';
import { countOutcome, type AccessEntry, type AccessLog } from '../http/access-log.js';

/**
 * Whether the request comes from an app's own script (XHR / fetch): it cannot follow a redirect
 * to an HTML login page, so it gets a 401 with a JSON body saying where to sign in.
 */
export function wantsJson(req: IncomingMessage): boolean {
  if (req.headers['x-requested-with']) return true;
  const accept = req.headers.accept;
  return typeof accept === 'string' && accept.includes('application/json') && !accept.includes('text/html');
}

/** 401 for a script: `{"error": "signed_out" | "step_up", "login": URL}` and the same URL in Location. */
export function signInJson(res: ServerResponse, error: 'signed_out' | 'step_up', login: string): void {
  const body = JSON.stringify({ error, login });
  res.writeHead(401, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'www-authenticate': 'Portcullis realm="portcullis"',
    location: login,
  });
  res.end(body);
}

/** Whether a client is a browser that can follow a redirect to the login page. */
export function wantsHtml(req: IncomingMessage): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  if (req.headers['x-requested-with']) return false;
  const accept = req.headers.accept;
  return typeof accept === 'string' && accept.includes('text/html');
}

export interface ProxyHandlerDeps {
  rt: Runtime;
  pools: UpstreamPools;
  observe?: (app: string, status: number, seconds: number) => void;
  onError?: (err: unknown) => void;
  /** Counts one decision (metrics): app and policy from the config, outcome from a fixed set. */
  decision?: (app: string, policy: string, outcome: string) => void;
  /** The access log: nothing is measured or kept for it while it is off. */
  accessLog?: AccessLog | null;
}

export type ProxyHandler = (req: IncomingMessage, res: ServerResponse, requestId?: string) => void;

export function createProxyHandler(deps: ProxyHandlerDeps): ProxyHandler {
  const { rt } = deps;
  // one function for every request: the app comes with the call
  const onUpstreamError = (code: ErrorCode, err: unknown, app: string) =>
    rt.logger.warn({ code, app, err: err instanceof Error ? err.message : String(err) }, 'upstream request failed');
  return (req, res, requestId) => {
    const cfg = rt.config;
    const info = clientInfo(req, cfg);
    const log = deps.accessLog?.on ? deps.accessLog : null;
    const entry: AccessEntry | null = log
      ? { requestId: requestId ?? '', ip: info.ip, host: info.host, method: req.method ?? '', target: req.url ?? '/', mode: 'proxy', app: null, decision: null, policy: null, rule: null, status: 0, started: performance.now(), upstreamMs: null }
      : null;
    if (entry) res.once('close', () => {
      entry.status = res.writableFinished ? res.statusCode : 499;
      log!.write(entry);
    });
    if (portalOnly(cfg, req.headers.host)) return portalHome(req, res);
    const call: Call = { deps, onUpstreamError, req, res, info, entry, requestId };
    // the gate answers at once on the hot path (no promise); a promise when it had to wait
    let r: GateResult | Promise<GateResult>;
    try {
      r = gate(rt, cfg, gateRequestOf(req, info, requestId));
    } catch (err) {
      return failed(call, err);
    }
    if (r instanceof Promise) {
      r.then((x) => decided(call, x)).catch((err: unknown) => failed(call, err));
      return;
    }
    try {
      const p = decided(call, r);
      if (p) p.catch((err: unknown) => failed(call, err));
    } catch (err) {
      failed(call, err);
    }
  };
}

/** One proxied request, as the handler passes it on. */
interface Call {
  deps: ProxyHandlerDeps;
  onUpstreamError: ForwardContext['onUpstreamError'];
  req: IncomingMessage;
  res: ServerResponse;
  info: ClientInfo;
  entry: AccessEntry | null;
  requestId: string | undefined;
}

/** The gate has decided: forward, or answer the client (sign-in, step-up, refusal). */
function decided(c: Call, r: GateResult): Promise<void> | void {
  const { deps, req, res, info, entry, requestId } = c;
  // the config the request was judged with (a reload while the gate waited does not change it)
  const cfg = info.cfg;
  if (deps.decision || entry) {
    const o = countOutcome(r, deps.decision);
    if (entry) {
      entry.app = o.app;
      entry.decision = o.outcome;
      entry.policy = o.policy;
      entry.rule = o.rule;
    }
  }
  if (r.kind !== 'proxy') return render(req, res, r, cfg, info.proto);
  const ctx: ForwardContext = {
    cfg,
    app: r.app,
    pools: deps.pools,
    sessionCookie: info.cookieName,
    observe: deps.observe,
    timing: entry,
    onUpstreamError: c.onUpstreamError,
  };
  const viaAppPassword = !!r.identity && !r.identity.session;
  const go = (identity: IdentityHeaders | null) =>
    forward(req, res, r.rawTarget, appRequestHeaders(req, info, identity, { viaAppPassword, requestId }), ctx);
  const identity = r.identity ? identityHeaders(deps.rt, r.app, r.identity, info.ip) : null;
  return identity instanceof Promise ? identity.then(go) : go(identity);
}

function failed(c: Call, err: unknown): void {
  c.deps.onError?.(err);
  // a store outage or a spent budget keeps its own status (503); anything else is a 500
  sendPage(c.res, isPortcullisError(err) ? err.status : 500);
}

/** Whether `host` is the `session.portal` host and no app's: it serves sign-in pages and nothing else. */
function portalOnly(cfg: CompiledConfig, host: string | undefined): boolean {
  const p = cfg.session.portal;
  if (!p) return false;
  const h = hostOnly(host);
  return h === p.host && !cfg.appsByHost.has(h);
}

/** The portal host outside `/.portcullis/`: its root leads to the account page, anything else is not found. */
function portalHome(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  const path = (req.url ?? '/').split('?')[0];
  if ((req.method === 'GET' || req.method === 'HEAD') && path === '/') return redirect(res, '/.portcullis/account');
  sendPage(res, 404);
}

export function render(req: IncomingMessage, res: ServerResponse, r: Exclude<GateResult, { kind: 'proxy' }>, cfg: CompiledConfig, proto: 'http' | 'https'): void {
  req.resume();
  switch (r.kind) {
    case 'error': {
      const status = ERRORS[r.code].status;
      const extra: Record<string, string> = status === 405 ? { allow: 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS' } : {};
      sendPage(res, status, extra, r.code === 'PC_LOCKDOWN' ? ERRORS.PC_LOCKDOWN.message : r.code === 'PC_NETWORK_DENIED' ? ERRORS.PC_NETWORK_DENIED.message : undefined);
      return;
    }
    case 'signin':
      if (r.basic) {
        sendPage(res, 401, { 'www-authenticate': `Basic realm="${r.app.name}", charset="UTF-8"` });
      } else if (wantsJson(req)) {
        signInJson(res, 'signed_out', loginLocation(cfg, { proto, host: req.headers.host ?? '', target: r.rd }, false));
      } else if (wantsHtml(req)) {
        redirect(res, loginLocation(cfg, { proto, host: req.headers.host ?? '', target: r.rd }, false));
      } else {
        sendPage(res, 401, { 'www-authenticate': 'Portcullis realm="portcullis"' });
      }
      return;
    case 'step':
      if (wantsJson(req)) signInJson(res, 'step_up', r.location);
      else if (wantsHtml(req)) redirect(res, r.location);
      else sendPage(res, 401);
      return;
  }
}

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(302, { location, 'cache-control': 'no-store', 'content-length': 0 });
  res.end();
}
