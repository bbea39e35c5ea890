/**
 * The shared portal host (`session.portal`) and `session.domain`: which app a request on the
 * portal host is judged for (the app its `rd` names), sending an app host's sign-in pages to the
 * portal, and the CSP that lets a form posted there lead back to an app host.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { hostOnly, portalFor } from '../access/gate.js';
import type { CompiledApp, CompiledConfig } from '../config/types.js';
import { CSP } from '../http/html.js';
import type { ClientInfo } from '../http/request-context.js';
import { safeRedirect } from './redirect.js';

type Form = Record<string, string | undefined>;

/** The app an absolute `rd` leads to; the first app when it names none. */
export function appOfRd(cfg: CompiledConfig, rd: string | undefined): CompiledApp {
  const safe = safeRedirect(rd, cfg);
  if (safe && !safe.startsWith('/')) {
    const a = cfg.appsByHost.get(new URL(safe).hostname.toLowerCase());
    if (a) return a;
  }
  return cfg.apps[0]!;
}

/**
 * On the `session.portal` host (no app's own), the app of `rd` (the query's, else the form's), or
 * the first app, and whether the request named its own `rd`; null when this is not the portal host.
 */
export function portalHostApp(cfg: CompiledConfig, req: FastifyRequest): { app: CompiledApp; portalRd: 'given' | 'none' } | null {
  if (cfg.session.portal && hostOnly(req.headers.host) === cfg.session.portal.host && cfg.apps.length > 0) {
    const q = req.query as Form | undefined;
    const body = req.body !== null && typeof req.body === 'object' ? (req.body as Form) : undefined;
    const rd = typeof q?.rd === 'string' ? q.rd : typeof body?.rd === 'string' ? body.rd : undefined;
    return { app: appOfRd(cfg, rd), portalRd: rd !== undefined && rd !== '' ? 'given' : 'none' };
  }
  return null;
}

/**
 * Under `session.domain`, the sign-in pages of an app host live on the portal: a GET of one
 * here is sent there (303), `rd` made absolute so it leads back. True when it was sent.
 */
export function toPortal(req: FastifyRequest, reply: FastifyReply, c: { cfg: CompiledConfig; info: ClientInfo; portalRd: 'given' | 'none' | null }): boolean {
  const portal = portalFor(c.cfg, req.headers.host, c.info.proto);
  if (!portal || c.portalRd !== null || hostOnly(req.headers.host) === c.cfg.session.portal?.host) return false;
  const url = new URL(req.raw.url ?? '/', 'http://portcullis.invalid');
  const rd = url.searchParams.get('rd');
  const safe = rd === null ? null : safeRedirect(rd, c.cfg);
  if (safe === null) url.searchParams.delete('rd');
  else url.searchParams.set('rd', safe.startsWith('/') ? `${c.info.proto}://${String(req.headers.host)}${safe}` : safe);
  void reply.code(303).header('location', `${portal}${url.pathname}${url.search}`).header('cache-control', 'no-store').send();
  return true;
}

/**
 * Under `session.domain` a form posted on the portal ends in a redirect back to an app host, and
 * CSP `form-action` governs redirects after a submission too: the domain's https origins are added.
 */
export function domainCsp(cfg: CompiledConfig): Record<string, string> {
  const d = cfg.session.domain;
  if (d === null) return {};
  return { 'content-security-policy': CSP.replace("form-action 'self'", `form-action 'self' https://${d}:* https://*.${d}:*`) };
}
