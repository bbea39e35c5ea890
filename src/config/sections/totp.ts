/** `totp` and the top-level `enrol`. */
import { CidrSet } from '../../net/cidr.js';
import { compileNetworkRefs } from './networks.js';
import { opt, type Reader, type Val } from '../reader.js';
import type { TotpConfig } from '../types.js';
import { defaultBool, defaultInt, defaultText, enumOf, schemaAt } from '../schema.js';

const P = schemaAt('totp.period');
const SKEW = schemaAt('totp.skew');

/**
 * `totp:`; where a first factor may be enrolled is `totp.enrol` or, shared with passkeys, the
 * top-level `enrol:` (one of the two).
 */
export function compileTotp(r: Reader, v: Val | undefined, networks: ReadonlyMap<string, CidrSet>, topEnrol?: Val): TotpConfig {
  const d: TotpConfig = {
    issuer: defaultText('totp.issuer'),
    period: defaultInt('totp.period'),
    digits: defaultInt('totp.digits') as TotpConfig['digits'],
    algorithm: defaultText('totp.algorithm') as TotpConfig['algorithm'],
    skew: defaultInt('totp.skew'),
    enrolNetworks: CidrSet.empty,
    enrolPrompt: defaultBool('totp.enrol.prompt'),
    always: defaultBool('totp.always'),
  };
  const enrolOf = (ev: Val, where: string): { set: CidrSet; prompt: boolean } => {
    const e = r.object(ev, ['networks', 'prompt']);
    const set = e?.networks ? (compileNetworkRefs(r, e.networks, networks, where, null)?.set ?? CidrSet.empty) : CidrSet.empty;
    return { set, prompt: e?.prompt ? (r.bool(e.prompt) ?? d.enrolPrompt) : d.enrolPrompt };
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
  const enrol = enrolVal ? enrolOf(enrolVal, t.enrol ? 'totp.enrol' : 'enrol') : { set: d.enrolNetworks, prompt: d.enrolPrompt };
  const enrolNetworks = enrol.set;
  return {
    issuer,
    period: opt(t.period, (x) => r.int(x, P.min!, P.max!), d.period),
    digits: opt(t.digits, (x) => r.oneOf(x, enumOf<TotpConfig['digits']>('totp.digits')), d.digits),
    algorithm: opt(t.algorithm, (x) => r.oneOf(x, enumOf<TotpConfig['algorithm']>('totp.algorithm')), d.algorithm),
    skew: opt(t.skew, (x) => r.int(x, SKEW.min!, SKEW.max!), d.skew),
    enrolNetworks,
    enrolPrompt: enrol.prompt,
    always: opt(t.always, (x) => r.bool(x), d.always),
  };
}
