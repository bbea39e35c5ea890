/** `networks`, `trusted_proxies` and references to networks (rules, lockdown, enrolment). */
import { CidrSet, coversEveryone, parseCidr, type Cidr } from '../../net/cidr.js';
import { didYouMean } from '../values.js';
import type { Reader, Val } from '../reader.js';

export const NETWORK_NAME = /^[a-z0-9][a-z0-9_-]*$/;

export const MAX_NAME_LENGTH = 63;

export interface NetworkRefs {
  set: CidrSet;
  names: string[];
}

export function compileTrustedProxies(r: Reader, v: Val): CidrSet | undefined {
  const items = r.list(v, 'CIDRs');
  if (!items) return undefined;
  const cidrs: Cidr[] = [];
  for (const item of items) {
    const s = r.str(item, 'a CIDR');
    if (s === undefined) continue;
    const p = parseCidr(s);
    if (!p.ok) {
      r.issue(item.node, item.path, p.error);
      continue;
    }
    if (coversEveryone(s) || p.cidr.prefix === 0) {
      const scope =
        p.cidr.family === 6 && p.cidr.prefix === 0
          ? 'every address'
          : s.includes(':')
            ? 'every IPv4 address (written as IPv6 through ::ffff:0:0/96 or ::/96)'
            : 'every IPv4 address';
      r.issue(item.node, item.path, `"${s}" covers ${scope}; trusting it would let any client forge its address through X-Forwarded-For or a PROXY header. List the proxies' own addresses`);
      continue;
    }
    cidrs.push(p.cidr);
  }
  return new CidrSet(cidrs);
}

export function compileNetworks(r: Reader, v: Val): Map<string, CidrSet> | undefined {
  const entries = r.entries(v, 'a mapping of network names to lists of CIDRs');
  if (!entries) return undefined;
  const out = new Map<string, CidrSet>();
  for (const e of entries) {
    if (!NETWORK_NAME.test(e.key) || e.key.length > MAX_NAME_LENGTH) {
      r.issue(e.keyNode, e.value.path, `"${e.key}" is not a valid network name: lower-case letters, digits, "-" and "_", starting with a letter or digit, at most ${MAX_NAME_LENGTH} characters`);
      continue;
    }
    const items = r.list(e.value, 'CIDRs');
    const cidrs: Cidr[] = [];
    if (!items) r.brokenNetworks.add(e.key);
    for (const item of items ?? []) {
      const s = r.str(item, 'a CIDR');
      const p = s === undefined ? undefined : parseCidr(s);
      if (p?.ok) cidrs.push(p.cidr);
      else {
        if (p) r.issue(item.node, item.path, p.error);
        r.brokenNetworks.add(e.key);
      }
    }
    // even when some entries are bad the name is defined, so references to it are not reported twice
    out.set(e.key, new CidrSet(cidrs));
  }
  return out;
}

/**
 * A list of network names and literal CIDRs. `who` names the referrer in the message about a
 * network without entries ("rule relies on network X which has no entries").
 */
export function compileNetworkRefs(r: Reader, v: Val, networks: ReadonlyMap<string, CidrSet>, who: string, emptyList: string | null): NetworkRefs | undefined {
  const items = r.list(v, 'network names or CIDRs', emptyList ? { nonEmpty: emptyList } : {});
  if (!items) return undefined;
  const cidrs: Cidr[] = [];
  const names: string[] = [];
  let failed = false;
  for (const item of items) {
    const s = r.str(item, 'a network name or a CIDR');
    if (s === undefined) {
      failed = true;
      continue;
    }
    names.push(s);
    if (NETWORK_NAME.test(s)) {
      const set = networks.get(s);
      if (!set) {
        const guess = didYouMean(s, networks.keys());
        const known = networks.size ? `defined: ${[...networks.keys()].join(', ')}` : 'no networks are defined';
        r.issue(item.node, item.path, `unknown network "${s}" (${guess ? `did you mean "${guess}"?` : known})`);
        failed = true;
      } else if (set.size === 0 && !r.brokenNetworks.has(s)) {
        r.issue(item.node, item.path, `${who} relies on network "${s}" which has no entries`);
        failed = true;
      } else if (set.size === 0) {
        failed = true;
      } else cidrs.push(...set.entries);
      continue;
    }
    if (/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(s) && networks.has(s.toLowerCase())) {
      r.issue(item.node, item.path, `network names are lower case; did you mean "${s.toLowerCase()}"?`);
      failed = true;
      continue;
    }
    const p = parseCidr(s);
    if (!p.ok) {
      const looksLikeCidr = /[./:]/.test(s);
      r.issue(item.node, item.path, looksLikeCidr ? p.error : `"${s}" is neither a network name (lower-case letters, digits, "-", "_") nor a CIDR`);
      failed = true;
      continue;
    }
    cidrs.push(p.cidr);
  }
  return failed ? undefined : { set: new CidrSet(cidrs), names };
}
