/** `password_policy`. */
import { isScalar } from 'yaml';
import { opt, type Reader, type Val } from '../reader.js';
import type { PasswordPolicy } from '../types.js';
import { defaultInt, defaultText, enumOf } from '../schema.js';

export function compilePasswordPolicy(r: Reader, v: Val | undefined): PasswordPolicy {
  const d: PasswordPolicy = {
    minLength: defaultInt('password_policy.min_length'),
    blocklist: defaultText('password_policy.blocklist') as PasswordPolicy['blocklist'],
    minStrength: defaultInt('password_policy.min_strength') as PasswordPolicy['minStrength'],
    onWeak: defaultText('password_policy.on_weak') as PasswordPolicy['onWeak'],
  };
  if (!v) return d;
  const p = r.object(v, ['min_length', 'blocklist', 'min_strength', 'on_weak']);
  if (!p) return d;
  const minLength = opt(
    p.min_length,
    (x) => {
      if (isScalar(x.node) && typeof x.node.value === 'number' && Number.isInteger(x.node.value) && x.node.value < 8) {
        return r.issue(x.node, x.path, `min_length ${x.node.value} is below 8, the minimum NIST SP 800-63B allows for memorised secrets`);
      }
      return r.int(x, 8, 64);
    },
    d.minLength,
  );
  return {
    minLength,
    blocklist: opt(p.blocklist, (x) => r.oneOf(x, enumOf<PasswordPolicy['blocklist']>('password_policy.blocklist')), d.blocklist),
    minStrength: opt(p.min_strength, (x) => r.oneOf(x, enumOf<PasswordPolicy['minStrength']>('password_policy.min_strength')), d.minStrength),
    onWeak: opt(p.on_weak, (x) => r.oneOf(x, enumOf<PasswordPolicy['onWeak']>('password_policy.on_weak')), d.onWeak),
  };
}
