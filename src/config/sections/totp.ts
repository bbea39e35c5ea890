/** `totp` and the top-level `enrol`. */
import { CidrSet } from '../../net/cidr.js';
import { compileNetworkRefs } from './networks.js';
import { opt, type Reader, type Val } from '../reader.js';
import type { TotpConfig } from '../types.js';

/**
 * `totp:`; where a first factor may be enrolled is `totp.enrol` or, shared with passkeys, the
 * top-level `enrol:` (one of the two).
 */
export function compileTotp(r: Reader, v: Val | undefined, networks: ReadonlyMap<string, CidrSet>, topEnrol?: Val): TotpConfig {
  const d: TotpConfig = { issuer: 'portcullis', period: 30, digits: 6, algorithm: 'SHA1', skew: 1, enrolNetworks: CidrSet.empty, enrolPrompt: false, always: false };
  const enrolOf = (ev: Val, where: string): { set: CidrSet; prompt: boolean } => {
    const e = r.object(ev, ['networks', 'prompt']);
    const set = e?.networks ? (compileNetworkRefs(r, e.networks, networks, where, null)?.set ?? CidrSet.empty) : CidrSet.empty;
    return { set, prompt: e?.prompt ? (r.bool(e.prompt) ?? false) : false };
  };
  if (!v) {
    if (!topEnrol) return d;
    const e = enrolOf(topEnrol, 'enrol');
    return { ...d, enrolNetworks: e.set, enrolPrompt: e.prompt };
  }
  const t = r.object(v, ['issuer', 'period', 'digits', 'algorithm', 'skew', 'enrol', 'always']);
  if (!t) return d;
  if (t.enrol && topEnrol) r.issue(topEnrol.node, topEnrol.path, 'set either enrol or totp.enrol, not both');
  const issuer = opt(
    t.issuer,
    (x) => {
      const s = r.name(x, 'an issuer name');
      if (s === undefined) return undefined;
      if (s.includes(':')) return r.issue(x.node, x.path, 'the issuer cannot contain ":" (authenticator apps read it as the label separator)');
      if (s.length > 64) return r.issue(x.node, x.path, 'the issuer is limited to 64 characters');
      return s;
    },
    d.issuer,
  );
  const enrolVal = t.enrol ?? topEnrol;
  const enrol = enrolVal ? enrolOf(enrolVal, t.enrol ? 'totp.enrol' : 'enrol') : { set: d.enrolNetworks, prompt: false };
  const enrolNetworks = enrol.set;
  return {
    issuer,
    period: opt(t.period, (x) => r.int(x, 15, 120), d.period),
    digits: opt(t.digits, (x) => r.oneOf(x, [6, 8] as const), d.digits),
    algorithm: opt(t.algorithm, (x) => r.oneOf(x, ['SHA1', 'SHA256', 'SHA512'] as const), d.algorithm),
    skew: opt(t.skew, (x) => r.int(x, 0, 2), d.skew),
    enrolNetworks,
    enrolPrompt: enrol.prompt,
    always: opt(t.always, (x) => r.bool(x), false),
  };
}
