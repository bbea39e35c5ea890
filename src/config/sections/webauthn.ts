/** `webauthn`: passkeys as a second factor (RP ID, name, origins). */
import { parseIp } from '../../net/ip.js';
import { normaliseHost } from '../values.js';
import { opt, type Reader, type Val } from '../reader.js';
import { hostUnderDomain } from '../types.js';
import type { CompiledApp, CompiledConfig, WebauthnConfig } from '../types.js';

/** Whether an http origin is allowed: loopback names only (browsers treat them as secure contexts). */
function loopbackHost(host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost');
}

/**
 * `webauthn: { rp_id, rp_name, origins, passwordless }`. The RP ID is a DNS name (never an IP
 * address: WebAuthn refuses them); with `session.domain` it is that domain (the default) so one
 * passkey serves every app host. Every origin is an exact `https://host[:port]` whose host is the
 * RP ID or under it (plain http only for `localhost` names, for tests and development). A
 * `passkey` rule needs this section: without it no one could ever meet the rule.
 */
export function compileWebauthn(r: Reader, v: Val | undefined, session: CompiledConfig['session'], apps: readonly CompiledApp[]): WebauthnConfig | null {
  if (!v || r.isNull(v)) {
    for (const app of apps) {
      for (const rule of app.rules) {
        if (rule.policy === 'passkey') {
          r.issues.push({ ...rule.pos, path: `${rule.label.split(' ')[0]}.policy`, message: 'policy passkey needs the "webauthn" section (rp_id, origins): without it no passkey can be registered or checked' });
        }
      }
    }
    return null;
  }
  const w = r.object(v, ['rp_id', 'rp_name', 'origins', 'passwordless'], ['origins']);
  if (!w) return null;
  let rpId: string | undefined;
  if (w.rp_id) {
    const s = r.str(w.rp_id, 'a domain name');
    if (s !== undefined) {
      const h = normaliseHost(s);
      if (!h.ok || h.host.startsWith('[') || parseIp(h.host) || h.host.includes(':')) r.issue(w.rp_id.node, w.rp_id.path, `"${s}" is not an RP ID: write a DNS name such as example.org (WebAuthn refuses IP addresses)`);
      else rpId = h.host;
    }
  }
  if (session.domain !== null) {
    if (rpId !== undefined && rpId !== session.domain && w.rp_id) {
      r.issue(w.rp_id.node, w.rp_id.path, `with session.domain, the RP ID must be that domain (${session.domain}) so one passkey works on every app host; leave rp_id out or write ${session.domain}`);
    }
    rpId = session.domain;
  }
  if (rpId === undefined) {
    if (!w.rp_id) r.issue(w.$.node, w.$.path, 'webauthn needs rp_id (the domain passkeys are bound to, such as example.org) unless session.domain is set');
    return null;
  }
  const rpName = opt(
    w.rp_name,
    (x) => {
      const s = r.name(x, 'a name');
      if (s !== undefined && s.length > 64) return r.issue(x.node, x.path, 'rp_name is limited to 64 characters');
      return s;
    },
    'portcullis',
  );
  const origins: string[] = [];
  const items = w.origins ? r.list(w.origins, 'origins', { nonEmpty: 'list at least one origin, such as https://mail.example.org' }) : undefined;
  for (const item of items ?? []) {
    const s = r.str(item, 'an origin');
    if (s === undefined) continue;
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      r.issue(item.node, item.path, `"${s}" is not an origin: write https://host or https://host:port`);
      continue;
    }
    const host = u.hostname.toLowerCase();
    if (u.origin === 'null' || u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== '') || s.replace(/\/$/, '') !== u.origin) {
      r.issue(item.node, item.path, `"${s}" is not an origin: write the scheme, host and port only (${u.origin === 'null' ? 'https://host' : u.origin})`);
      continue;
    }
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopbackHost(host))) {
      r.issue(item.node, item.path, `"${s}": passkeys need https (plain http only for localhost names)`);
      continue;
    }
    if (!hostUnderDomain(host, rpId)) {
      r.issue(item.node, item.path, `the origin's host "${host}" is not ${rpId} or under it: browsers refuse a passkey for RP ID ${rpId} there`);
      continue;
    }
    if (!origins.includes(u.origin)) origins.push(u.origin);
  }
  // a passkey alone (discoverable, user verification required) on the login page, where some
  // `passkey` rule could admit the client's network (src/auth/passwordless.ts)
  const passwordless = opt(w.passwordless, (x) => r.bool(x), false);
  return { rpId, rpName, origins, passwordless };
}
