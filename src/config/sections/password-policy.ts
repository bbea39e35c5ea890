/** `password_policy`. */
import { isScalar } from 'yaml';
import { opt, type Reader, type Val } from '../reader.js';
import type { PasswordPolicy } from '../types.js';

export function compilePasswordPolicy(r: Reader, v: Val | undefined): PasswordPolicy {
  const d: PasswordPolicy = { minLength: 8, blocklist: 'common', minStrength: 3, onWeak: 'deny' };
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
    blocklist: opt(p.blocklist, (x) => r.oneOf(x, ['common', 'none'] as const), d.blocklist),
    minStrength: opt(p.min_strength, (x) => r.oneOf(x, [0, 1, 2, 3, 4] as const), d.minStrength),
    onWeak: opt(p.on_weak, (x) => r.oneOf(x, ['deny', 'change', 'flag'] as const), d.onWeak),
  };
}
