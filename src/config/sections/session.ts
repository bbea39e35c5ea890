/** `session`: timeouts, grace, and the shared cookie domain with its portal. */
import { parseIp } from '../../net/ip.js';
import { formatDuration } from '../duration.js';
import { normaliseHost } from '../values.js';
import { opt, type Reader, type Val } from '../reader.js';
import { hostUnderDomain } from '../types.js';
import type { CompiledConfig } from '../types.js';
import { defaultMs } from '../schema.js';

export function compileSession(r: Reader, v: Val | undefined): CompiledConfig['session'] {
  const d = { idleTimeoutMs: defaultMs('session.idle_timeout'), absoluteTimeoutMs: defaultMs('session.absolute_timeout'), graceMs: defaultMs('session.grace'), domain: null, portal: null };
  if (!v) return d;
  const s = r.object(v, ['idle_timeout', 'absolute_timeout', 'grace', 'domain', 'portal']);
  if (!s) return d;
  const idleTimeoutMs = opt(s.idle_timeout, (x) => r.duration(x), d.idleTimeoutMs);
  const absoluteTimeoutMs = opt(s.absolute_timeout, (x) => r.duration(x), d.absoluteTimeoutMs);
  const graceMs = opt(s.grace, (x) => r.duration(x, { allowZero: true }), d.graceMs);
  if (idleTimeoutMs > absoluteTimeoutMs) {
    const at = s.idle_timeout ?? s.absolute_timeout ?? s.$;
    r.issue(at.node, at.path, `idle_timeout (${formatDuration(idleTimeoutMs)}) cannot be longer than absolute_timeout (${formatDuration(absoluteTimeoutMs)})`);
  }
  if (graceMs > idleTimeoutMs && s.grace) {
    r.issue(s.grace.node, s.grace.path, `grace (${formatDuration(graceMs)}) cannot be longer than idle_timeout (${formatDuration(idleTimeoutMs)})`);
  }
  const { domain, portal } = compileSessionDomain(r, s.domain, s.portal, s.$);
  return { idleTimeoutMs, absoluteTimeoutMs, graceMs, domain, portal };
}

/**
 * `session.domain` and `session.portal` (both or neither): a DNS name with at least two labels,
 * and an https URL (no path, query or credentials) whose host is the domain or under it.
 */
export function compileSessionDomain(r: Reader, dv: Val | undefined, pv: Val | undefined, at: Val): Pick<CompiledConfig['session'], 'domain' | 'portal'> {
  const none = { domain: null, portal: null };
  if (!dv && !pv) return none;
  if (!dv || !pv) {
    const w = dv ?? pv ?? at;
    r.issue(w.node, w.path, 'session.domain and session.portal go together: the domain the session cookie covers, and the https URL of the host that serves the sign-in pages');
    return none;
  }
  const ds = r.str(dv, 'a domain name');
  const ps = r.str(pv, 'an https URL');
  if (ds === undefined || ps === undefined) return none;
  const h = normaliseHost(ds.startsWith('.') ? ds.slice(1) : ds);
  if (!h.ok || h.host.startsWith('[') || parseIp(h.host) || !h.host.includes('.')) {
    r.issue(dv.node, dv.path, `"${ds}" is not a domain for a cookie: write a DNS name with at least two labels, such as example.org`);
    return none;
  }
  const domain = h.host;
  let u: URL;
  try {
    u = new URL(ps);
  } catch {
    r.issue(pv.node, pv.path, `"${ps}" is not a URL: write the portal as https://auth.${domain}`);
    return none;
  }
  if (u.protocol !== 'https:') {
    r.issue(pv.node, pv.path, `the portal must be an https URL (the session cookie is Secure): https://${u.host || 'auth.' + domain}`);
    return none;
  }
  if (u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) {
    r.issue(pv.node, pv.path, `the portal is an origin only (scheme and host, optionally a port): https://${u.host}`);
    return none;
  }
  const host = u.hostname.toLowerCase();
  if (!hostUnderDomain(host, domain)) {
    r.issue(pv.node, pv.path, `the portal's host "${host}" is not ${domain} or under it: the session cookie would not reach it`);
    return none;
  }
  return { domain, portal: { origin: u.origin, host } };
}
