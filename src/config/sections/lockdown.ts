/** `lockdown` and `attack`. */
import { CidrSet } from '../../net/cidr.js';
import { compileNetworkRefs } from './networks.js';
import { opt, type Reader, type Val } from '../reader.js';
import type { AttackConfig, CompiledConfig } from '../types.js';
import { defaultMs, schemaAt } from '../schema.js';

const THRESHOLD = schemaAt('attack.threshold');
const FACTOR = schemaAt('attack.factor');

export function compileLockdown(r: Reader, v: Val | undefined, networks: ReadonlyMap<string, CidrSet>): CompiledConfig['lockdown'] {
  const d = { networks: CidrSet.empty, networkNames: [] as string[] };
  if (!v) return d;
  const l = r.object(v, ['networks']);
  if (!l?.networks) return d;
  const refs = compileNetworkRefs(r, l.networks, networks, 'lockdown', null);
  return refs ? { networks: refs.set, networkNames: refs.names } : d;
}

/** `attack: { threshold: N | factor: N, cooldown: 30m }`: exactly one of threshold and factor. */
export function compileAttack(r: Reader, v: Val): AttackConfig | null {
  const a = r.object(v, ['threshold', 'factor', 'cooldown']);
  if (!a) return null;
  if ((a.threshold === undefined) === (a.factor === undefined)) {
    const at = a.factor ?? a.$;
    r.issue(at.node, at.path, a.threshold === undefined ? 'give "threshold" (failed sign-ins per minute) or "factor" (times the baseline of the last day)' : 'give "threshold" or "factor", not both');
    return null;
  }
  const threshold = a.threshold ? r.int(a.threshold, THRESHOLD.min!, THRESHOLD.max!) : undefined;
  const factor = a.factor ? r.int(a.factor, FACTOR.min!, FACTOR.max!) : undefined;
  const cooldownMs = opt(a.cooldown, (x) => r.duration(x), defaultMs('attack.cooldown'));
  if (threshold === undefined && factor === undefined) return null;
  return { threshold: threshold ?? null, factor: factor ?? null, cooldownMs };
}
